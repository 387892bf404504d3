namespace MLNet.Diffusion;

/// <summary>
/// The random generator that draws an image's initial latent noise (and the noise of stochastic schedulers such as
/// Euler ancestral or DDPM) from its seed. Each image has its own generator seeded with its own seed, as diffusers does
/// with a list of generators (<c>generator=[torch.Generator("cpu").manual_seed(s) for s in seeds]</c>), so an image
/// does not depend on the other images of its batch.
/// </summary>
public enum NoiseKind
{
    /// <summary>The library's own generator (xoshiro256** with Box–Muller): fast and the same on every machine, but a seed
    /// gives a different image than the same seed in diffusers or AUTOMATIC1111.</summary>
    Default,

    /// <summary>
    /// PyTorch's CPU generator, <c>torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))</c>, as diffusers'
    /// <c>prepare_latents</c> draws it: float32 values bit for bit equal to those of PyTorch on x86-64 CPUs (its AVX2 code,
    /// checked against torch 1.13). diffusers' default for seeds, and AUTOMATIC1111's "CPU" random number generator source.
    /// For a text-to-image batch, each image equals the image generated alone with its seed. With an init image the
    /// library draws the initial noise before the VAE samples the image's latents, diffusers after, so image-to-image
    /// noise does not match diffusers'.
    /// </summary>
    Torch,

    /// <summary>numpy's legacy <c>numpy.random.RandomState(seed).standard_normal</c>, rounded to float32 (older scripts and
    /// early AUTOMATIC1111 versions). numpy accepts seeds from 0 to 2³² − 1; other seeds use their low 32 bits.</summary>
    Numpy,

    /// <summary>
    /// PyTorch's CUDA generator, <c>torch.manual_seed(seed)</c> then <c>torch.randn(shape, device="cuda")</c>, computed on the
    /// CPU as AUTOMATIC1111's "NV" random number generator source does (Philox4x32-10): the same initial latents as a
    /// diffusers script whose generator lives on an NVIDIA GPU, to about float32 precision (the GPU evaluates its log and
    /// sine in single precision), on any machine. Later draws (ancestral schedulers' noise) advance the generator as
    /// AUTOMATIC1111's NV source does, one Philox offset per call.
    /// </summary>
    TorchCuda,
}

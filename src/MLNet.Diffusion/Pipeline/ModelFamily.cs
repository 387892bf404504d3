namespace MLNet.Diffusion;

/// <summary>
/// The kind of Stable Diffusion model a folder holds, as read from its components: the number of text encoders, the
/// embedding width, and the UNet's extra inputs. Distilled variants keep their family's contract: SD-Turbo is
/// <see cref="StableDiffusion2"/> and SDXL-Turbo <see cref="StableDiffusionXL"/> (both with a trailing Euler ancestral
/// scheduler configuration); a latent consistency model is either family with a guidance-embedding input
/// (<see cref="StableDiffusionPipeline.UsesGuidanceEmbedding"/>).
/// </summary>
public enum ModelFamily
{
    /// <summary>Stable Diffusion 1.x: one CLIP text encoder of width 768 (its last hidden state).</summary>
    StableDiffusion1,

    /// <summary>Stable Diffusion 2.x (and SD-Turbo): one OpenCLIP text encoder of width 1024.</summary>
    StableDiffusion2,

    /// <summary>SDXL base (and SDXL-Turbo): two text encoders (penultimate hidden states concatenated), the pooled
    /// embedding of the second, and 6 time ids (original size, crop, target size).</summary>
    StableDiffusionXL,

    /// <summary>The SDXL refiner: the second text encoder only, and 5 time ids (original size, crop, aesthetic score).</summary>
    StableDiffusionXLRefiner,

    /// <summary>Stable Diffusion 3 and 3.5: a diffusion transformer (MMDiT) trained by flow matching, conditioned on CLIP-L
    /// and CLIP-G (penultimate hidden states, pooled projections) and, optionally, T5; 16 latent channels.</summary>
    StableDiffusion3,

    /// <summary>FLUX.1 (schnell and dev): a flow-matching transformer over 2×2-packed latents, conditioned on T5's hidden
    /// states and CLIP-L's pooled output; dev takes the guidance scale as an input instead of classifier-free guidance.</summary>
    Flux,
}

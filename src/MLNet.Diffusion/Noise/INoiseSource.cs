using MLNet.Diffusion.Noise;
namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// A source of standard normal noise for the latents of a batch. Stochastic schedulers draw their
/// per-step noise from it; the pipeline draws the initial latents from it.
/// </summary>
public interface INoiseSource
{
    /// <summary>Fills <paramref name="destination"/> with independent N(0, 1) samples.</summary>
    /// <param name="destination">The whole batch's latents, item after item.</param>
    void Fill(Span<float> destination);
}

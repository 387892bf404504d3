using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion;

// The SDXL base → refiner hand-off ("ensemble of expert denoisers", Podell et al. 2023, §2.5).
public sealed partial class StableDiffusionPipeline
{
    /// <summary>
    /// Generates with this model as the base and <paramref name="refiner"/> finishing the schedule: this model runs the
    /// first <paramref name="denoisingEnd"/> of it and hands its still-noisy latents over, undecoded; the refiner runs the
    /// rest from the same point and decodes (diffusers' <c>denoising_end</c> / <c>denoising_start</c>). Both use the same
    /// steps and scheduler (from <paramref name="options"/>), so every call of the schedule runs once.
    /// </summary>
    /// <param name="images">The images to generate (text-to-image requests).</param>
    /// <param name="refiner">The refiner (SDXL refiner, or any model with the same latent space).</param>
    /// <param name="denoisingEnd">Where the hand-off happens, strictly between 0 and 1 (diffusers' examples use 0.8).</param>
    /// <param name="options">The base's settings; the refiner takes the same steps, scheduler and size.</param>
    /// <param name="refinerOptions">The refiner's own settings (guidance, aesthetic scores); null: a copy of <paramref name="options"/>.
    /// Its steps, size, scheduler and split are set from the base's.</param>
    /// <param name="progress">Receives both models' reports.</param>
    /// <param name="cancellationToken">Checked before every model call.</param>
    /// <exception cref="ArgumentException">A setting is out of range, or a request has an init image.</exception>
    public IReadOnlyList<GeneratedImage> Generate(IReadOnlyList<ImagePrompt> images, StableDiffusionPipeline refiner, float denoisingEnd = 0.8f,
        GenerationOptions? options = null, GenerationOptions? refinerOptions = null, IProgress<DiffusionProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(refiner);
        SettingLimits.ThrowIf(SettingLimits.DenoisingFraction(nameof(denoisingEnd), denoisingEnd), nameof(denoisingEnd));
        var baseOptions = (options ?? new GenerationOptions()).Clone();
        baseOptions.DenoisingEnd = denoisingEnd;
        baseOptions.DenoisingStart = null;
        var handedOver = Run(images, baseOptions, decode: false, progress, cancellationToken);
        if (handedOver.Latents.Length == 0) return [];

        var second = (refinerOptions ?? options ?? new GenerationOptions()).Clone();
        second.Steps = baseOptions.Steps;
        second.Scheduler = baseOptions.Scheduler;
        second.DenoisingEnd = null;
        second.DenoisingStart = denoisingEnd;
        var continued = new ImagePrompt[images.Count];
        for (int i = 0; i < continued.Length; i++)
        {
            var p = images[i];
            continued[i] = p with
            {
                InitLatents = handedOver.Latents[i],
                Width = p.Width ?? baseOptions.Width ?? DefaultSize,
                Height = p.Height ?? baseOptions.Height ?? DefaultSize,
            };
        }
        return refiner.Generate(continued, second, progress, cancellationToken);
    }
}

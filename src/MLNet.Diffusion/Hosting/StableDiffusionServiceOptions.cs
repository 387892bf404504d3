using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Hosting;

namespace MLNet.Diffusion;

/// <summary>
/// Settings of one Stable Diffusion registration in a service container
/// (<c>services.AddStableDiffusion(o =&gt; o.ModelPath = ...)</c>): the model folder, how its components run, and the
/// defaults of the <see cref="StableDiffusionImageGenerator"/> registered with it. Checked when the pipeline is first
/// resolved; each problem is reported with the name of the option.
/// </summary>
public sealed class StableDiffusionServiceOptions
{
    /// <summary>The diffusers/Optimum ONNX export folder. Required. Registrations naming the same folder share
    /// one pipeline.</summary>
    public string? ModelPath { get; set; }

    /// <summary>
    /// How the model's components run: device, fallback, threads, IO binding, graph optimisation. Registrations naming the
    /// same folder must agree on them, since they share one pipeline. The logger is the container's.
    /// </summary>
    public DiffusionRuntimeOptions Runtime { get; set; } = new();

    /// <summary>
    /// Defaults of the registered <see cref="StableDiffusionImageGenerator"/> (size, steps, guidance, scheduler, η);
    /// a request's <c>ImageGenerationOptions</c> override them.
    /// </summary>
    public GenerationOptions DefaultGenerationOptions { get; set; } = new();

    /// <summary>The most images the registered <see cref="StableDiffusionImageGenerator"/> puts in one UNet batch; a
    /// larger <c>Count</c> runs in several batches (each image depends only on its seed). Default 4.</summary>
    public int MaxBatchSize { get; set; } = 4;

    /// <summary>A copy of <see cref="Runtime"/>; the logger is set by the caller.</summary>
    internal DiffusionRuntimeOptions ToRuntimeOptions() => Runtime.Clone();
}

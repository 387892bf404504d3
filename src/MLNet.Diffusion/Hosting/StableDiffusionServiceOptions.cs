using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Hosting;

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

    /// <summary>The execution provider to ask for (<see cref="DiffusionRuntimeOptions.Device"/>). Default: CPU.</summary>
    public ExecutionDevice Device { get; set; } = ExecutionDevice.Cpu;

    /// <summary>The CUDA device ordinal (<see cref="DiffusionRuntimeOptions.DeviceId"/>). Default 0.</summary>
    public int DeviceId { get; set; }

    /// <summary>Run on the CPU, logging why, when CUDA cannot be loaded (true, the default), or fail
    /// (<see cref="DiffusionRuntimeOptions.FallbackToCpu"/>).</summary>
    public bool FallbackToCpu { get; set; } = true;

    /// <summary>Threads inside an operator; 0 (default) lets ONNX Runtime choose
    /// (<see cref="DiffusionRuntimeOptions.IntraOpThreads"/>).</summary>
    public int IntraOpThreads { get; set; }

    /// <summary>Threads across operators; 0 (default) lets ONNX Runtime choose
    /// (<see cref="DiffusionRuntimeOptions.InterOpThreads"/>).</summary>
    public int InterOpThreads { get; set; }

    /// <summary>The graph optimisation level (<see cref="DiffusionRuntimeOptions.GraphOptimizationLevel"/>). Default: all.</summary>
    public GraphOptimizationLevel GraphOptimizationLevel { get; set; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>
    /// Defaults of the registered <see cref="StableDiffusionImageGenerator"/> (size, steps, guidance, scheduler, η);
    /// a request's <c>ImageGenerationOptions</c> override them.
    /// </summary>
    public GenerationOptions DefaultGenerationOptions { get; set; } = new();

    /// <summary>The most images the registered <see cref="StableDiffusionImageGenerator"/> puts in one UNet batch; a
    /// larger <c>Count</c> runs in several batches (each image depends only on its seed). Default 4.</summary>
    public int MaxBatchSize { get; set; } = 4;

    /// <summary>The runtime settings these options ask for; the logger is set by the caller.</summary>
    public DiffusionRuntimeOptions ToRuntimeOptions() => new()
    {
        Device = Device,
        DeviceId = DeviceId,
        FallbackToCpu = FallbackToCpu,
        IntraOpThreads = IntraOpThreads,
        InterOpThreads = InterOpThreads,
        GraphOptimizationLevel = GraphOptimizationLevel,
    };
}

using Microsoft.ML;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// How the ML.NET transforms lease a loaded model: each transformer holds one <see cref="StableDiffusionPipeline"/> from
/// <see cref="StableDiffusionPipeline.Load"/>, whose sessions the process-wide store shares with every other user of the
/// same folder and runtime settings (other transformers, the dependency-injection provider, direct loads). A pipeline of
/// three stages therefore loads the ONNX sessions once, and the model is unloaded when the last holder lets go.
/// </summary>
internal static class DiffusionModelCache
{
    /// <summary>
    /// The runtime settings for <paramref name="options"/> under <paramref name="host"/>'s, as <c>ApplyOnnxModel</c> reads
    /// them: a GPU id (the options', else <see cref="MLContext.GpuDeviceId"/>) selects CUDA on that device, none selects the
    /// CPU; the fallback flag is the options', else <see cref="MLContext.FallbackToCpu"/>.
    /// </summary>
    public static DiffusionRuntimeOptions RuntimeFor(DiffusionHost host, DiffusionOptions options)
    {
        int? gpu = options.GpuDeviceId ?? host.GpuDeviceId;
        return new DiffusionRuntimeOptions
        {
            Device = gpu is null ? ExecutionDevice.Cpu : ExecutionDevice.Cuda,
            DeviceId = gpu ?? 0,
            FallbackToCpu = options.FallbackToCpu ?? host.FallbackToCpu,
            IntraOpThreads = options.IntraOpThreads,
        };
    }

    /// <summary>Takes a lease on the model in <paramref name="directory"/>, loading it if nobody holds it; the context's
    /// log receives its messages.</summary>
    /// <exception cref="InvalidOperationException">CUDA was asked for, cannot be used, and falling back is off.</exception>
    public static ModelLease Acquire(DiffusionHost host, DiffusionOptions options, string directory)
    {
        var runtime = RuntimeFor(host, options);
        var logger = new MLContextLogger(host.Environment, Path.GetFileName(Path.TrimEndingDirectorySeparator(directory)));
        runtime.Logger = logger;
        try
        {
            return new ModelLease(StableDiffusionPipeline.Load(directory, runtime), logger);
        }
        catch
        {
            logger.Dispose();
            throw;
        }
    }

    /// <summary>How many leases are held on the model for <paramref name="options"/> in <paramref name="context"/>, over every
    /// user of the shared store (tests and diagnostics).</summary>
    public static int LeaseCount(MLContext context, DiffusionOptions options) =>
        LoadedModelStore.LeaseCount(options.ModelPath!, RuntimeFor(DiffusionHost.From(context), options));
}

/// <summary>A transformer's hold on a shared loaded model; disposing it releases the hold (once).</summary>
internal sealed class ModelLease : IDisposable
{
    private readonly MLContextLogger _logger;
    private StableDiffusionPipeline? _pipeline;

    internal ModelLease(StableDiffusionPipeline pipeline, MLContextLogger logger)
    {
        _pipeline = pipeline;
        _logger = logger;
    }

    /// <summary>The transformer's pipeline.</summary>
    public StableDiffusionPipeline Pipeline => _pipeline ?? throw new ObjectDisposedException(nameof(ModelLease), "The transformer that used this model has been disposed.");

    public void Dispose()
    {
        var pipeline = Interlocked.Exchange(ref _pipeline, null);
        if (pipeline is null) return;
        pipeline.Dispose();
        _logger.Dispose();
    }
}

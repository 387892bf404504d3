using System.Reflection;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.ML.Runtime;
using Microsoft.ML;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// The ML.NET environment a diffusion transform runs in, with the device settings read from it as <c>ApplyOnnxModel</c>
/// reads them when the estimator is made: <see cref="MLContext.GpuDeviceId"/> and <see cref="MLContext.FallbackToCpu"/>.
/// </summary>
/// <remarks>
/// Catalog extension methods see only the <see cref="TransformsCatalog"/>, whose environment is the
/// <see cref="MLContext"/>'s inner environment (not the context itself); ML.NET keeps that link internal. It is read
/// here through the catalog's <c>_env</c> field (an <see cref="UnsafeAccessorAttribute"/>) and the device settings
/// through the environment's <c>GpuDeviceId</c>/<c>FallbackToCpu</c> properties (reflection), both checked on
/// Microsoft.ML 6.0.0 (the tests check them). Both routes fail with a message naming the workaround if a later ML.NET changes them.
/// The <see cref="Environment"/> of a context and of its catalogs is the same object, so transforms made either way
/// share loaded models.
/// </remarks>
internal sealed record DiffusionHost(IHostEnvironment Environment, int? GpuDeviceId, bool FallbackToCpu)
{
    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_env")]
    private static extern ref IHostEnvironment CatalogEnvironment(TransformsCatalog catalog);

    /// <summary>The host of <paramref name="context"/>.</summary>
    public static DiffusionHost From(MLContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new DiffusionHost(EnvironmentOf(context.Transforms), context.GpuDeviceId, context.FallbackToCpu);
    }

    /// <summary>The host of the context that owns <paramref name="catalog"/>.</summary>
    public static DiffusionHost From(TransformsCatalog catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        var env = EnvironmentOf(catalog);
        return new DiffusionHost(env, Read<int?>(env, nameof(MLContext.GpuDeviceId)), Read<bool>(env, nameof(MLContext.FallbackToCpu)));
    }

    private static IHostEnvironment EnvironmentOf(TransformsCatalog catalog)
    {
        try
        {
            return CatalogEnvironment(catalog) ?? throw Unavailable("TransformsCatalog._env is null", null);
        }
        catch (MissingFieldException e)
        {
            throw Unavailable("TransformsCatalog has no '_env' field", e);
        }
    }

    private static T Read<T>(IHostEnvironment env, string name)
    {
        for (var type = env.GetType(); type is not null; type = type.BaseType)
        {
            var property = type.GetProperty(name, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.DeclaredOnly);
            if (property?.PropertyType == typeof(T)) return (T)property.GetValue(env)!;
        }
        throw Unavailable($"the catalog's environment ({env.GetType().Name}) has no {name} property of type {typeof(T).Name}", null);
    }

    private static InvalidOperationException Unavailable(string what, Exception? inner) => new(
        $"MLNet.Diffusion cannot read the MLContext settings behind mlContext.Transforms in this version of Microsoft.ML ({what}). " +
        "Create the estimator with its constructor instead, e.g. new DiffusionEstimator(mlContext, options), which reads MLContext.GpuDeviceId and FallbackToCpu directly.", inner);
}

/// <summary>
/// An <see cref="ILogger"/> that writes to an <see cref="MLContext"/>'s log (<see cref="MLContext.Log"/>), so that the
/// engine's messages (device choice, CUDA fallback reasons, truncated prompts) reach ML.NET users where they already
/// listen. Levels map to ML.NET's kinds: Trace/Debug → Trace, Information → Info, Warning → Warning, Error/Critical → Error.
/// The source is "MLNet.Diffusion; {channel}".
/// </summary>
internal sealed class MLContextLogger : ILogger, IDisposable
{
    private readonly IChannel _channel;
    private readonly object _gate = new();
    private bool _disposed;

    /// <param name="environment">The context, or its inner environment (messages reach <see cref="MLContext.Log"/> either way).</param>
    /// <param name="channelName">Names the source, after "MLNet.Diffusion; ".</param>
    public MLContextLogger(IHostEnvironment environment, string channelName)
    {
        ArgumentNullException.ThrowIfNull(environment);
        _channel = environment.Register("MLNet.Diffusion").Start(channelName);
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        ArgumentNullException.ThrowIfNull(formatter);
        string message = formatter(state, exception);
        if (exception is not null) message = $"{message} {exception.GetType().Name}: {exception.Message}";
        lock (_gate)
        {
            if (_disposed) return;
            switch (logLevel)
            {
                case LogLevel.Trace or LogLevel.Debug: _channel.Trace(MessageSensitivity.None, message); break;
                case LogLevel.Information: _channel.Info(MessageSensitivity.None, message); break;
                case LogLevel.Warning: _channel.Warning(MessageSensitivity.None, message); break;
                default: _channel.Error(MessageSensitivity.None, message); break;
            }
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _channel.Dispose();
        }
    }
}

/// <summary>
/// How the ML.NET transforms lease a loaded model: each transformer holds one <see cref="StableDiffusionPipeline"/> from
/// <see cref="StableDiffusionPipeline.Load"/>, whose sessions the process-wide store shares with every other user of the
/// same folder and runtime settings (other transformers, the dependency-injection provider, direct loads). A pipeline of
/// three stages therefore loads the ONNX sessions once, and the model is unloaded when the last holder lets go.
/// </summary>
internal static class ModelLeases
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
            LowMemory = options.LowMemory,
            WithoutT5 = options.WithoutT5,
            MaxSequenceLength = options.MaxSequenceLength,
            TextualInversions = options.TextualInversions is null ? new Dictionary<string, string?>() : new Dictionary<string, string?>(options.TextualInversions),
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

using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace MLNet.Diffusion.Runtime;

/// <summary>
/// Creates <see cref="InferenceSession"/>s on the requested device, falling back to the CPU when the
/// CUDA provider cannot be loaded (its native library or CUDA itself is missing), as ML.NET's
/// <c>ApplyOnnxModel</c> does with <c>FallbackToCpu</c>. The first factory of the process also sets up ONNX Runtime's
/// environment (telemetry off unless asked for, native logging to the options' logger; see
/// <see cref="DiffusionRuntimeOptions.EnableOnnxRuntimeTelemetry"/>).
/// </summary>
internal sealed class OnnxSessionFactory
{
    private readonly DiffusionRuntimeOptions _options;
    private readonly string _logId;
    private string? _fallbackReason;

    /// <summary>Creates a factory for the given options (copied).</summary>
    public OnnxSessionFactory(DiffusionRuntimeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.DeviceId < 0) throw new ArgumentOutOfRangeException(nameof(options), options.DeviceId, "DeviceId must be 0 or more.");
        if (options.IntraOpThreads < 0 || options.InterOpThreads < 0) throw new ArgumentOutOfRangeException(nameof(options), "Thread counts must be 0 (automatic) or more.");
        if (options.EnableCudaGraph && !options.UseIoBinding)
            throw new ArgumentException("EnableCudaGraph needs UseIoBinding: a CUDA graph replays fixed device buffers, which only IO binding can supply.", nameof(options));
        _options = options.Clone();
        _logId = OnnxRuntimeEnvironment.Initialize(_options);
        IntraOpThreads = options.IntraOpThreads > 0 ? options.IntraOpThreads : CpuTopology.PhysicalCores;
        // ONNX Runtime's default pool has the same size on an unrestricted machine and pins each thread to its core;
        // an unpinned pool of the same size was 1.5–2× slower per call on small graphs (docs/PERFORMANCE.md).
        PinnedByOnnxRuntime = options.IntraOpThreads == 0 && CpuTopology.WholeMachine;
    }

    /// <summary>The intra-op thread count sessions are created with: <see cref="DiffusionRuntimeOptions.IntraOpThreads"/>,
    /// or when that is 0 the physical cores available to the process.</summary>
    public int IntraOpThreads { get; }

    /// <summary>
    /// True when <see cref="DiffusionRuntimeOptions.IntraOpThreads"/> is 0 and the process may use every CPU: the
    /// thread count is then left to ONNX Runtime, whose default pool has one thread per physical core, each pinned
    /// to its core. False when a count is set, or affinity or a container quota limits the process (ONNX Runtime would
    /// count the whole machine's cores): the sessions then get <see cref="IntraOpThreads"/> unpinned threads.
    /// </summary>
    public bool PinnedByOnnxRuntime { get; }

    /// <summary>The options sessions are created with (a copy).</summary>
    internal DiffusionRuntimeOptions Options => _options;

    /// <summary>The device sessions actually run on (CPU after a fallback).</summary>
    public ExecutionDevice ActualDevice { get; private set; } = ExecutionDevice.Cpu;

    /// <summary>Why CUDA was not used, when it was asked for and a fallback happened; otherwise null.</summary>
    public string? FallbackReason => _fallbackReason;

    /// <summary>Why a requested CUDA graph was not enabled (the CUDA runtime could not be loaded); otherwise null.</summary>
    internal string? CudaGraphReason { get; private set; }

    /// <summary>Opens <paramref name="modelPath"/> on the configured device.</summary>
    /// <exception cref="InvalidOperationException">CUDA was requested, could not be used, and fallback is off.</exception>
    public InferenceSession Create(string modelPath) => Create(modelPath, false, out _);

    /// <summary>
    /// Opens <paramref name="modelPath"/> on the configured device; with <paramref name="cudaGraph"/> (the UNet,
    /// when <see cref="DiffusionRuntimeOptions.EnableCudaGraph"/> is set) the CUDA provider captures a graph.
    /// <paramref name="cudaGraphEnabled"/> tells whether it does: only on CUDA, and only when the CUDA runtime
    /// that fills the graph's fixed buffers can be loaded (<see cref="CudaGraphReason"/> says why not).
    /// </summary>
    /// <param name="modelPath">The .onnx file.</param>
    /// <param name="cudaGraph">Whether to ask for CUDA-graph capture.</param>
    /// <param name="cudaGraphEnabled">Whether it was granted.</param>
    /// <param name="initializers">Initializers that replace the file's of the same name
    /// (<see cref="SessionOptions.AddInitializer"/>); they must outlive the session.</param>
    internal InferenceSession Create(string modelPath, bool cudaGraph, out bool cudaGraphEnabled,
        IReadOnlyList<KeyValuePair<string, OrtValue>>? initializers = null)
    {
        cudaGraphEnabled = false;
        if (_options.Device == ExecutionDevice.Cuda && _fallbackReason is null)
        {
            SessionOptions? cuda = null;
            OrtCUDAProviderOptions? provider = null;
            try
            {
                cuda = NewOptions(initializers);
                string? reason = null;
                bool graph = cudaGraph && CudaRuntime.IsAvailable(out reason);
                if (cudaGraph) CudaGraphReason = reason;
                if (cudaGraph && !graph)
                    _options.Logger?.LogWarning("CUDA graphs are off for '{Model}': {Reason}.", modelPath, CudaGraphReason);
                provider = new OrtCUDAProviderOptions();
                var settings = new Dictionary<string, string> { ["device_id"] = _options.DeviceId.ToString(System.Globalization.CultureInfo.InvariantCulture) };
                if (graph) settings["enable_cuda_graph"] = "1";
                provider.UpdateOptions(settings);
                cuda.AppendExecutionProvider_CUDA(provider);
                var session = new InferenceSession(modelPath, cuda);
                ActualDevice = ExecutionDevice.Cuda;
                cudaGraphEnabled = graph;
                return session;
            }
            catch (Exception e) when (e is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
            {
                _fallbackReason = $"CUDA device {_options.DeviceId} could not be used: {e.Message.Trim()}";
                if (!_options.FallbackToCpu)
                    throw new InvalidOperationException($"{_fallbackReason} Falling back to the CPU is turned off (FallbackToCpu = false). Install Microsoft.ML.OnnxRuntime.Gpu and a matching CUDA/cuDNN, or run on the CPU.", e);
                _options.Logger?.LogWarning("{Reason}. Falling back to the CPU execution provider.", _fallbackReason);
            }
            finally
            {
                cuda?.Dispose();
                provider?.Dispose();
            }
        }
        using var cpu = NewOptions(initializers);
        ActualDevice = ExecutionDevice.Cpu;
        return new InferenceSession(modelPath, cpu);
    }

    private SessionOptions NewOptions(IReadOnlyList<KeyValuePair<string, OrtValue>>? initializers)
    {
        var o = new SessionOptions
        {
            GraphOptimizationLevel = _options.GraphOptimizationLevel,
            // Through the library's logging function when it created ONNX Runtime's environment (to the Logger, never to
            // standard error); otherwise the host's sink, which would print to standard error: fatal errors only.
            LogSeverityLevel = OnnxRuntimeEnvironment.OwnsEnvironment ? OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING : OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL,
            LogId = _logId,
        };
        if (!PinnedByOnnxRuntime) o.IntraOpNumThreads = IntraOpThreads;
        // Low memory: CPU tensors are allocated and freed per run, not kept in an arena that only grows.
        if (!(_options.CpuMemoryArena ?? !_options.LowMemory)) o.EnableCpuMemArena = false;
        o.ExecutionMode = ExecutionMode.ORT_SEQUENTIAL;
        if (_options.InterOpThreads > 0) o.InterOpNumThreads = _options.InterOpThreads;
        if (initializers is not null)
            foreach (var (name, value) in initializers) o.AddInitializer(name, value);
        return o;
    }
}

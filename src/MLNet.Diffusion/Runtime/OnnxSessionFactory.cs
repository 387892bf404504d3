using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace MLNet.Diffusion.Runtime;

/// <summary>
/// Creates <see cref="InferenceSession"/>s on the requested device, falling back to the CPU when the
/// CUDA provider cannot be loaded (its native library or CUDA itself is missing), as ML.NET's
/// <c>ApplyOnnxModel</c> does with <c>FallbackToCpu</c>.
/// </summary>
public sealed class OnnxSessionFactory
{
    private readonly DiffusionRuntimeOptions _options;
    private string? _fallbackReason;

    /// <summary>Creates a factory for the given options (copied).</summary>
    public OnnxSessionFactory(DiffusionRuntimeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.DeviceId < 0) throw new ArgumentOutOfRangeException(nameof(options), options.DeviceId, "DeviceId must be 0 or more.");
        if (options.IntraOpThreads < 0 || options.InterOpThreads < 0) throw new ArgumentOutOfRangeException(nameof(options), "Thread counts must be 0 (automatic) or more.");
        _options = options.Clone();
    }

    /// <summary>The device sessions actually run on (CPU after a fallback).</summary>
    public ExecutionDevice ActualDevice { get; private set; } = ExecutionDevice.Cpu;

    /// <summary>Why CUDA was not used, when it was asked for and a fallback happened; otherwise null.</summary>
    public string? FallbackReason => _fallbackReason;

    /// <summary>Opens <paramref name="modelPath"/> on the configured device.</summary>
    /// <exception cref="InvalidOperationException">CUDA was requested, could not be used, and fallback is off.</exception>
    public InferenceSession Create(string modelPath)
    {
        if (_options.Device == ExecutionDevice.Cuda && _fallbackReason is null)
        {
            SessionOptions? cuda = null;
            try
            {
                cuda = NewOptions();
                cuda.AppendExecutionProvider_CUDA(_options.DeviceId);
                var session = new InferenceSession(modelPath, cuda);
                ActualDevice = ExecutionDevice.Cuda;
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
            }
        }
        using var cpu = NewOptions();
        ActualDevice = ExecutionDevice.Cpu;
        return new InferenceSession(modelPath, cpu);
    }

    private SessionOptions NewOptions()
    {
        var o = new SessionOptions
        {
            GraphOptimizationLevel = _options.GraphOptimizationLevel,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        if (_options.IntraOpThreads > 0) o.IntraOpNumThreads = _options.IntraOpThreads;
        if (_options.InterOpThreads > 0) o.InterOpNumThreads = _options.InterOpThreads;
        return o;
    }
}

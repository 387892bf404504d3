using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace MLNet.Diffusion.Runtime;

/// <summary>How the model components are run: device, fallback, threads and graph optimisation.</summary>
public sealed class DiffusionRuntimeOptions
{
    /// <summary>The execution provider to ask for. Default: CPU.</summary>
    public ExecutionDevice Device { get; set; } = ExecutionDevice.Cpu;

    /// <summary>The CUDA device ordinal (as <c>MLContext.GpuDeviceId</c>). Default 0.</summary>
    public int DeviceId { get; set; }

    /// <summary>When CUDA cannot be loaded, run on the CPU and log why (true, the default, as
    /// <c>MLContext.FallbackToCpu</c>), or throw (false).</summary>
    public bool FallbackToCpu { get; set; } = true;

    /// <summary>Threads ONNX Runtime uses inside an operator; 0 (default) lets ONNX Runtime use one per physical core.</summary>
    public int IntraOpThreads { get; set; }

    /// <summary>Threads ONNX Runtime uses across operators; 0 (default) lets ONNX Runtime choose.</summary>
    public int InterOpThreads { get; set; }

    /// <summary>The graph optimisation level. Default: all optimisations.</summary>
    public GraphOptimizationLevel GraphOptimizationLevel { get; set; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>Where to log device choice, fallback reasons and warnings (e.g. truncated prompts). Default: nowhere.</summary>
    public ILogger? Logger { get; set; }

    /// <summary>A shallow copy.</summary>
    public DiffusionRuntimeOptions Clone() => (DiffusionRuntimeOptions)MemberwiseClone();
}

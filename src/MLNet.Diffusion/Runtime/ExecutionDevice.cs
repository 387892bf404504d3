using MLNet.Diffusion.Runtime;
namespace MLNet.Diffusion;

/// <summary>Where ONNX Runtime executes the model components.</summary>
public enum ExecutionDevice
{
    /// <summary>The CPU execution provider.</summary>
    Cpu,
    /// <summary>The CUDA execution provider (needs <c>Microsoft.ML.OnnxRuntime.Gpu</c> and CUDA libraries).</summary>
    Cuda,
}

namespace MLNet.Diffusion.Denoising;

/// <summary>How a <see cref="UNetBinding"/> hands its buffers to ONNX Runtime at each step.</summary>
internal enum UNetRunPath
{
    /// <summary><c>InferenceSession.Run</c> with arrays of names and values
    /// (<see cref="DiffusionRuntimeOptions.UseIoBinding"/> false); allocates a few hundred managed bytes per step.</summary>
    SessionRun,

    /// <summary>An <c>OrtIoBinding</c> made once per generation; each step is one <c>RunWithBinding</c> call.
    /// On the CPU the bound tensors are the step buffers themselves; on CUDA the embeddings are copied to the
    /// device once and the latents and prediction are copied by ONNX Runtime at each step.</summary>
    IoBinding,

    /// <summary>Every input and the output in fixed buffers in the session's device memory, bound once and
    /// filled and read with explicit copies at each step: what CUDA-graph replay needs
    /// (<see cref="DiffusionRuntimeOptions.EnableCudaGraph"/>).</summary>
    FixedBuffers,
}

using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Hosting;

namespace MLNet.Diffusion;

/// <summary>
/// Shares one <see cref="StableDiffusionPipeline"/> per model folder among everything that needs it (the container's
/// pipeline and image-generator registrations, ML.NET transforms, application code), so a folder's ONNX Runtime
/// sessions are created once however many consumers ask. The provider owns the pipelines: consumers must not dispose
/// them; they are disposed with the provider.
/// </summary>
public interface IDiffusionPipelineProvider
{
    /// <summary>
    /// The shared pipeline for <paramref name="modelPath"/>, loaded on the first request for that folder (concurrent
    /// first requests wait for the one load). Spellings of the same folder (relative, trailing separator) share it.
    /// </summary>
    /// <param name="modelPath">A diffusers/Optimum ONNX export folder.</param>
    /// <exception cref="ObjectDisposedException">The provider has been disposed.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">A component is missing (named in the message).</exception>
    /// <exception cref="InvalidDataException">A component does not fit the contract (named in the message).</exception>
    /// <remarks>A load that fails is not remembered: the next request tries again.</remarks>
    StableDiffusionPipeline Get(string modelPath);

    /// <summary>The full paths of the folders loaded so far (each loaded once).</summary>
    IReadOnlyCollection<string> LoadedModelPaths { get; }
}

using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion;

/// <summary>
/// Progress of the ML.NET diffusion transforms, reported through <see cref="DiffusionOptions.Progress"/>: the batch
/// being generated (its first input row and how many images it holds) and where the engine is within it (text
/// encoding, one report per UNet call while denoising, one per decoded image).
/// </summary>
/// <param name="FirstRow">The 0-based position, in the input view, of the batch's first row.</param>
/// <param name="Images">Images in the batch (at most <see cref="DiffusionOptions.BatchSize"/>).</param>
/// <param name="Stage">The engine's stage and step within the batch. A batch whose images differ in steps or in
/// guidance on/off runs one denoising pass per group, each counting its own steps.</param>
public readonly record struct DiffusionBatchProgress(long FirstRow, int Images, DiffusionProgress Stage);

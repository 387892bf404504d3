using System.Globalization;
using System.Numerics.Tensors;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// NaN or ±Infinity appeared in a model's output or in the latents. The pipeline checks once per stage and once per
/// denoising step (the guided UNet output, and the latents after the scheduler step), so the exception names the
/// step where the fault appeared instead of the fault surfacing as a black image at the end. The usual cause is
/// float16 overflow in an fp16 export; a float32 export, a lower guidance scale or another scheduler usually helps.
/// </summary>
public sealed class NonFiniteLatentsException : InvalidOperationException
{
    /// <summary>Creates the exception with a message only (no step details).</summary>
    public NonFiniteLatentsException() : this("Non-finite values appeared during generation.") { }

    /// <summary>Creates the exception with a message only (no step details).</summary>
    public NonFiniteLatentsException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public NonFiniteLatentsException(string message, Exception innerException) : base(message, innerException) { }

    private NonFiniteLatentsException(string message, DiffusionStage stage, string tensor, int step, int totalSteps, float? timestep, int imageIndex, int nanCount, int infinityCount)
        : base(message)
    {
        Stage = stage;
        Tensor = tensor;
        Step = step;
        TotalSteps = totalSteps;
        Timestep = timestep;
        ImageIndex = imageIndex;
        NaNCount = nanCount;
        InfinityCount = infinityCount;
    }

    /// <summary>The stage that produced the values.</summary>
    public DiffusionStage Stage { get; }

    /// <summary>What held them: "UNet output", "latents after the scheduler step", "text encoder output", "VAE encoder output" or "VAE decoder output".</summary>
    public string Tensor { get; } = "";

    /// <summary>In <see cref="DiffusionStage.Denoising"/>, the model call (1-based) in the scheduler's schedule where the values
    /// appeared (image-to-image starts part-way along it); in the other stages, the item (prompt, image) counted from 1.</summary>
    public int Step { get; }

    /// <summary>The number of model calls in the schedule (denoising), or of items in the stage.</summary>
    public int TotalSteps { get; }

    /// <summary>The scheduler timestep of the call (denoising only).</summary>
    public float? Timestep { get; }

    /// <summary>The request (prompt or image) whose values were not finite first, in the caller's order; −1 when unknown.</summary>
    public int ImageIndex { get; }

    /// <summary>How many values were NaN.</summary>
    public int NaNCount { get; }

    /// <summary>How many values were +Infinity or −Infinity.</summary>
    public int InfinityCount { get; }

    /// <summary>Whether every value is finite: one vectorised pass (the largest magnitude is NaN or infinite exactly when some value is).</summary>
    internal static bool AllFinite(ReadOnlySpan<float> values) => values.IsEmpty || float.IsFinite(TensorPrimitives.MaxMagnitude(values));

    /// <summary>
    /// Throws when <paramref name="values"/> holds NaN or ±Infinity. <paramref name="rowLength"/> values belong to each
    /// row, and <paramref name="rowToImage"/> maps a row to the caller's image index (empty: the row plus
    /// <paramref name="imageOffset"/>). A <paramref name="step"/> of 0 reports the row, counted from 1.
    /// </summary>
    internal static void ThrowIfNonFinite(ReadOnlySpan<float> values, DiffusionStage stage, string tensor, int step, int totalSteps, float? timestep,
        int rowLength, ReadOnlySpan<int> rowToImage = default, int imageOffset = 0)
    {
        if (AllFinite(values)) return;
        int first = -1, nan = 0, inf = 0;
        for (int i = 0; i < values.Length; i++)
        {
            float v = values[i];
            if (float.IsNaN(v)) nan++;
            else if (float.IsInfinity(v)) inf++;
            else continue;
            if (first < 0) first = i;
        }
        int row = rowLength > 0 ? first / rowLength : 0;
        int image = rowToImage.IsEmpty ? row + imageOffset : row < rowToImage.Length ? rowToImage[row] : -1;
        if (step <= 0) step = row + 1; // outside the denoising loop, the item is the row
        string where = stage switch
        {
            DiffusionStage.Denoising => string.Create(CultureInfo.InvariantCulture, $"denoising step {step} of {totalSteps} (timestep {timestep})"),
            DiffusionStage.EncodingText => $"text encoding (prompt {step} of {totalSteps})",
            DiffusionStage.EncodingImages => $"init-image encoding (image {step} of {totalSteps})",
            _ => $"VAE decoding (image {step} of {totalSteps})",
        };
        string message = string.Create(CultureInfo.InvariantCulture,
            $"Non-finite values ({nan} NaN, {inf} ±Infinity of {values.Length}) in the {tensor} at {where}, first in image {image}. This is usually float16 overflow in the model: try a float32 export, a lower guidance scale or another scheduler. The result would be a black or corrupt image, so none is returned.");
        throw new NonFiniteLatentsException(message, stage, tensor, step, totalSteps, timestep, image, nan, inf);
    }
}

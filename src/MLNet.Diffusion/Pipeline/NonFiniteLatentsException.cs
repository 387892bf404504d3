using System.Globalization;
using System.Numerics.Tensors;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion;

/// <summary>
/// NaN or ±Infinity appeared in a model's output or in the latents. The pipeline checks once per stage and once per
/// denoising step (the guided UNet output, and the latents after the scheduler step), so the exception names the
/// step where the fault appeared instead of the fault surfacing as a black image at the end. The message says what is
/// known, not a guess: which model file produced the values and whether its inputs and outputs are float16, whether its
/// inputs were finite, whether the values came from the model itself, from classifier-free guidance or from the
/// scheduler step, and the scheduler with its σ at that step. Float16 overflow is named as the likely cause only for an
/// fp16 model given finite inputs.
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

    /// <summary>The model file that produced the values, or whose output they were computed from (<c>unet/model.onnx</c>, …); null when unknown.</summary>
    public string? ModelFile { get; private init; }

    /// <summary>Whether that model declares float16 inputs or outputs (an fp16 export); null when unknown.</summary>
    public bool? ModelIsFloat16 { get; private init; }

    /// <summary>Whether the model's inputs were all finite (null when not known): false means the fault came from upstream.</summary>
    public bool? InputsFinite { get; private init; }

    /// <summary>Whether the model's own output was finite when the values were computed from it (guidance, the scheduler
    /// step); null when the values are the model's output itself.</summary>
    public bool? ModelOutputFinite { get; private init; }

    /// <summary>The scheduler's diffusers class name in the denoising stage (for example <c>EulerDiscreteScheduler</c>); otherwise null.</summary>
    public string? SchedulerName { get; private init; }

    /// <summary>The training schedule's noise level σ = √((1 − ᾱ)/ᾱ) at <see cref="Timestep"/> (denoising only).</summary>
    public double? Sigma { get; private init; }

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
    /// <paramref name="source"/> says where the values came from; it is read only when they are not finite.
    /// </summary>
    internal static void ThrowIfNonFinite(ReadOnlySpan<float> values, DiffusionStage stage, string tensor, int step, int totalSteps, float? timestep,
        int rowLength, ReadOnlySpan<int> rowToImage = default, int imageOffset = 0, NonFiniteSource source = default)
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

        var model = source.Model;
        string? file = model?.ComponentFile;
        bool? float16 = model?.HasFloat16Boundaries;
        bool? inputsFinite = source.InputIsIds ? true : !source.Input.IsEmpty ? AllFinite(source.Input) : null;
        bool? outputFinite = source.DerivedBy is not null ? AllFinite(source.ModelOutput) : null;
        var scheduler = source.Scheduler;
        double? sigma = scheduler is not null && timestep is float t ? SigmaAt(scheduler, t) : null;

        var inv = CultureInfo.InvariantCulture;
        string schedulerText = scheduler is null ? "" : string.Create(inv, $", {scheduler.Name}, σ {sigma:G4}");
        string where = stage switch
        {
            DiffusionStage.Denoising => string.Create(inv, $"denoising step {step} of {totalSteps} (timestep {timestep}{schedulerText})"),
            DiffusionStage.EncodingText => $"text encoding (prompt {step} of {totalSteps})",
            DiffusionStage.EncodingImages => $"init-image encoding (image {step} of {totalSteps})",
            _ => $"VAE decoding (image {step} of {totalSteps})",
        };
        string kind = float16 == true ? "float16" : "float32";
        string cause;
        if (file is null)
            cause = "";
        else if (outputFinite == true)
        {
            cause = string.Create(inv, $" The output of '{file}' was finite (largest magnitude {TensorPrimitives.MaxMagnitude(source.ModelOutput):G3}), so {source.DerivedBy} overflowed float32: ") +
                "the model's output is far larger than a noise prediction should be, or the schedule's numbers are extreme; check the model file and scheduler_config.json (beta_start, beta_end, num_train_timesteps), or lower the guidance scale.";
        }
        else if (inputsFinite == false)
            cause = $" The inputs given to '{file}' already held non-finite values, so the fault is upstream of that model (an earlier stage, or latents passed in by the caller).";
        else if (float16 == true)
            cause = $" The float16 model '{file}' produced them from finite inputs: float16 overflow is the usual cause; try a float32 export, a lower guidance scale or another scheduler.";
        else
            cause = $" The {kind} model '{file}' produced them from {(inputsFinite == true ? "finite inputs" : "its inputs")}: a model with float32 inputs and outputs should not, so the file is damaged or was exported wrongly (an export that computes in half precision behind float32 inputs and outputs can still overflow inside); check it against its source export.";
        string message = string.Create(inv,
            $"Non-finite values ({nan} NaN, {inf} ±Infinity of {values.Length}) in the {tensor} at {where}, first in image {image}.{cause} The result would be a black or corrupt image, so none is returned.");
        throw new NonFiniteLatentsException(message, stage, tensor, step, totalSteps, timestep, image, nan, inf)
        {
            ModelFile = file,
            ModelIsFloat16 = float16,
            InputsFinite = inputsFinite,
            ModelOutputFinite = outputFinite,
            SchedulerName = scheduler?.Name,
            Sigma = sigma,
        };
    }

    /// <summary>σ = √((1 − ᾱ)/ᾱ) of the training schedule at a (possibly fractional) timestep, interpolated as diffusers does.</summary>
    private static double SigmaAt(Schedulers.DiffusionScheduler scheduler, float timestep) =>
        Schedulers.SchedulerMath.SigmaAtTimestep(timestep, Schedulers.SchedulerMath.Sigmas(scheduler.AlphasCumprod));
}

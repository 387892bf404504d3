using System.Numerics.Tensors;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// Arithmetic shared by the ᾱ-parameterised schedulers (DDIM, DDPM, PNDM, LCM): the forward process
/// x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε (Ho et al. 2020, eq. 4), and the conversion of a model output of any
/// <see cref="PredictionType"/> into the pair (x̂₀, ε̂) that every update is written in.
/// </summary>
internal static class AlphaBarSampling
{
    /// <summary>The <c>timestep_spacing</c> values diffusers accepts (Lin et al. 2023, Table 2).</summary>
    private static readonly string[] Spacings = ["linspace", "leading", "trailing"];

    /// <summary>
    /// Coefficients with x̂₀ = a₀·x + b₀·m and ε̂ = a₁·x + b₁·m for model output m at ᾱ
    /// (diffusers: the <c>prediction_type</c> branch of every <c>step</c>).
    /// </summary>
    public static (double A0, double B0, double A1, double B1) Decompose(PredictionType type, double alphaBar)
    {
        double sa = Math.Sqrt(alphaBar), sb = Math.Sqrt(1 - alphaBar);
        return type switch
        {
            // ε-prediction, Ho et al. 2020 eq. 15 / Song et al. 2021 (DDIM) eq. 12: x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ, ε̂ = m.
            PredictionType.Epsilon => (1 / sa, -sb / sa, 0, 1),
            // x₀-prediction: x̂₀ = m, ε̂ = (x − √ᾱ·x̂₀)/√(1−ᾱ).
            PredictionType.Sample => (0, 1, 1 / sb, -sa / sb),
            // v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans and Ho 2022, §4): x̂₀ = √ᾱ·x − √(1−ᾱ)·v, ε̂ = √ᾱ·v + √(1−ᾱ)·x.
            PredictionType.VPrediction => (sa, -sb, sb, sa),
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown prediction type."),
        };
    }

    /// <summary>
    /// x ← c₀·clip(x̂₀) + c₁·ε̂ + c₂·x, element-wise and in place, where (x̂₀, ε̂) come from the model
    /// output at ᾱ. Clipping (diffusers' <c>clip_sample</c>) applies to x̂₀ only, as in diffusers, where ε̂ is
    /// taken before the clip. <paramref name="clipRange"/> = +∞ turns clipping off.
    /// </summary>
    public static void Combine(PredictionType type, double alphaBar, ReadOnlySpan<float> modelOutput, Span<float> sample,
        double clipRange, double cX0, double cEps, double cSample)
    {
        var (a0, b0, a1, b1) = Decompose(type, alphaBar);
        if (double.IsPositiveInfinity(clipRange))
        {
            // Everything is linear: x ← A·x + B·m with the coefficients folded in double precision.
            float a = (float)(cX0 * a0 + cEps * a1 + cSample), b = (float)(cX0 * b0 + cEps * b1);
            LatentKernels.Update(modelOutput, sample, default, 1f, 0f, a, b, 0); // x ← a·x + b·m in one pass
            return;
        }
        LatentKernels.CombineClipped(modelOutput, sample, a0, b0, a1, b1, clipRange, cX0, cEps, cSample);
    }

    /// <summary>ε̂ from model output m at (x, ᾱ) into <paramref name="destination"/>, which must not overlap the sample.</summary>
    public static void ToEpsilon(PredictionType type, double alphaBar, ReadOnlySpan<float> modelOutput, ReadOnlySpan<float> sample, Span<float> destination)
    {
        if (type == PredictionType.Epsilon)
        {
            modelOutput.CopyTo(destination);
            return;
        }
        var (_, _, a1, b1) = Decompose(type, alphaBar);
        // ε̂ = a₁·x + b₁·m
        TensorPrimitives.Multiply(modelOutput, (float)b1, destination);
        TensorPrimitives.MultiplyAdd(sample, (float)a1, destination, destination);
    }

    /// <summary>
    /// diffusers' <c>add_noise</c>: destination = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε at t = Timesteps[callIndex]
    /// (Ho et al. 2020, eq. 4). The destination may be either input.
    /// </summary>
    public static void AddNoise(DiffusionScheduler scheduler, ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        if (scheduler.CallCount == 0)
            throw new InvalidOperationException($"{scheduler.Name}: call SetTimesteps before AddNoise.");
        if (callIndex < 0 || callIndex >= scheduler.CallCount)
            throw new ArgumentOutOfRangeException(nameof(callIndex), callIndex, $"{scheduler.Name}: the call index must be between 0 and {scheduler.CallCount - 1}.");
        if (original.Length != noise.Length || original.Length != destination.Length)
            throw new ArgumentException($"{scheduler.Name}: the original ({original.Length}), noise ({noise.Length}) and destination ({destination.Length}) lengths differ.", nameof(noise));
        double alphaBar = scheduler.AlphasCumprod[(int)scheduler.Timesteps[callIndex]];
        float sa = (float)Math.Sqrt(alphaBar), sb = (float)Math.Sqrt(1 - alphaBar);
        LatentKernels.AxPlusBy(sa, original, sb, noise, destination);
    }

    /// <summary>Reads <c>timestep_spacing</c> and rejects values diffusers does not know.</summary>
    public static string ReadSpacing(SchedulerConfig config, string defaultValue)
    {
        string spacing = config.GetString("timestep_spacing", defaultValue);
        if (Array.IndexOf(Spacings, spacing) < 0)
            throw new InvalidDataException($"Scheduler configuration '{config.Source ?? "(text)"}': timestep_spacing '{spacing}' is not supported; expected linspace, leading or trailing.");
        return spacing;
    }

    /// <summary>Reads <c>clip_sample</c> / <c>clip_sample_range</c>: the x̂₀ clip bound, or +∞ when off.</summary>
    public static double ReadClipRange(SchedulerConfig config, bool clipDefault)
    {
        if (!config.GetBool("clip_sample", clipDefault)) return double.PositiveInfinity;
        double range = config.GetDouble("clip_sample_range", 1.0);
        if (!(range > 0))
            throw new InvalidDataException($"Scheduler configuration '{config.Source ?? "(text)"}': clip_sample_range is {range}, expected a positive number.");
        return range;
    }

    /// <summary>
    /// Dynamic thresholding (Saharia et al. 2022, Imagen §2.3) needs a per-image quantile of |x̂₀|, but
    /// <see cref="DiffusionScheduler.Step"/> sees a flattened batch without its image size, so it is not offered.
    /// </summary>
    public static void RejectThresholding(SchedulerConfig config, string name)
    {
        if (config.GetBool("thresholding", false))
            throw new NotSupportedException($"{name}: configuration '{config.Source ?? "(text)"}' sets thresholding = true; dynamic thresholding is not supported (it is meant for pixel-space models, not latent diffusion). Set thresholding to false.");
    }

    /// <summary>Integer timesteps (the ᾱ table's indices) for the shared spacings, checked to lie in [0, N − 1].</summary>
    public static int[] IntegerTimesteps(DiffusionScheduler scheduler, string spacing, int steps, int stepsOffset)
    {
        var spaced = SchedulerMath.SpacedTimesteps(spacing, scheduler.NumTrainTimesteps, steps, stepsOffset, roundToInteger: true);
        var result = new int[spaced.Length];
        for (int i = 0; i < spaced.Length; i++)
        {
            result[i] = (int)spaced[i];
            if (result[i] < 0 || result[i] >= scheduler.NumTrainTimesteps)
                throw new ArgumentOutOfRangeException(nameof(steps), steps,
                    $"{scheduler.Name}: {steps} steps with timestep_spacing '{spacing}' and steps_offset {stepsOffset} give timestep {result[i]}, outside 0 … {scheduler.NumTrainTimesteps - 1}.");
        }
        return result;
    }

    /// <summary>Converts integer timesteps to the base class's float list.</summary>
    public static float[] ToFloats(int[] timesteps) => Array.ConvertAll(timesteps, t => (float)t);
}

using System.Numerics.Tensors;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// What the σ-parameterised (variance-exploding view) schedulers share: LMS, Euler, Euler ancestral,
/// Heun, KDPM2 and, for its tables, DPM-Solver. Notation after Karras et al. 2022 ("Elucidating the Design
/// Space of Diffusion-Based Generative Models", arXiv:2206.00364) and k-diffusion's <c>sampling.py</c>:
/// the sample is x = x₀ + σ·ε with σ = √((1 − ᾱ)/ᾱ), the UNet sees x/√(σ² + 1) (which is the VP sample
/// √ᾱ·x₀ + √(1 − ᾱ)·ε), D(x; σ) is the denoised estimate and d = (x − D)/σ the ODE derivative dx/dσ.
/// </summary>
internal static class SigmaSchedule
{
    /// <summary>
    /// diffusers' stand-in for ᾱ = 0 at the last training step under <c>rescale_betas_zero_snr</c>
    /// (2⁻²⁴, the smallest fp16 subnormal), so that σ_max stays finite (≈ 4096).
    /// Source: diffusers <c>scheduling_euler_discrete.py</c>, <c>__init__</c>.
    /// </summary>
    internal const double ZeroSnrAlphaBar = 1.0 / (1 << 24);

    /// <summary>
    /// Fills in the keys whose class default differs from the one the shared base constructor assumes
    /// (<see cref="SchedulerMath.Betas"/> uses <c>beta_start</c> 0.0001 and <c>beta_end</c> 0.02, which is
    /// right for LMS, Euler, Euler ancestral and DPM-Solver but not for Heun and KDPM2, whose diffusers
    /// classes default to 0.00085 / 0.012), and drops <c>rescale_betas_zero_snr</c> for classes that do
    /// not have that key (diffusers ignores keys a class does not declare).
    /// </summary>
    internal static SchedulerConfig WithClassDefaults(SchedulerConfig config, double betaStart, double betaEnd, bool hasZeroSnrKey)
    {
        ArgumentNullException.ThrowIfNull(config);
        var overrides = new List<(string, object?)>();
        if (!config.Contains("beta_start") && betaStart != 0.0001) overrides.Add(("beta_start", betaStart));
        if (!config.Contains("beta_end") && betaEnd != 0.02) overrides.Add(("beta_end", betaEnd));
        if (!hasZeroSnrKey && config.GetBool("rescale_betas_zero_snr", false)) overrides.Add(("rescale_betas_zero_snr", false));
        return overrides.Count == 0 ? config : config.With([.. overrides]);
    }

    /// <summary>
    /// Under <c>rescale_betas_zero_snr</c>, replaces ᾱ = 0 at the last training step by
    /// <see cref="ZeroSnrAlphaBar"/>, in place, as the diffusers σ schedulers do.
    /// </summary>
    internal static void FloorZeroTerminalSnr(double[] alphasCumprod, SchedulerConfig config)
    {
        if (config.GetBool("rescale_betas_zero_snr", false)) alphasCumprod[^1] = ZeroSnrAlphaBar;
    }

    /// <summary><c>solver_order</c> of the multistep and singlestep solvers: 1 to 3 (default 2).</summary>
    internal static int SolverOrder(SchedulerConfig config, string scheduler, string where)
    {
        int order = config.GetInt("solver_order", 2);
        if (order is < 1 or > 3)
            throw new InvalidDataException($"{scheduler}: solver_order is {order}, expected 1, 2 or 3 {where}.");
        return order;
    }

    /// <summary>
    /// Checks <c>timestep_spacing</c> for <see cref="MultistepTimesteps"/>: <c>linspace</c> (the default), <c>leading</c>
    /// or <c>trailing</c>.
    /// </summary>
    internal static void RequireMultistepSpacing(SchedulerConfig config, string scheduler, string where)
    {
        string spacing = config.GetString("timestep_spacing", "linspace");
        if (spacing is not ("linspace" or "leading" or "trailing"))
            throw new InvalidDataException($"{scheduler}: timestep_spacing '{spacing}' is not supported; expected linspace, leading or trailing {where}.");
    }

    /// <summary><c>final_sigmas_type</c>: true for <c>zero</c> (the default), false for <c>sigma_min</c>.</summary>
    internal static bool FinalSigmaIsZero(SchedulerConfig config, string scheduler, string where)
    {
        string finalType = config.GetString("final_sigmas_type", "zero");
        if (finalType is not ("zero" or "sigma_min"))
            throw new InvalidDataException($"{scheduler}: final_sigmas_type '{finalType}' is not one of zero, sigma_min {where}.");
        return finalType == "zero";
    }

    /// <summary>Refuses dynamic thresholding (for pixel-space models) and a model that also predicts its variance.</summary>
    internal static void RejectThresholdingAndLearnedVariance(SchedulerConfig config, string scheduler, string where)
    {
        if (config.GetBool("thresholding", false))
            throw new NotSupportedException($"{scheduler}: 'thresholding: true' (dynamic thresholding, for pixel-space models) is not supported {where}.");
        string? varianceType = config.Contains("variance_type") ? config.GetString("variance_type", "") : null;
        if (varianceType is "learned" or "learned_range")
            throw new NotSupportedException($"{scheduler}: variance_type '{varianceType}' (a model that also predicts its variance) is not supported {where}.");
    }

    /// <summary>Throws <see cref="NotSupportedException"/> naming the first of <paramref name="keys"/> that is set to true.</summary>
    internal static void RejectFlags(SchedulerConfig config, string scheduler, params string[] keys)
    {
        foreach (var key in keys)
            if (config.GetBool(key, false))
                throw new NotSupportedException($"{scheduler}: '{key}: true' is not supported by this implementation (scheduler configuration '{config.Source ?? "(text)"}').");
    }

    /// <summary>Throws <see cref="NotSupportedException"/> unless <paramref name="key"/> is absent or one of <paramref name="supported"/>.</summary>
    internal static string RequireOneOf(SchedulerConfig config, string scheduler, string key, string defaultValue, params string[] supported)
    {
        string value = config.GetString(key, defaultValue);
        if (Array.IndexOf(supported, value) < 0)
            throw new NotSupportedException($"{scheduler}: {key} '{value}' is not supported; expected {string.Join(" or ", supported)} (scheduler configuration '{config.Source ?? "(text)"}').");
        return value;
    }

    /// <summary>
    /// Inference timesteps for the Euler family (<c>timestep_spacing</c>, default <c>linspace</c>, kept
    /// fractional; <c>steps_offset</c> only for <c>leading</c>), rounded to float32 as diffusers builds them
    /// (<c>np.linspace(…, dtype=np.float32)</c>), so that σ is read at exactly the timestep the UNet is given.
    /// </summary>
    internal static double[] SpacedTimesteps(SchedulerConfig config, int trainSteps, int steps)
    {
        var t = SchedulerMath.SpacedTimesteps(config.GetString("timestep_spacing", "linspace"), trainSteps, steps,
            config.GetInt("steps_offset", 0), roundToInteger: false);
        for (int i = 0; i < t.Length; i++) t[i] = (float)t[i];
        return t;
    }

    /// <summary>
    /// The inference schedule of the σ schedulers, as their <c>set_timesteps</c> builds it before the final σ: the
    /// spaced timesteps (<see cref="SpacedTimesteps"/>) and their σ in the training table; with
    /// <paramref name="karras"/> (<c>use_karras_sigmas</c>), Karras σ between the same ends (or
    /// <paramref name="sigmaMin"/>/<paramref name="sigmaMax"/> where configured) and the timesteps read back from them,
    /// rounded half-to-even when <paramref name="roundKarrasTimesteps"/>.
    /// </summary>
    internal static (double[] Timesteps, double[] Sigmas) Spaced(SchedulerConfig config, int trainSteps, int steps, double[] trainSigmas,
        bool karras, bool roundKarrasTimesteps = false, double? sigmaMin = null, double? sigmaMax = null)
    {
        var timesteps = SpacedTimesteps(config, trainSteps, steps);
        var sigmas = SigmasAt(timesteps, trainSigmas);
        if (!karras) return (timesteps, sigmas);
        sigmas = Karras(sigmas, steps, sigmaMin, sigmaMax);
        return (TimestepsFor(sigmas, trainSigmas, roundKarrasTimesteps), sigmas);
    }

    /// <summary>
    /// The integer timesteps of the multistep solvers (diffusers' DPM-Solver and UniPC <c>set_timesteps</c>), by
    /// <c>timestep_spacing</c>: <c>linspace</c> rounds linspace(0, T − 1, n + 1) and drops the final 0; <c>leading</c>
    /// uses i·(T div (n + 1)) + <c>steps_offset</c>; <c>trailing</c> arange(N, 0, −N/n) − 1. T is the last usable training
    /// step plus one (N, or fewer when DPM-Solver's <c>lambda_min_clipped</c> cuts the high-noise end).
    /// </summary>
    internal static double[] MultistepTimesteps(SchedulerConfig config, int trainSteps, int last, int n)
    {
        var t = new List<double>(n);
        switch (config.GetString("timestep_spacing", "linspace"))
        {
            case "linspace":
                var lin = SchedulerMath.Linspace(0, last - 1, n + 1);
                for (int i = n; i >= 1; i--) t.Add(Math.Round(lin[i], MidpointRounding.ToEven));
                break;
            case "leading":
                int ratio = last / (n + 1);
                for (int i = n; i >= 1; i--) t.Add((double)i * ratio + config.GetInt("steps_offset", 0));
                break;
            default: // trailing (RequireMultistepSpacing refuses any other value at construction)
                double r = (double)trainSteps / n;
                // numpy's float arange can yield one value too many (≈ 0 → timestep −1, e.g. n = 38); stop at n
                // steps and at timestep 0, which is what the spacing means.
                for (int i = 0; i < n && Math.Round(last - i * r, MidpointRounding.ToEven) >= 1; i++)
                    t.Add(Math.Round(last - i * r, MidpointRounding.ToEven) - 1);
                break;
        }
        return [.. t];
    }

    /// <summary>
    /// The whole schedule of a multistep solver on integer timesteps (DPM-Solver, UniPC, DEIS): <see cref="MultistepTimesteps"/>
    /// and their σ, or with <paramref name="karras"/> Karras σ over the whole training range mapped back to timesteps
    /// (rounded when <paramref name="roundKarras"/>); the timesteps are then truncated to integers (<c>.astype(int64)</c>)
    /// and <paramref name="finalSigma"/> ends the σ list.
    /// </summary>
    internal static (float[] Timesteps, double[] Sigmas) MultistepSchedule(SchedulerConfig config, int trainSteps, int last, int n,
        double[] trainSigmas, bool karras, bool roundKarras, double finalSigma)
    {
        double[] timesteps = MultistepTimesteps(config, trainSteps, last, n);
        double[] sigmas;
        if (karras)
        {
            sigmas = SchedulerMath.KarrasSigmas(trainSigmas[0], trainSigmas[^1], n);
            timesteps = TimestepsFor(sigmas, trainSigmas, roundKarras);
        }
        else
        {
            sigmas = SigmasAt(timesteps, trainSigmas);
        }
        for (int i = 0; i < timesteps.Length; i++) timesteps[i] = Math.Truncate(timesteps[i]);
        return (ToFloat(timesteps), WithFinal(sigmas, finalSigma));
    }

    /// <summary>σ at each (fractional) timestep: <c>np.interp(t, arange(N), σ_train)</c>, linear in σ.</summary>
    internal static double[] SigmasAt(double[] timesteps, double[] trainSigmas) =>
        Array.ConvertAll(timesteps, t => SchedulerMath.SigmaAtTimestep(t, trainSigmas));

    /// <summary>
    /// Karras et al. 2022 eq. 5 with ρ = 7 between the ends of <paramref name="sigmas"/> (decreasing), or the
    /// configured ends where given: diffusers <c>_convert_to_karras</c>, k-diffusion <c>get_sigmas_karras</c>.
    /// </summary>
    internal static double[] Karras(double[] sigmas, int steps, double? sigmaMin = null, double? sigmaMax = null) =>
        SchedulerMath.KarrasSigmas(sigmaMin ?? sigmas[^1], sigmaMax ?? sigmas[0], steps);

    /// <summary>
    /// The fractional training timestep of each σ (log-σ interpolation, diffusers <c>_sigma_to_t</c>),
    /// rounded half-to-even when <paramref name="round"/> (KDPM2 and DPM-Solver do for Karras σ).
    /// </summary>
    internal static double[] TimestepsFor(double[] sigmas, double[] trainSigmas, bool round)
    {
        var t = new double[sigmas.Length];
        for (int i = 0; i < t.Length; i++)
        {
            double v = SchedulerMath.SigmaToTimestep(sigmas[i], trainSigmas);
            t[i] = round ? Math.Round(v, MidpointRounding.ToEven) : (float)v;
        }
        return t;
    }

    /// <summary>Appends the final noise level (0, or σ_min for <c>final_sigmas_type: sigma_min</c>).</summary>
    internal static double[] WithFinal(double[] sigmas, double final)
    {
        var result = new double[sigmas.Length + 1];
        sigmas.CopyTo(result, 0);
        result[^1] = final;
        return result;
    }

    /// <summary>Converts timesteps to the float array the base class keeps.</summary>
    internal static float[] ToFloat(double[] timesteps) => Array.ConvertAll(timesteps, t => (float)t);

    /// <summary>
    /// diffusers' <c>init_noise_sigma</c> for the σ schedulers: σ_max for <c>linspace</c> and <c>trailing</c>
    /// spacing, √(σ_max² + 1) for <c>leading</c> (whose first timestep is below N − 1, so the extra 1 accounts
    /// for the signal's own unit variance; see the diffusers property of that name).
    /// </summary>
    internal static float InitNoiseSigma(double sigmaMax, SchedulerConfig config)
    {
        string spacing = config.GetString("timestep_spacing", "linspace");
        return (float)(spacing is "linspace" or "trailing" ? sigmaMax : Math.Sqrt(sigmaMax * sigmaMax + 1));
    }

    /// <summary>
    /// The UNet input c_in·x with c_in = 1/√(σ² + 1) (Karras et al. 2022, Table 1, VP column; diffusers
    /// <c>scale_model_input</c>).
    /// </summary>
    internal static void ScaleInput(ReadOnlySpan<float> sample, Span<float> destination, double sigma, string scheduler)
    {
        if (sample.Length != destination.Length)
            throw new ArgumentException($"{scheduler}: the destination has {destination.Length} values but the sample has {sample.Length}.", nameof(destination));
        TensorPrimitives.Multiply(sample, (float)(1 / Math.Sqrt(sigma * sigma + 1)), destination);
    }

    /// <summary>x = x₀ + σ·ε (diffusers <c>add_noise</c> of the σ schedulers).</summary>
    internal static void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double sigma, Span<float> destination, string scheduler)
    {
        CheckNoiseLengths(original, noise, destination, scheduler);
        TensorPrimitives.MultiplyAdd(noise, (float)sigma, original, destination);
    }

    /// <summary>Throws unless the three spans of an <c>AddNoise</c> call have one length.</summary>
    internal static void CheckNoiseLengths(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, Span<float> destination, string scheduler)
    {
        if (noise.Length != original.Length || destination.Length != original.Length)
            throw new ArgumentException($"{scheduler}: original ({original.Length}), noise ({noise.Length}) and destination ({destination.Length}) must have the same length.", nameof(noise));
    }

    /// <summary>Throws unless <paramref name="callIndex"/> names a model call of the current schedule.</summary>
    internal static void CheckCallIndex(int callIndex, int callCount, string scheduler)
    {
        if (callCount == 0)
            throw new InvalidOperationException($"{scheduler}: call SetTimesteps before AddNoise.");
        if (callIndex < 0 || callIndex >= callCount)
            throw new ArgumentOutOfRangeException(nameof(callIndex), callIndex, $"{scheduler}: the call index must be between 0 and {callCount - 1}.");
    }

    /// <summary>
    /// The denoiser D = c_skip·x + c_out·F (Karras et al. 2022, Table 1 and eq. 7) from the model output F,
    /// as diffusers' <c>pred_original_sample</c>:
    /// ε: D = x − σ·ε;  v (Salimans and Ho 2022): D = x/(σ² + 1) − σ/√(σ² + 1)·v;  sample: D = F.
    /// </summary>
    internal static (double Skip, double Out) DenoiserCoefficients(PredictionType prediction, double sigma) => prediction switch
    {
        PredictionType.Epsilon => (1, -sigma),
        PredictionType.VPrediction => (1 / (sigma * sigma + 1), -sigma / Math.Sqrt(sigma * sigma + 1)),
        _ => (0, 1),
    };

    /// <summary>
    /// k-diffusion's <c>to_d</c>: d = (x − D)/σ written as d = a·x + b·F with
    /// a = (1 − c_skip)/σ, b = −c_out/σ; so ε: d = ε;  v: d = σ/(σ² + 1)·x + v/√(σ² + 1);  sample: d = (x − F)/σ.
    /// </summary>
    internal static (double A, double B) DerivativeCoefficients(PredictionType prediction, double sigma)
    {
        if (prediction == PredictionType.Epsilon) return (0, 1);
        var (skip, output) = DenoiserCoefficients(prediction, sigma);
        return ((1 - skip) / sigma, -output / sigma);
    }

    /// <summary>
    /// Writes d = (x − D)/σ into <paramref name="destination"/>. With <paramref name="clip"/> &gt; 0 the
    /// denoised D is first clamped to [−clip, clip] (Heun's <c>clip_sample</c>).
    /// </summary>
    internal static void Derivative(ReadOnlySpan<float> modelOutput, ReadOnlySpan<float> sample, PredictionType prediction,
        double sigma, Span<float> destination, double clip = 0)
    {
        if (clip > 0)
        {
            // D = c_skip·x + c_out·F, clamped; d = (x − D)/σ.
            var (skip, output) = DenoiserCoefficients(prediction, sigma);
            TensorPrimitives.Multiply(modelOutput, (float)output, destination);
            TensorPrimitives.MultiplyAdd(sample, (float)skip, destination, destination);
            TensorPrimitives.Clamp(destination, (float)-clip, (float)clip, destination);
            TensorPrimitives.Subtract(sample, destination, destination);
            TensorPrimitives.Multiply(destination, (float)(1 / sigma), destination);
            return;
        }
        var (a, b) = DerivativeCoefficients(prediction, sigma);
        if (b == 1) modelOutput.CopyTo(destination);
        else TensorPrimitives.Multiply(modelOutput, (float)b, destination);
        if (a != 0) TensorPrimitives.MultiplyAdd(sample, (float)a, destination, destination);
    }

    /// <summary>
    /// One Euler step in place, x ← x + (σ_to − σ)·d with d = a·x + b·F, i.e.
    /// x ← (1 + a·Δσ)·x + b·Δσ·F; no scratch memory (k-diffusion <c>sample_euler</c>, Karras et al. 2022 Alg. 2 with γ = 0).
    /// </summary>
    internal static void EulerStep(ReadOnlySpan<float> modelOutput, Span<float> sample, PredictionType prediction, double sigma, double sigmaTo)
    {
        var (a, b) = DerivativeCoefficients(prediction, sigma);
        double dt = sigmaTo - sigma;
        // One pass: x·(1 + a·Δσ) + F·(b·Δσ); for ε (a = 0) the factor is exactly 1.
        LatentKernels.Update(modelOutput, sample, default, 1f, 0f, a != 0 ? (float)(1 + a * dt) : 1f, (float)(b * dt), 0);
    }

    /// <summary>The largest value of a σ table (σ_max).</summary>
    internal static double Max(double[] sigmas)
    {
        double max = 0;
        foreach (var s in sigmas) max = Math.Max(max, s);
        return max;
    }
}

using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// Latent Consistency Model multistep sampling: Luo et al. 2023, "Latent Consistency Models" (arXiv:2310.04378,
/// Algorithm 3), with the boundary conditions of Song et al. 2023, "Consistency Models" (arXiv:2303.01469, eq. 7),
/// as diffusers' <c>LCMScheduler</c> (<c>schedulers/scheduling_lcm.py</c>). Each step maps x_t to a clean
/// estimate, then re-noises it to the next timestep with fresh noise; typical use is 2 to 8 steps.
/// </summary>
/// <remarks>
/// Class defaults, as in diffusers (note the β schedule differs from DDIM's): β 0.00085 → 0.012
/// <c>scaled_linear</c>, <c>original_inference_steps</c> 50, <c>timestep_scaling</c> 10, <c>clip_sample</c> false,
/// <c>clip_sample_range</c> 1, <c>set_alpha_to_one</c> true, <c>prediction_type</c> <c>epsilon</c>.
/// Dynamic thresholding is not supported; a configuration that enables it is rejected.
/// </remarks>
internal sealed class LcmScheduler : DiffusionScheduler
{
    /// <summary>σ_data of the consistency-model parameterisation (diffusers' <c>sigma_data</c>).</summary>
    private const double SigmaData = 0.5;

    private readonly double _clipRange;
    private int[] _t = [];
    private float[]? _noise;

    /// <summary>Builds the scheduler from a diffusers configuration; missing keys take LCMScheduler's defaults.</summary>
    /// <exception cref="InvalidDataException">A value is malformed or unknown.</exception>
    /// <exception cref="NotSupportedException">The configuration enables <c>thresholding</c>.</exception>
    public LcmScheduler(SchedulerConfig config) : base(WithClassBetaDefaults(config))
    {
        AlphaBarSampling.RejectThresholding(config, Name);
        _clipRange = AlphaBarSampling.ReadClipRange(config, clipDefault: false);
        OriginalInferenceSteps = config.GetInt("original_inference_steps", 50);
        if (OriginalInferenceSteps < 1 || OriginalInferenceSteps > NumTrainTimesteps)
            throw new InvalidDataException($"Scheduler configuration '{config.Source ?? "(text)"}': original_inference_steps is {OriginalInferenceSteps}, expected 1 to num_train_timesteps ({NumTrainTimesteps}).");
        TimestepScaling = config.GetDouble("timestep_scaling", 10.0);
        if (!(TimestepScaling > 0))
            throw new InvalidDataException($"Scheduler configuration '{config.Source ?? "(text)"}': timestep_scaling is {TimestepScaling}, expected a positive number.");
        FinalAlphaCumprod = config.GetBool("set_alpha_to_one", true) ? 1.0 : AlphasCumprod[0];
    }

    /// <inheritdoc />
    public override string Name => "LCMScheduler";

    /// <summary>Always true: every step but the last re-noises its clean estimate, so a noise source is required.</summary>
    public override bool IsStochastic => true;

    /// <summary>Always 1: LCM starts from x_T ~ N(0, I).</summary>
    public override float InitNoiseSigma => 1f;

    /// <summary>The length of the distillation schedule that inference timesteps are drawn from (<c>original_inference_steps</c>).</summary>
    public int OriginalInferenceSteps { get; }

    /// <summary>The factor applied to t in the boundary conditions (<c>timestep_scaling</c>).</summary>
    public double TimestepScaling { get; }

    /// <summary>ᾱ after the final step: 1 when <c>set_alpha_to_one</c> (default true), else ᾱ_0.</summary>
    public double FinalAlphaCumprod { get; }

    /// <summary>
    /// The consistency-model boundary conditions at timestep t (Song et al. 2023, eq. 7; diffusers'
    /// <c>get_scalings_for_boundary_condition_discrete</c>), with τ = t·<see cref="TimestepScaling"/> and σ_d = 0.5:
    /// c_skip = σ_d²/(τ² + σ_d²), c_out = τ/√(τ² + σ_d²), so that f(x, t) = c_skip·x + c_out·x̂₀ → x as t → 0.
    /// </summary>
    public (double CSkip, double COut) BoundaryScalings(int timestep)
    {
        double tau = timestep * TimestepScaling, d2 = tau * tau + SigmaData * SigmaData;
        return (SigmaData * SigmaData / d2, tau / Math.Sqrt(d2));
    }

    /// <inheritdoc />
    /// <exception cref="ArgumentOutOfRangeException">More steps than <see cref="OriginalInferenceSteps"/>.</exception>
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        if (inferenceSteps > OriginalInferenceSteps)
            throw new ArgumentOutOfRangeException(nameof(inferenceSteps), inferenceSteps,
                $"{Name}: the number of inference steps cannot exceed original_inference_steps ({OriginalInferenceSteps}); the schedule is a subset of that one.");
        // LCM Alg. 3 / diffusers set_timesteps: the distillation schedule, k = N div n_orig,
        // t_j = j·k − 1 for j = 1 … n_orig, taken in decreasing order, of which n evenly spaced indices
        // ⌊i·n_orig/n⌋ (numpy linspace(0, n_orig, n, endpoint=False), floored) are used.
        int k = NumTrainTimesteps / OriginalInferenceSteps;
        double stride = (double)OriginalInferenceSteps / inferenceSteps;
        _t = new int[inferenceSteps];
        for (int i = 0; i < inferenceSteps; i++)
        {
            int j = (int)Math.Floor(i * stride);
            _t[i] = (OriginalInferenceSteps - j) * k - 1;
        }
        return AlphaBarSampling.ToFloats(_t);
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException"><see cref="DiffusionScheduler.SetTimesteps"/> was not called, or all calls are done.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="noise"/> is null.</exception>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        var source = RequireNoise(noise);

        int i = StepIndex;
        bool last = i == CallCount - 1;
        int t = _t[i], prev = last ? t : _t[i + 1];
        double a = AlphasCumprod[t], ap = prev >= 0 ? AlphasCumprod[prev] : FinalAlphaCumprod;
        var (cSkip, cOut) = BoundaryScalings(t);

        if (last)
        {
            // The consistency function: denoised = c_out·x̂₀ + c_skip·x_t (no noise after the last step).
            AlphaBarSampling.Combine(PredictionType, a, modelOutput, sample, _clipRange, cOut, 0, cSkip);
        }
        else
        {
            // LCM Alg. 3: x_prev = √ᾱ_prev·(c_out·x̂₀ + c_skip·x_t) + √(1 − ᾱ_prev)·z, z ~ N(0, I).
            double sap = Math.Sqrt(ap);
            AlphaBarSampling.Combine(PredictionType, a, modelOutput, sample, _clipRange, sap * cOut, 0, sap * cSkip);
            var z = Scratch(ref _noise, sample.Length);
            source.Fill(z);
            TensorPrimitives.MultiplyAdd(z, (float)Math.Sqrt(1 - ap), sample, sample);
        }
        StepIndex++;
    }

    /// <inheritdoc />
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination) =>
        AlphaBarSampling.AddNoise(this, original, noise, callIndex, destination);

    /// <summary>
    /// The base class builds β with DDIM's defaults (0.0001 → 0.02, linear) for keys the file lacks, but
    /// LCMScheduler's own defaults are 0.00085 → 0.012, scaled_linear: fill those keys in first.
    /// </summary>
    private static SchedulerConfig WithClassBetaDefaults(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Contains("trained_betas")) return config;
        var missing = new List<(string Key, object? Value)>(3);
        if (!config.Contains("beta_start")) missing.Add(("beta_start", 0.00085));
        if (!config.Contains("beta_end")) missing.Add(("beta_end", 0.012));
        if (!config.Contains("beta_schedule")) missing.Add(("beta_schedule", "scaled_linear"));
        return missing.Count == 0 ? config : config.With([.. missing]);
    }
}

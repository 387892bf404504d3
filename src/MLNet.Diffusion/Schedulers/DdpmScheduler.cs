using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// DDPM ancestral sampling: Ho, Jain and Abbeel 2020, "Denoising Diffusion Probabilistic Models"
/// (arXiv:2006.11239), as diffusers' <c>DDPMScheduler</c> (<c>schedulers/scheduling_ddpm.py</c>). Each step
/// samples the posterior q(x_prev | x_t, x̂₀) with x̂₀ predicted by the model; it is stochastic.
/// </summary>
/// <remarks>
/// Class defaults, as in diffusers: β 0.0001 → 0.02 <c>linear</c>, <c>variance_type</c> <c>fixed_small</c>,
/// <c>clip_sample</c> true, <c>clip_sample_range</c> 1, <c>timestep_spacing</c> <c>leading</c>,
/// <c>steps_offset</c> 0, <c>prediction_type</c> <c>epsilon</c>. With fewer inference steps than training steps,
/// the step goes from t to t − N div n and uses the effective β_t = 1 − ᾱ_t/ᾱ_prev (ᾱ_prev = 1 below t = 0).
/// Supported variance types: <c>fixed_small</c>, <c>fixed_small_log</c> (the same σ, computed through its log) and
/// <c>fixed_large</c>. <c>fixed_large_log</c> (which diffusers turns into √(log β), NaN), <c>learned</c> and
/// <c>learned_range</c> (which need the model's extra variance channels) and dynamic thresholding are rejected.
/// </remarks>
internal sealed class DdpmScheduler : DiffusionScheduler
{
    private readonly double _clipRange;
    private readonly string _spacing;
    private readonly int _stepsOffset;
    private readonly bool _largeVariance;
    private int[] _t = [];
    private float[]? _noise;

    /// <summary>Builds the scheduler from a diffusers configuration; missing keys take DDPMScheduler's defaults.</summary>
    /// <exception cref="InvalidDataException">A value is malformed or unknown.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for thresholding or a variance type that is not offered.</exception>
    public DdpmScheduler(SchedulerConfig config) : base(config)
    {
        AlphaBarSampling.RejectThresholding(config, Name);
        _clipRange = AlphaBarSampling.ReadClipRange(config, clipDefault: true);
        _spacing = AlphaBarSampling.ReadSpacing(config, "leading");
        _stepsOffset = config.GetInt("steps_offset", 0);
        VarianceType = config.GetString("variance_type", "fixed_small");
        _largeVariance = VarianceType switch
        {
            "fixed_small" or "fixed_small_log" => false,
            "fixed_large" => true,
            "fixed_large_log" or "learned" or "learned_range" => throw new NotSupportedException(
                $"{Name}: configuration '{config.Source ?? "(text)"}' sets variance_type '{VarianceType}', which is not supported; use fixed_small, fixed_small_log or fixed_large."),
            _ => throw new InvalidDataException(
                $"Scheduler configuration '{config.Source ?? "(text)"}': variance_type '{VarianceType}' is unknown; expected fixed_small, fixed_small_log or fixed_large."),
        };
    }

    /// <inheritdoc />
    public override string Name => "DDPMScheduler";

    /// <summary>Always true: every step but the one at t = 0 adds posterior noise, so a noise source is required.</summary>
    public override bool IsStochastic => true;

    /// <summary>Always 1: DDPM starts from x_T ~ N(0, I).</summary>
    public override float InitNoiseSigma => 1f;

    /// <summary>The configured <c>variance_type</c>.</summary>
    public string VarianceType { get; }

    /// <inheritdoc />
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        _t = AlphaBarSampling.IntegerTimesteps(this, _spacing, inferenceSteps, _stepsOffset);
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

        int t = _t[StepIndex];
        int prev = t - NumTrainTimesteps / InferenceSteps;
        double a = AlphasCumprod[t], ap = prev >= 0 ? AlphasCumprod[prev] : 1.0;
        // Effective one-step α_t = ᾱ_t/ᾱ_prev, β_t = 1 − α_t over the skipped interval.
        double alphaT = a / ap, betaT = 1 - alphaT;

        // Ho et al. eq. 7, posterior mean μ̃ = √ᾱ_prev·β_t/(1 − ᾱ_t)·x̂₀ + √α_t·(1 − ᾱ_prev)/(1 − ᾱ_t)·x_t
        AlphaBarSampling.Combine(PredictionType, a, modelOutput, sample, _clipRange,
            Math.Sqrt(ap) * betaT / (1 - a), 0, Math.Sqrt(alphaT) * (1 - ap) / (1 - a));

        if (t > 0)
        {
            // fixed_small: σ² = β̃_t = (1 − ᾱ_prev)/(1 − ᾱ_t)·β_t (eq. 7), floored at 1e-20 as in diffusers;
            // fixed_small_log is exp(½·log σ²), the same σ. fixed_large: σ² = β_t (Ho et al. §3.2).
            double variance = _largeVariance ? betaT : Math.Max((1 - ap) / (1 - a) * betaT, 1e-20);
            var z = Scratch(ref _noise, sample.Length);
            source.Fill(z);
            TensorPrimitives.MultiplyAdd(z, (float)Math.Sqrt(variance), sample, sample);
        }
        StepIndex++;
    }

    /// <inheritdoc />
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination) =>
        AlphaBarSampling.AddNoise(this, original, noise, callIndex, destination);
}

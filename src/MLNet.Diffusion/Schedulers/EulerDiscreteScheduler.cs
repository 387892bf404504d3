using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>EulerDiscreteScheduler</c>: Euler steps of the probability-flow ODE dx/dσ = (x − D(x; σ))/σ,
/// Algorithm 2 of Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative Models")
/// with γ = 0 (no churn), as k-diffusion's <c>sample_euler</c>.
/// Source: diffusers <c>src/diffusers/schedulers/scheduling_euler_discrete.py</c>; k-diffusion <c>k_diffusion/sampling.py</c>.
/// </summary>
/// <remarks>
/// Configuration keys (class defaults as in diffusers): <c>timestep_spacing</c> (<c>linspace</c>, fractional
/// timesteps), <c>steps_offset</c>, <c>use_karras_sigmas</c>, <c>sigma_min</c>/<c>sigma_max</c> (Karras ends),
/// <c>final_sigmas_type</c> (<c>zero</c> or <c>sigma_min</c>), <c>rescale_betas_zero_snr</c>, <c>prediction_type</c>
/// (<c>epsilon</c>, <c>v_prediction</c>, <c>sample</c>). Not supported (throw <see cref="NotSupportedException"/>):
/// <c>use_exponential_sigmas</c>, <c>use_beta_sigmas</c>, <c>interpolation_type: log_linear</c>, and
/// <c>timestep_type: continuous</c> with v-prediction. The per-call churn arguments of diffusers' <c>step</c>
/// (s_churn, s_tmin, s_tmax, s_noise) are fixed at their defaults, so the scheduler is deterministic.
/// </remarks>
internal sealed class EulerDiscreteScheduler : DiffusionScheduler
{
    private readonly double[] _trainSigmas;
    private readonly bool _karras;
    private readonly bool _finalSigmaMin;
    private readonly double? _sigmaMin, _sigmaMax;
    private double[] _sigmas = [];

    /// <summary>Builds the scheduler from a diffusers scheduler configuration.</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for an option this implementation lacks.</exception>
    public EulerDiscreteScheduler(SchedulerConfig config) : base(config)
    {
        SigmaSchedule.FloorZeroTerminalSnr(AlphasCumprod, config);
        _trainSigmas = SchedulerMath.Sigmas(AlphasCumprod);
        SigmaSchedule.RejectFlags(config, Name, "use_exponential_sigmas", "use_beta_sigmas");
        SigmaSchedule.RequireOneOf(config, Name, "interpolation_type", "linear", "linear");
        string timestepType = SigmaSchedule.RequireOneOf(config, Name, "timestep_type", "discrete", "discrete", "continuous");
        if (timestepType == "continuous" && PredictionType == PredictionType.VPrediction)
            throw new NotSupportedException($"{Name}: timestep_type 'continuous' with v_prediction (EDM timesteps 0.25·log σ) is not supported.");
        _karras = config.GetBool("use_karras_sigmas", false);
        _finalSigmaMin = SigmaSchedule.RequireOneOf(config, Name, "final_sigmas_type", "zero", "zero", "sigma_min") == "sigma_min";
        _sigmaMin = config.Contains("sigma_min") ? config.GetDouble("sigma_min", 0) : null;
        _sigmaMax = config.Contains("sigma_max") ? config.GetDouble("sigma_max", 0) : null;
        _ = SigmaSchedule.SpacedTimesteps(config, NumTrainTimesteps, 1); // validates timestep_spacing now rather than at SetTimesteps
    }

    /// <inheritdoc />
    public override string Name => "EulerDiscreteScheduler";

    /// <summary>
    /// σ_max for <c>linspace</c>/<c>trailing</c> spacing, √(σ_max² + 1) for <c>leading</c>; before
    /// <see cref="DiffusionScheduler.SetTimesteps"/>, σ_max of the training schedule.
    /// </summary>
    public override float InitNoiseSigma =>
        SigmaSchedule.InitNoiseSigma(_sigmas.Length == 0 ? _trainSigmas[^1] : SigmaSchedule.Max(_sigmas), Config);

    /// <summary>The noise level σ of each model call followed by the final one (0, or σ_min), as diffusers' <c>sigmas</c>.</summary>
    public ReadOnlySpan<double> Sigmas => _sigmas;

    /// <inheritdoc />
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        var (timesteps, sigmas) = SigmaSchedule.Spaced(Config, NumTrainTimesteps, inferenceSteps, _trainSigmas, _karras, sigmaMin: _sigmaMin, sigmaMax: _sigmaMax);
        _sigmas = SigmaSchedule.WithFinal(sigmas, _finalSigmaMin ? _trainSigmas[0] : 0);
        return SigmaSchedule.ToFloat(timesteps);
    }

    /// <summary>Writes x/√(σ² + 1) for the current call's σ.</summary>
    public override void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination)
    {
        EnsureStepping();
        SigmaSchedule.ScaleInput(sample, destination, _sigmas[StepIndex], Name);
    }

    /// <summary>x ← x + (σ_next − σ)·d, d = (x − D)/σ (Karras et al. 2022, Alg. 2; k-diffusion <c>sample_euler</c>).</summary>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        SigmaSchedule.EulerStep(modelOutput, sample, PredictionType, _sigmas[StepIndex], _sigmas[StepIndex + 1]);
        StepIndex++;
    }

    /// <summary>x₀ + σ·ε with σ of model call <paramref name="callIndex"/>.</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        SigmaSchedule.AddNoise(original, noise, _sigmas[callIndex], destination, Name);
    }
}

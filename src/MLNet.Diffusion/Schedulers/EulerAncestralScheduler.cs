using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>EulerAncestralDiscreteScheduler</c>: ancestral sampling with Euler steps (k-diffusion
/// <c>sample_euler_ancestral</c>). Each step goes deterministically down to σ_down and adds fresh noise of
/// size σ_up, with σ_down² + σ_up² = σ_next², so the marginal noise level is σ_next; σ_up² = σ_next²(σ² − σ_next²)/σ²
/// is the variance of x(σ_next) given x₀ and x(σ) for x(σ) = x₀ + σ·ε, the DDPM posterior (Ho et al. 2020) in σ terms.
/// Source: diffusers <c>src/diffusers/schedulers/scheduling_euler_ancestral_discrete.py</c>; k-diffusion <c>k_diffusion/sampling.py</c>.
/// </summary>
/// <remarks>
/// Configuration keys: <c>timestep_spacing</c> (<c>linspace</c>), <c>steps_offset</c>, <c>rescale_betas_zero_snr</c>,
/// <c>prediction_type</c> (<c>epsilon</c> or <c>v_prediction</c>; diffusers does not implement <c>sample</c> for this
/// class, so neither does this one). diffusers' class has no Karras σ option.
/// </remarks>
internal sealed class EulerAncestralScheduler : DiffusionScheduler
{
    private readonly double[] _trainSigmas;
    private double[] _sigmas = [];
    private float[]? _noise;

    /// <summary>Builds the scheduler from a diffusers scheduler configuration.</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    /// <exception cref="NotSupportedException"><c>prediction_type</c> is <c>sample</c>.</exception>
    public EulerAncestralScheduler(SchedulerConfig config) : base(config)
    {
        if (PredictionType == PredictionType.Sample)
            throw new NotSupportedException($"{Name}: prediction_type 'sample' is not implemented (diffusers raises NotImplementedError for it too).");
        SigmaSchedule.FloorZeroTerminalSnr(AlphasCumprod, config);
        _trainSigmas = SchedulerMath.Sigmas(AlphasCumprod);
        _ = SigmaSchedule.SpacedTimesteps(config, NumTrainTimesteps, 1);
    }

    /// <inheritdoc />
    public override string Name => "EulerAncestralDiscreteScheduler";

    /// <inheritdoc />
    public override bool IsStochastic => true;

    /// <summary>σ_max for <c>linspace</c>/<c>trailing</c> spacing, √(σ_max² + 1) for <c>leading</c>.</summary>
    public override float InitNoiseSigma =>
        SigmaSchedule.InitNoiseSigma(_sigmas.Length == 0 ? _trainSigmas[^1] : SigmaSchedule.Max(_sigmas), Config);

    /// <summary>The noise level σ of each model call followed by the final 0, as diffusers' <c>sigmas</c>.</summary>
    public ReadOnlySpan<double> Sigmas => _sigmas;

    /// <inheritdoc />
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        var (timesteps, sigmas) = SigmaSchedule.Spaced(Config, NumTrainTimesteps, inferenceSteps, _trainSigmas, karras: false);
        _sigmas = SigmaSchedule.WithFinal(sigmas, 0);
        return SigmaSchedule.ToFloat(timesteps);
    }

    /// <summary>Writes x/√(σ² + 1) for the current call's σ.</summary>
    public override void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination)
    {
        EnsureStepping();
        SigmaSchedule.ScaleInput(sample, destination, _sigmas[StepIndex], Name);
    }

    /// <summary>
    /// k-diffusion <c>get_ancestral_step</c> (η = 1): σ_up = √(σ_next²(σ² − σ_next²)/σ²), σ_down = √(σ_next² − σ_up²);
    /// then x ← x + (σ_down − σ)·d + σ_up·z with d = (x − D)/σ and z ~ N(0, I) from <paramref name="noise"/>.
    /// Noise is drawn at every step, the last included (where σ_up = 0), as diffusers does.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="noise"/> is null.</exception>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        var source = RequireNoise(noise);
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        double sigma = _sigmas[StepIndex], sigmaTo = _sigmas[StepIndex + 1];
        double sigmaUp = Math.Sqrt(sigmaTo * sigmaTo * (sigma * sigma - sigmaTo * sigmaTo) / (sigma * sigma));
        double sigmaDown = Math.Sqrt(Math.Max(sigmaTo * sigmaTo - sigmaUp * sigmaUp, 0));
        var z = Scratch(ref _noise, sample.Length);
        source.Fill(z);
        SigmaSchedule.EulerStep(modelOutput, sample, PredictionType, sigma, sigmaDown);
        TensorPrimitives.MultiplyAdd(z, (float)sigmaUp, sample, sample);
        StepIndex++;
    }

    /// <summary>x₀ + σ·ε with σ of model call <paramref name="callIndex"/>.</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        SigmaSchedule.AddNoise(original, noise, _sigmas[callIndex], destination, Name);
    }
}

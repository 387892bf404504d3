using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>HeunDiscreteScheduler</c>: Heun's second-order method (explicit trapezoid) for the
/// probability-flow ODE, Algorithm 1 of Karras et al. 2022 ("Elucidating the Design Space…"), as k-diffusion's
/// <c>sample_heun</c> with γ = 0. Each step from σ_i to σ_{i+1} calls the model twice, at σ_i and at the
/// Euler prediction for σ_{i+1}; the last step, to σ = 0, is a plain Euler step. With n inference steps the
/// model is called 2n − 1 times, and <see cref="DiffusionScheduler.Timesteps"/> lists every call as diffusers
/// does: t₀, t₁, t₁, t₂, t₂, …, t_{n−1}, t_{n−1}.
/// Source: diffusers <c>src/diffusers/schedulers/scheduling_heun_discrete.py</c>; k-diffusion <c>k_diffusion/sampling.py</c>.
/// </summary>
/// <remarks>
/// Class defaults differ from the other schedulers: <c>beta_start</c> 0.00085 and <c>beta_end</c> 0.012 (with
/// <c>beta_schedule</c> <c>linear</c>). Keys: <c>timestep_spacing</c> (<c>linspace</c>), <c>steps_offset</c>,
/// <c>use_karras_sigmas</c>, <c>clip_sample</c> (false) with <c>clip_sample_range</c> (1), <c>prediction_type</c>
/// (<c>epsilon</c>, <c>v_prediction</c>, <c>sample</c>). <c>use_exponential_sigmas</c> and <c>use_beta_sigmas</c>
/// throw <see cref="NotSupportedException"/>.
/// </remarks>
internal sealed class HeunDiscreteScheduler : DiffusionScheduler
{
    private readonly double[] _trainSigmas;
    private readonly bool _karras;
    private readonly double _clip;
    private double[] _sigmas = [];
    private float[]? _firstSample, _firstDerivative, _secondDerivative;

    /// <summary>Builds the scheduler from a diffusers scheduler configuration.</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for an option this implementation lacks.</exception>
    public HeunDiscreteScheduler(SchedulerConfig config) : base(SigmaSchedule.WithClassDefaults(config, 0.00085, 0.012, hasZeroSnrKey: false))
    {
        _trainSigmas = SchedulerMath.Sigmas(AlphasCumprod);
        SigmaSchedule.RejectFlags(Config, Name, "use_exponential_sigmas", "use_beta_sigmas");
        _karras = Config.GetBool("use_karras_sigmas", false);
        if (Config.GetBool("clip_sample", false))
        {
            _clip = Config.GetDouble("clip_sample_range", 1.0);
            if (!(_clip > 0)) throw new InvalidDataException($"{Name}: clip_sample_range must be positive, found {_clip} (scheduler configuration '{Config.Source ?? "(text)"}').");
        }
        _ = SigmaSchedule.SpacedTimesteps(Config, NumTrainTimesteps, 1);
    }

    /// <inheritdoc />
    public override string Name => "HeunDiscreteScheduler";

    /// <summary>σ_max for <c>linspace</c>/<c>trailing</c> spacing, √(σ_max² + 1) for <c>leading</c>.</summary>
    public override float InitNoiseSigma =>
        SigmaSchedule.InitNoiseSigma(_sigmas.Length == 0 ? _trainSigmas[^1] : SigmaSchedule.Max(_sigmas), Config);

    /// <summary>
    /// The noise level at each step boundary, σ₀ … σ_{n−1} and the final 0 (n + 1 values). diffusers stores
    /// the same values interleaved per call (σ₀, σ₁, σ₁, σ₂, σ₂, …, 0); call c uses σ_{⌈c/2⌉}.
    /// </summary>
    public ReadOnlySpan<double> Sigmas => _sigmas;

    /// <inheritdoc />
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        var (timesteps, sigmas) = SigmaSchedule.Spaced(Config, NumTrainTimesteps, inferenceSteps, _trainSigmas, _karras);
        _sigmas = SigmaSchedule.WithFinal(sigmas, 0);
        // diffusers: cat([t[:1], t[1:].repeat_interleave(2)]).
        var calls = new float[2 * inferenceSteps - 1];
        calls[0] = (float)timesteps[0];
        for (int i = 1; i < inferenceSteps; i++) calls[2 * i - 1] = calls[2 * i] = (float)timesteps[i];
        return calls;
    }

    /// <summary>Step i begins at call 2i (calls t₀ | t₁, t₁ | t₂, t₂ …: a predictor then a corrector), diffusers' <c>t_start · order</c>.</summary>
    protected override int FirstCallOfStepCore(int step) => 2 * step;

    /// <summary>2: a second-order scheduler (diffusers' <c>order = 2</c>).</summary>
    internal override int Order => 2;

    /// <summary>Starts at call <paramref name="callIndex"/>, which must begin a step (be even), as diffusers' image-to-image does (t_start·order).</summary>
    public override void SetBeginIndex(int callIndex)
    {
        if (callIndex % 2 != 0 && callIndex != CallCount)
            throw new ArgumentOutOfRangeException(nameof(callIndex), callIndex, $"{Name}: the begin index must be even (the first call of a step).");
        base.SetBeginIndex(callIndex);
    }

    /// <summary>The σ the model sees at call c: σ_i for the first call of step i, σ_{i+1} for the correction.</summary>
    private double CallSigma(int call) => _sigmas[(call + 1) / 2];

    /// <summary>Writes x/√(σ² + 1) for the current call's σ.</summary>
    public override void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination)
    {
        EnsureStepping();
        SigmaSchedule.ScaleInput(sample, destination, CallSigma(StepIndex), Name);
    }

    /// <summary>
    /// First call of step i: d = (x − D(x; σ_i))/σ_i, x ← x + (σ_{i+1} − σ_i)·d (the prediction; final if σ_{i+1} = 0).
    /// Second call: d′ = (x − D(x; σ_{i+1}))/σ_{i+1}, x ← x_i + (σ_{i+1} − σ_i)·(d + d′)/2 (the trapezoid correction).
    /// </summary>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        int call = StepIndex, i = call / 2;
        double sigma = _sigmas[i], sigmaNext = _sigmas[i + 1], dt = sigmaNext - sigma;
        if (call % 2 == 0)
        {
            // All three buffers at the first step, so later steps allocate nothing.
            var d = Scratch(ref _firstDerivative, sample.Length);
            Scratch(ref _firstSample, sample.Length);
            Scratch(ref _secondDerivative, sample.Length);
            SigmaSchedule.Derivative(modelOutput, sample, PredictionType, sigma, d, _clip);
            if (sigmaNext != 0) sample.CopyTo(_firstSample!);
            TensorPrimitives.MultiplyAdd(d, (float)dt, sample, sample);
        }
        else
        {
            if (_firstSample is null || _firstDerivative is null || _firstSample.Length != sample.Length)
                throw new InvalidOperationException($"{Name}: the correction call of a step came without its first call at this sample size.");
            var d2 = Scratch(ref _secondDerivative, sample.Length);
            SigmaSchedule.Derivative(modelOutput, sample, PredictionType, sigmaNext, d2, _clip);
            TensorPrimitives.Add(_firstDerivative, d2, d2);
            TensorPrimitives.MultiplyAdd(d2, (float)(dt / 2), _firstSample, sample);
        }
        StepIndex++;
    }

    /// <summary>x₀ + σ·ε with the σ of model call <paramref name="callIndex"/> (diffusers' interleaved <c>sigmas[callIndex]</c>).</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        SigmaSchedule.AddNoise(original, noise, CallSigma(callIndex), destination, Name);
    }
}

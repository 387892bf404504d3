using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>KDPM2DiscreteScheduler</c>: k-diffusion's <c>sample_dpm_2</c>, a midpoint (second-order
/// Runge–Kutta) method for the probability-flow ODE inspired by DPM-Solver-2 (Lu et al. 2022) and Karras et al.
/// 2022 Alg. 2. Each step from σ_i to σ_{i+1} takes an Euler half-step to the log-σ midpoint
/// σ_mid = exp((log σ_i + log σ_{i+1})/2) = √(σ_i·σ_{i+1}), calls the model there, and uses that derivative for the
/// whole step. The last step, to σ = 0, has no midpoint (σ_mid = 0) and is a plain Euler step; so n inference
/// steps make 2n − 1 model calls, listed in <see cref="DiffusionScheduler.Timesteps"/> as diffusers does:
/// t₀, τ₁, t₁, τ₂, t₂, …, τ_{n−1}, t_{n−1}, where τ_{i+1} is the fractional timestep of σ_mid between σ_i and
/// σ_{i+1} (log-σ interpolation of the training table, diffusers' <c>_sigma_to_t</c>).
/// Source: diffusers <c>src/diffusers/schedulers/scheduling_k_dpm_2_discrete.py</c>; k-diffusion <c>k_diffusion/sampling.py</c>.
/// </summary>
/// <remarks>
/// diffusers' midpoint is log-σ interpolation (<c>sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp()</c>),
/// not k-diffusion's ρ = 3 Karras midpoint; this class follows diffusers.
/// Class defaults: <c>beta_start</c> 0.00085, <c>beta_end</c> 0.012, <c>beta_schedule</c> <c>linear</c>.
/// Keys: <c>timestep_spacing</c> (<c>linspace</c>), <c>steps_offset</c>, <c>use_karras_sigmas</c> (step timesteps
/// then rounded, midpoint timesteps not, as in diffusers), <c>prediction_type</c> (<c>epsilon</c> or
/// <c>v_prediction</c>; diffusers does not implement <c>sample</c> here). <c>use_exponential_sigmas</c> and
/// <c>use_beta_sigmas</c> throw <see cref="NotSupportedException"/>.
/// </remarks>
internal sealed class KDpm2DiscreteScheduler : DiffusionScheduler
{
    private readonly double[] _trainSigmas;
    private readonly bool _karras;
    private double[] _sigmas = [];
    private double[] _midpoints = [];
    private float[]? _firstSample, _derivative;

    /// <summary>Builds the scheduler from a diffusers scheduler configuration.</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for an option this implementation lacks.</exception>
    public KDpm2DiscreteScheduler(SchedulerConfig config) : base(SigmaSchedule.WithClassDefaults(config, 0.00085, 0.012, hasZeroSnrKey: false))
    {
        if (PredictionType == PredictionType.Sample)
            throw new NotSupportedException($"{Name}: prediction_type 'sample' is not implemented (diffusers raises NotImplementedError for it too).");
        _trainSigmas = SchedulerMath.Sigmas(AlphasCumprod);
        SigmaSchedule.RejectFlags(Config, Name, "use_exponential_sigmas", "use_beta_sigmas");
        _karras = Config.GetBool("use_karras_sigmas", false);
        _ = SigmaSchedule.SpacedTimesteps(Config, NumTrainTimesteps, 1);
    }

    /// <inheritdoc />
    public override string Name => "KDPM2DiscreteScheduler";

    /// <summary>σ_max for <c>linspace</c>/<c>trailing</c> spacing, √(σ_max² + 1) for <c>leading</c>.</summary>
    public override float InitNoiseSigma =>
        SigmaSchedule.InitNoiseSigma(_sigmas.Length == 0 ? _trainSigmas[^1] : SigmaSchedule.Max(_sigmas), Config);

    /// <summary>The noise level at each step boundary, σ₀ … σ_{n−1} and the final 0 (n + 1 values).</summary>
    public ReadOnlySpan<double> Sigmas => _sigmas;

    /// <summary>The log-σ midpoint of each step, √(σ_i·σ_{i+1}) (n values, the last 0): the σ of the second call of step i.</summary>
    public ReadOnlySpan<double> MidpointSigmas => _midpoints;

    /// <inheritdoc />
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        var (timesteps, sigmas) = SigmaSchedule.Spaced(Config, NumTrainTimesteps, inferenceSteps, _trainSigmas, _karras, roundKarrasTimesteps: true);
        _sigmas = SigmaSchedule.WithFinal(sigmas, 0);
        _midpoints = new double[inferenceSteps];
        for (int i = 0; i < inferenceSteps; i++)
            _midpoints[i] = _sigmas[i + 1] == 0 ? 0 : Math.Exp((Math.Log(_sigmas[i]) + Math.Log(_sigmas[i + 1])) / 2);
        var midTimesteps = SigmaSchedule.TimestepsFor(_midpoints, _trainSigmas, round: false);
        var calls = new float[2 * inferenceSteps - 1];
        calls[0] = (float)timesteps[0];
        for (int i = 1; i < inferenceSteps; i++)
        {
            calls[2 * i - 1] = (float)midTimesteps[i - 1];
            calls[2 * i] = (float)timesteps[i];
        }
        return calls;
    }

    /// <summary>Step i begins at call 2i (calls t₀ | τ₁, t₁ | τ₂, t₂ …: a midpoint call closes each step), diffusers' <c>t_start · order</c>.</summary>
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

    /// <summary>The σ the model sees at call c: σ_i for the first call of step i, the midpoint for the second.</summary>
    private double CallSigma(int call) => call % 2 == 0 ? _sigmas[call / 2] : _midpoints[call / 2];

    /// <summary>Writes x/√(σ² + 1) for the current call's σ (the midpoint σ at a second call).</summary>
    public override void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination)
    {
        EnsureStepping();
        SigmaSchedule.ScaleInput(sample, destination, CallSigma(StepIndex), Name);
    }

    /// <summary>
    /// First call of step i: d = (x − D(x; σ_i))/σ_i, x ← x + (σ_mid − σ_i)·d.
    /// Second call: d_mid = (x − D(x; σ_mid))/σ_mid, x ← x_i + (σ_{i+1} − σ_i)·d_mid (k-diffusion <c>sample_dpm_2</c>).
    /// </summary>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        int call = StepIndex, i = call / 2;
        double sigma = _sigmas[i], mid = _midpoints[i];
        if (call % 2 == 0)
        {
            Scratch(ref _derivative, sample.Length); // both buffers at the first step
            if (mid != 0) sample.CopyTo(Scratch(ref _firstSample, sample.Length));
            SigmaSchedule.EulerStep(modelOutput, sample, PredictionType, sigma, mid);
        }
        else
        {
            if (_firstSample is null || _firstSample.Length != sample.Length)
                throw new InvalidOperationException($"{Name}: the midpoint call of a step came without its first call at this sample size.");
            var d = Scratch(ref _derivative, sample.Length);
            SigmaSchedule.Derivative(modelOutput, sample, PredictionType, mid, d);
            TensorPrimitives.MultiplyAdd(d, (float)(_sigmas[i + 1] - sigma), _firstSample, sample);
        }
        StepIndex++;
    }

    /// <summary>
    /// x₀ + σ·ε with σ = σ_{⌈c/2⌉} for call c, which is diffusers' interleaved <c>sigmas[callIndex]</c>
    /// (image-to-image starts at even calls, where this is the call's own σ).
    /// </summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        SigmaSchedule.AddNoise(original, noise, _sigmas[(callIndex + 1) / 2], destination, Name);
    }
}

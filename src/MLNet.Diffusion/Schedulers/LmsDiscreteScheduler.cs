using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>LMSDiscreteScheduler</c>: a linear multistep (Adams–Bashforth type) solver of order up to 4 for
/// the probability-flow ODE dx/dσ = d(x, σ), after k-diffusion's <c>sample_lms</c>. The derivative is
/// interpolated through the last k values by a Lagrange polynomial in σ and integrated over [σ_i, σ_{i+1}]:
/// x_{i+1} = x_i + Σ_j c_{ij}·d_{i−j},  c_{ij} = ∫_{σ_i}^{σ_{i+1}} Π_{m≠j} (τ − σ_{i−m})/(σ_{i−j} − σ_{i−m}) dτ.
/// Source: diffusers <c>src/diffusers/schedulers/scheduling_lms_discrete.py</c>; k-diffusion <c>k_diffusion/sampling.py</c>
/// (<c>linear_multistep_coeff</c>).
/// </summary>
/// <remarks>
/// diffusers and k-diffusion integrate with <c>scipy.integrate.quad</c>; here each coefficient is computed by
/// 3-point Gauss–Legendre quadrature, which is exact for polynomials up to degree 5 (the integrand has degree
/// order − 1 ≤ 3), once per step in <see cref="DiffusionScheduler.SetTimesteps"/>.
/// Configuration keys: <c>timestep_spacing</c> (<c>linspace</c>), <c>steps_offset</c>, <c>use_karras_sigmas</c>,
/// <c>prediction_type</c> (<c>epsilon</c>, <c>v_prediction</c>, <c>sample</c>); <c>use_exponential_sigmas</c> and
/// <c>use_beta_sigmas</c> throw <see cref="NotSupportedException"/>.
/// One deliberate difference: after <see cref="SetBeginIndex"/> (image-to-image) the order grows from 1 with
/// the derivatives actually collected, where diffusers takes min(step index + 1, 4) coefficients and silently
/// drops those without a stored derivative, which leaves a step whose coefficients no longer sum to Δσ.
/// </remarks>
internal sealed class LmsDiscreteScheduler : DiffusionScheduler
{
    /// <summary>The highest order used (diffusers' <c>step(order=4)</c> default).</summary>
    public const int MaxOrder = 4;

    // Coefficient table: for step i and order o (1 … 4) the o coefficients start at i·10 + o(o − 1)/2.
    private const int CoefficientsPerStep = MaxOrder * (MaxOrder + 1) / 2;

    // 3-point Gauss–Legendre rule on [−1, 1].
    private static readonly double[] GaussNodes = [-Math.Sqrt(0.6), 0, Math.Sqrt(0.6)];
    private static readonly double[] GaussWeights = [5.0 / 9, 8.0 / 9, 5.0 / 9];

    private readonly double[] _trainSigmas;
    private readonly bool _karras;
    private double[] _sigmas = [];
    private double[] _coefficients = [];
    private readonly float[]?[] _derivatives = new float[MaxOrder][];
    private int _derivativeCount;

    /// <summary>Builds the scheduler from a diffusers scheduler configuration.</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for an option this implementation lacks.</exception>
    public LmsDiscreteScheduler(SchedulerConfig config) : base(SigmaSchedule.WithClassDefaults(config, 0.0001, 0.02, hasZeroSnrKey: false))
    {
        _trainSigmas = SchedulerMath.Sigmas(AlphasCumprod);
        SigmaSchedule.RejectFlags(Config, Name, "use_exponential_sigmas", "use_beta_sigmas");
        _karras = Config.GetBool("use_karras_sigmas", false);
        _ = SigmaSchedule.SpacedTimesteps(Config, NumTrainTimesteps, 1);
    }

    /// <inheritdoc />
    public override string Name => "LMSDiscreteScheduler";

    /// <summary>σ_max for <c>linspace</c>/<c>trailing</c> spacing, √(σ_max² + 1) for <c>leading</c>.</summary>
    public override float InitNoiseSigma =>
        SigmaSchedule.InitNoiseSigma(_sigmas.Length == 0 ? _trainSigmas[^1] : SigmaSchedule.Max(_sigmas), Config);

    /// <summary>The noise level σ of each model call followed by the final 0, as diffusers' <c>sigmas</c>.</summary>
    public ReadOnlySpan<double> Sigmas => _sigmas;

    /// <summary>
    /// The coefficient c_{ij} of derivative d_{i−j} in step <paramref name="step"/> = i at order
    /// <paramref name="order"/> (0 ≤ j &lt; order ≤ min(i + 1, 4)); after <see cref="DiffusionScheduler.SetTimesteps"/>.
    /// </summary>
    public double Coefficient(int step, int order, int j)
    {
        if (step < 0 || step >= InferenceSteps || _coefficients.Length == 0) throw new ArgumentOutOfRangeException(nameof(step));
        if (order < 1 || order > Math.Min(step + 1, MaxOrder)) throw new ArgumentOutOfRangeException(nameof(order));
        if (j < 0 || j >= order) throw new ArgumentOutOfRangeException(nameof(j));
        return _coefficients[step * CoefficientsPerStep + order * (order - 1) / 2 + j];
    }

    /// <inheritdoc />
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        var (timesteps, sigmas) = SigmaSchedule.Spaced(Config, NumTrainTimesteps, inferenceSteps, _trainSigmas, _karras);
        _sigmas = SigmaSchedule.WithFinal(sigmas, 0);
        _coefficients = new double[inferenceSteps * CoefficientsPerStep];
        for (int i = 0; i < inferenceSteps; i++)
            for (int order = 1; order <= Math.Min(i + 1, MaxOrder); order++)
                for (int j = 0; j < order; j++)
                    _coefficients[i * CoefficientsPerStep + order * (order - 1) / 2 + j] = LagrangeIntegral(_sigmas, i, order, j);
        _derivativeCount = 0;
        return SigmaSchedule.ToFloat(timesteps);
    }

    /// <summary>
    /// ∫_{σ_i}^{σ_{i+1}} ℓ_j(τ) dτ for the Lagrange basis polynomial ℓ_j over the nodes σ_i, σ_{i−1}, …, σ_{i−order+1}
    /// (k-diffusion <c>linear_multistep_coeff</c>), by Gauss–Legendre: ∫_a^b f = (b − a)/2 · Σ w_k f((b − a)/2·x_k + (a + b)/2).
    /// </summary>
    private static double LagrangeIntegral(double[] sigmas, int i, int order, int j)
    {
        double a = sigmas[i], b = sigmas[i + 1], half = (b - a) / 2, mid = (a + b) / 2, sum = 0;
        for (int k = 0; k < GaussNodes.Length; k++)
        {
            double tau = half * GaussNodes[k] + mid, product = 1;
            for (int m = 0; m < order; m++)
                if (m != j) product *= (tau - sigmas[i - m]) / (sigmas[i - j] - sigmas[i - m]);
            sum += GaussWeights[k] * product;
        }
        return half * sum;
    }

    /// <summary>Starts part-way down the schedule; the derivative history starts empty.</summary>
    public override void SetBeginIndex(int callIndex)
    {
        base.SetBeginIndex(callIndex);
        _derivativeCount = 0;
    }

    /// <summary>Writes x/√(σ² + 1) for the current call's σ.</summary>
    public override void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination)
    {
        EnsureStepping();
        SigmaSchedule.ScaleInput(sample, destination, _sigmas[StepIndex], Name);
    }

    /// <summary>
    /// d_i = (x − D)/σ_i joins the history (the last four are kept); x ← x + Σ_{j &lt; order} c_{ij}·d_{i−j} with
    /// order = min(derivatives collected, 4) (k-diffusion <c>sample_lms</c>).
    /// </summary>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        if (_derivativeCount > 0 && _derivatives[0]!.Length != sample.Length)
            throw new ArgumentException($"{Name}: the sample size changed from {_derivatives[0]!.Length} to {sample.Length} in the middle of a schedule.", nameof(sample));
        int i = StepIndex;
        for (int k = 0; k < MaxOrder; k++) Scratch(ref _derivatives[k], sample.Length); // all at the first step
        var d = _derivatives[_derivativeCount % MaxOrder]!;
        SigmaSchedule.Derivative(modelOutput, sample, PredictionType, _sigmas[i], d);
        _derivativeCount++;
        int order = Math.Min(_derivativeCount, MaxOrder);
        int offset = i * CoefficientsPerStep + order * (order - 1) / 2;
        for (int j = 0; j < order; j++)
        {
            // d_{i−j} was the (count − 1 − j)-th derivative collected.
            var previous = _derivatives[(_derivativeCount - 1 - j) % MaxOrder]!;
            TensorPrimitives.MultiplyAdd(previous, (float)_coefficients[offset + j], sample, sample);
        }
        StepIndex++;
    }

    /// <summary>x₀ + σ·ε with σ of model call <paramref name="callIndex"/>.</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        SigmaSchedule.AddNoise(original, noise, _sigmas[callIndex], destination, Name);
    }
}

using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>DEISMultistepScheduler</c>: the diffusion exponential integrator sampler of Zhang and Chen 2023,
/// "Fast Sampling of Diffusion Models with Exponential Integrator" (arXiv:2204.13902), in its log-ρ form (ρ = σ_t/α_t,
/// the VE noise level): the noise prediction is extrapolated by Lagrange polynomials in log ρ through the last 1–3
/// model outputs and integrated exactly. Source: diffusers <c>src/diffusers/schedulers/scheduling_deis_multistep.py</c>.
/// </summary>
/// <remarks>
/// <para>Like <see cref="DpmSolverMultistepScheduler"/> it works on the VP sample (α_t = 1/√(ρ² + 1)) with the same integer
/// timesteps, no input scaling and N(0, 1) initial noise; the model output is converted to the noise ε. The schedule
/// ends at σ_min (the training schedule's first σ), where log ρ is finite.</para>
/// <para>Keys (diffusers defaults): <c>solver_order</c> (2; 1 to 3), <c>algorithm_type</c> (<c>deis</c>, the only one;
/// <c>dpmsolver</c> and <c>dpmsolver++</c> map to it, as in diffusers),
/// <c>solver_type</c> (<c>logrho</c>; <c>midpoint</c>, <c>heun</c>, <c>bh1</c> and <c>bh2</c> map to it, as in diffusers),
/// <c>lower_order_final</c> (true: first order at the last step and at most second at the one before, below 15 steps),
/// <c>use_karras_sigmas</c>, <c>timestep_spacing</c> (<c>linspace</c>), <c>steps_offset</c>, <c>rescale_betas_zero_snr</c>,
/// <c>prediction_type</c>. Not supported: <c>thresholding</c> and the other σ spacings. <c>final_sigmas_type</c> is not a
/// DEIS key (a folder configured for DPM-Solver may carry one when DEIS is chosen by name) and is ignored: the
/// schedule always ends at σ_min, since log ρ has no value at 0.</para>
/// </remarks>
internal sealed class DeisMultistepScheduler : DiffusionScheduler
{
    private readonly double[] _trainSigmas;
    private readonly int _solverOrder;
    private readonly bool _lowerOrderFinal, _karras;
    private double[] _sigmas = [];
    private float[]? _m1, _m2; // converted outputs of earlier steps, newest first (m2: order 3 only)
    private int _lowerOrderNums;

    /// <summary>Builds the scheduler from a diffusers scheduler configuration.</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for an option this implementation lacks.</exception>
    public DeisMultistepScheduler(SchedulerConfig config) : base(config)
    {
        SigmaSchedule.FloorZeroTerminalSnr(AlphasCumprod, config);
        _trainSigmas = SchedulerMath.Sigmas(AlphasCumprod);
        string where = $"(scheduler configuration '{config.Source ?? "(text)"}')";
        _solverOrder = SigmaSchedule.SolverOrder(config, Name, where);
        string algorithm = config.GetString("algorithm_type", "deis");
        if (algorithm is "dpmsolver" or "dpmsolver++") algorithm = "deis"; // a DPM-Solver folder's key, mapped as diffusers does
        if (algorithm != "deis")
            throw new InvalidDataException($"{Name}: algorithm_type '{algorithm}' is not supported; DEIS has 'deis' only {where}.");
        string solverType = config.GetString("solver_type", "logrho");
        if (solverType is not ("logrho" or "midpoint" or "heun" or "bh1" or "bh2"))
            throw new InvalidDataException($"{Name}: solver_type '{solverType}' is not supported; expected logrho {where}.");
        if (config.GetBool("thresholding", false))
            throw new NotSupportedException($"{Name}: 'thresholding: true' (dynamic thresholding, for pixel-space models) is not supported {where}.");
        SigmaSchedule.RejectFlags(config, Name, "use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas");
        SigmaSchedule.RequireMultistepSpacing(config, Name, where);
        _lowerOrderFinal = config.GetBool("lower_order_final", true);
        _karras = config.GetBool("use_karras_sigmas", false);
    }

    /// <inheritdoc />
    public override string Name => "DEISMultistepScheduler";

    /// <summary>1: the solver works on the unscaled VP sample.</summary>
    public override float InitNoiseSigma => 1f;

    /// <summary>ρ (the VE noise level) of each model call followed by the final σ_min, as diffusers' <c>sigmas</c>.</summary>
    public ReadOnlySpan<double> Sigmas => _sigmas;

    /// <summary>The integer timesteps of <see cref="SigmaSchedule.MultistepTimesteps"/>; Karras σ are mapped back and rounded.</summary>
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        (var timesteps, _sigmas) = SigmaSchedule.MultistepSchedule(Config, NumTrainTimesteps, NumTrainTimesteps, inferenceSteps, _trainSigmas,
            _karras, roundKarras: true, finalSigma: _trainSigmas[0]);
        _lowerOrderNums = 0;
        return timesteps;
    }

    /// <summary>Starts part-way down the schedule; the solver restarts at first order.</summary>
    public override void SetBeginIndex(int callIndex)
    {
        base.SetBeginIndex(callIndex);
        _lowerOrderNums = 0;
    }

    /// <summary>
    /// One step from ρ_s0 = ρ[i] to ρ_t = ρ[i+1] with the noise predictions m0 (this step), m1, m2. First order (DDIM):
    /// x_t = (α_t/α_s0)·x − σ_t·(e^h − 1)·m0, h = λ_t − λ_s0. Orders 2 and 3: x_t = α_t·(x/α_s0 + Σ_k c_k·m_k) with
    /// c_k = ∫_{ρ_s0}^{ρ_t} ℓ_k(log ρ) dρ, ℓ_k the Lagrange basis polynomial in log ρ through the nodes ρ_s0, ρ_s1(, ρ_s2)
    /// that is 1 at node k (the paper's ρAB-DEIS, eq. 13–14; diffusers' <c>ind_fn</c> is its antiderivative).
    /// </summary>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        int i = StepIndex, n = CallCount;
        bool lowerOrderFinal = i == n - 1 && _lowerOrderFinal && n < 15;
        bool lowerOrderSecond = i == n - 2 && _lowerOrderFinal && n < 15;
        if (_m1 is null || _m1.Length != sample.Length)
        {
            if (_lowerOrderNums > 0 && _m1 is not null)
                throw new ArgumentException($"{Name}: the sample size changed from {_m1.Length} to {sample.Length} in the middle of a schedule.", nameof(sample));
            _m1 = new float[sample.Length];
            _m2 = _solverOrder == 3 ? new float[sample.Length] : null;
        }
        int order = _solverOrder == 1 || _lowerOrderNums < 1 || lowerOrderFinal ? 1
            : _solverOrder == 2 || _lowerOrderNums < 2 || lowerOrderSecond ? 2 : 3;

        var (alphaS, sigmaS) = VpSolverMath.AlphaSigma(_sigmas[i]);
        var (alphaT, sigmaT) = VpSolverMath.AlphaSigma(_sigmas[i + 1]);
        var (p, q) = VpSolverMath.Conversion(PredictionType, toData: false, alphaS, sigmaS);
        double a = alphaT / alphaS, c0, c1 = 0, c2 = 0;
        double rhoT = _sigmas[i + 1], rho0 = _sigmas[i];
        if (order == 1)
        {
            double h = VpSolverMath.Lambda(rhoT) - VpSolverMath.Lambda(rho0);
            c0 = -sigmaT * (Math.Exp(h) - 1);
        }
        else if (order == 2)
        {
            double rho1 = _sigmas[i - 1];
            c0 = alphaT * (Linear(rhoT, rho0, rho1) - Linear(rho0, rho0, rho1));
            c1 = alphaT * (Linear(rhoT, rho1, rho0) - Linear(rho0, rho1, rho0));
        }
        else
        {
            double rho1 = _sigmas[i - 1], rho2 = _sigmas[i - 2];
            c0 = alphaT * (Quadratic(rhoT, rho0, rho1, rho2) - Quadratic(rho0, rho0, rho1, rho2));
            c1 = alphaT * (Quadratic(rhoT, rho1, rho2, rho0) - Quadratic(rho0, rho1, rho2, rho0));
            c2 = alphaT * (Quadratic(rhoT, rho2, rho0, rho1) - Quadratic(rho0, rho2, rho0, rho1));
        }

        // One pass: m0 = p·F + q·x, x ← a·x + c0·m0 + c1·m1 + c2·m2; m0 overwrites the history the next step drops
        // (in place where this step reads it, as DPM-Solver does).
        var m0 = _solverOrder == 1 ? default : _solverOrder == 2 ? _m1 : _m2!;
        LatentKernels.Update(modelOutput, sample, m0, p, q, (float)a, (float)c0, order - 1, _m1, (float)c1, _m2, (float)c2);
        if (_solverOrder == 3) (_m1, _m2) = (_m2, _m1);

        if (_lowerOrderNums < _solverOrder) _lowerOrderNums++;
        StepIndex++;
    }

    /// <summary>∫ (log t − log c)/(log b − log c) dt = t·(log t − log c − 1)/(log b − log c): the antiderivative of the
    /// linear Lagrange basis through b (value 1) and c (value 0), in log ρ.</summary>
    private static double Linear(double t, double b, double c) => t * (Math.Log(t) - Math.Log(c) - 1) / (Math.Log(b) - Math.Log(c));

    /// <summary>The antiderivative of the quadratic Lagrange basis (log t − log c)(log t − log d)/((log b − log c)(log b − log d)).</summary>
    private static double Quadratic(double t, double b, double c, double d)
    {
        double lt = Math.Log(t), lc = Math.Log(c), ld = Math.Log(d), lb = Math.Log(b);
        double numerator = t * (lc * (ld - lt + 1) - ld * lt + ld + lt * lt - 2 * lt + 2);
        return numerator / ((lb - lc) * (lb - ld));
    }

    /// <summary>α_t·x₀ + σ_t·ε at model call <paramref name="callIndex"/> (diffusers <c>add_noise</c>).</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        SigmaSchedule.CheckNoiseLengths(original, noise, destination, Name);
        VpSolverMath.AddNoise(original, noise, _sigmas[callIndex], destination);
    }
}

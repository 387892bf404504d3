using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>DPMSolverMultistepScheduler</c>: multistep DPM-Solver++ (Lu et al. 2022b, "DPM-Solver++: Fast
/// Solver for Guided Sampling of Diffusion Probabilistic Models", arXiv:2211.01095, Alg. 2) and DPM-Solver
/// (Lu et al. 2022a, arXiv:2206.00927), orders 1 to 3, and their stochastic (SDE) variants at orders 1 and 2. With the
/// defaults (<c>dpmsolver++</c>, order 2, <c>midpoint</c>) and <c>use_karras_sigmas</c> this is the "DPM++ 2M Karras"
/// sampler; with <c>sde-dpmsolver++</c>, "DPM++ 2M SDE (Karras)".
/// Source: diffusers <c>src/diffusers/schedulers/scheduling_dpmsolver_multistep.py</c>; k-diffusion
/// <c>k_diffusion/sampling.py</c> (<c>sample_dpmpp_2m</c>, the same update in σ coordinates).
/// </summary>
/// <remarks>
/// <para>The solver works on the VP sample x = α_t·x₀ + σ_t·ε with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), and in
/// λ_t = log(α_t/σ_t); the table it keeps is the VE σ = σ_t/α_t, from which α_t = 1/√(σ² + 1), σ_t = σ·α_t and
/// λ_t = −log σ. So the UNet input is the sample itself (<see cref="DiffusionScheduler.ScaleModelInput"/> copies) and the initial
/// noise is N(0, 1) (<see cref="InitNoiseSigma"/> = 1).</para>
/// <para>Keys (diffusers defaults): <c>solver_order</c> (2), <c>algorithm_type</c> (<c>dpmsolver++</c>; also
/// <c>dpmsolver</c>, <c>sde-dpmsolver++</c>, <c>sde-dpmsolver</c>, and <c>deis</c>, which diffusers maps to
/// <c>dpmsolver++</c>), <c>solver_type</c>
/// (<c>midpoint</c> or <c>heun</c>; <c>logrho</c>/<c>bh1</c>/<c>bh2</c> map to <c>midpoint</c>), <c>lower_order_final</c>
/// (true), <c>euler_at_final</c> (false), <c>use_karras_sigmas</c>, <c>final_sigmas_type</c> (<c>zero</c> or
/// <c>sigma_min</c>; <c>dpmsolver</c> requires <c>sigma_min</c>, as in diffusers), <c>lambda_min_clipped</c> (−∞),
/// <c>timestep_spacing</c> (<c>linspace</c>), <c>steps_offset</c>, <c>rescale_betas_zero_snr</c>,
/// <c>prediction_type</c> (<c>epsilon</c>, <c>v_prediction</c>, <c>sample</c>).</para>
/// <para>Not supported (<see cref="NotSupportedException"/>): the SDE variants at <c>solver_order</c> 3 (diffusers has
/// no third-order SDE update), <c>thresholding</c>, <c>variance_type</c> <c>learned</c>/<c>learned_range</c>,
/// <c>use_lu_lambdas</c>, <c>use_exponential_sigmas</c>, <c>use_beta_sigmas</c>, <c>use_flow_sigmas</c> and
/// <c>use_dynamic_shifting</c>.</para>
/// </remarks>
internal sealed class DpmSolverMultistepScheduler : DiffusionScheduler
{
    private readonly double[] _trainSigmas;
    private readonly bool _plusPlus;
    private readonly bool _sde;
    private readonly bool _midpoint;
    private readonly int _solverOrder;
    private readonly bool _lowerOrderFinal, _eulerAtFinal, _finalZero, _karras, _cosine;
    private readonly double _lambdaMinClipped;
    private double[] _sigmas = [];
    // Converted model outputs of earlier steps, newest first: m1 (the previous step), m2 (the one before; order 3 only).
    private float[]? _m1, _m2;
    private float[]? _noise; // the SDE variants' z ~ N(0, I) of the current step
    private int _lowerOrderNums;

    /// <summary>Builds the scheduler from a diffusers scheduler configuration.</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for an option this implementation lacks.</exception>
    public DpmSolverMultistepScheduler(SchedulerConfig config) : base(config)
    {
        SigmaSchedule.FloorZeroTerminalSnr(AlphasCumprod, config);
        _trainSigmas = SchedulerMath.Sigmas(AlphasCumprod);
        string where = $"(scheduler configuration '{config.Source ?? "(text)"}')";

        string algorithm = config.GetString("algorithm_type", "dpmsolver++");
        if (algorithm == "deis") algorithm = "dpmsolver++";
        if (algorithm is not ("dpmsolver++" or "dpmsolver" or "sde-dpmsolver++" or "sde-dpmsolver"))
            throw new InvalidDataException($"{Name}: algorithm_type '{algorithm}' is not one of dpmsolver++, dpmsolver, sde-dpmsolver++, sde-dpmsolver {where}.");
        _plusPlus = algorithm is "dpmsolver++" or "sde-dpmsolver++";
        _sde = algorithm.StartsWith("sde-", StringComparison.Ordinal);

        string solverType = config.GetString("solver_type", "midpoint");
        if (solverType is "logrho" or "bh1" or "bh2") solverType = "midpoint";
        if (solverType is not ("midpoint" or "heun"))
            throw new InvalidDataException($"{Name}: solver_type '{solverType}' is not one of midpoint, heun {where}.");
        _midpoint = solverType == "midpoint";

        _solverOrder = SigmaSchedule.SolverOrder(config, Name, where);
        if (_sde && _solverOrder == 3)
            throw new NotSupportedException($"{Name}: algorithm_type '{algorithm}' with solver_order 3 is not supported (diffusers has no third-order SDE update); use solver_order 2 {where}.");

        _finalZero = SigmaSchedule.FinalSigmaIsZero(config, Name, where);
        if (!_plusPlus && _finalZero)
            throw new InvalidDataException($"{Name}: final_sigmas_type 'zero' is not supported with algorithm_type '{algorithm}' (λ = +∞ at σ = 0); set final_sigmas_type to 'sigma_min' {where}.");

        SigmaSchedule.RejectThresholdingAndLearnedVariance(config, Name, where);
        SigmaSchedule.RejectFlags(config, Name, "use_lu_lambdas", "use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting");

        _lowerOrderFinal = config.GetBool("lower_order_final", true);
        _eulerAtFinal = config.GetBool("euler_at_final", false);
        _karras = config.GetBool("use_karras_sigmas", false);
        _cosine = config.GetString("beta_schedule", "linear") == "squaredcos_cap_v2";
        _lambdaMinClipped = config.GetDouble("lambda_min_clipped", double.NegativeInfinity, allowInfinite: true);
        SigmaSchedule.RequireMultistepSpacing(config, Name, where);
    }

    /// <inheritdoc />
    public override string Name => "DPMSolverMultistepScheduler";

    /// <summary>True for the SDE variants (<c>sde-dpmsolver++</c>, <c>sde-dpmsolver</c>), which draw noise at every step.</summary>
    public override bool IsStochastic => _sde;

    /// <summary>1: the solver works on the unscaled VP sample, whose marginal at t = T is ≈ N(0, 1).</summary>
    public override float InitNoiseSigma => 1f;

    /// <summary>The VE noise level σ = √((1 − ᾱ)/ᾱ) of each model call followed by the final one (0 or σ_min), as diffusers' <c>sigmas</c>.</summary>
    public ReadOnlySpan<double> Sigmas => _sigmas;

    /// <summary>
    /// Integer timesteps as diffusers: <c>linspace</c> rounds linspace(0, T − 1, n + 1) and drops the final 0;
    /// <c>leading</c> uses ratio T div (n + 1); <c>trailing</c> arange(T, 0, −N/n) − 1; T = N unless
    /// <c>lambda_min_clipped</c> cuts the high-noise end. Karras σ come from the whole training range and are
    /// mapped back to timesteps, rounded except for the cosine schedule, then truncated to integers.
    /// </summary>
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        int n = inferenceSteps, trainSteps = NumTrainTimesteps;
        // searchsorted(flip(λ), lambda_min_clipped): the number of training λ_t = −log σ_t below the clip.
        int clipped = 0;
        foreach (var s in _trainSigmas)
            if (-Math.Log(s) < _lambdaMinClipped) clipped++;
        int last = trainSteps - clipped;
        (var timesteps, _sigmas) = SigmaSchedule.MultistepSchedule(Config, trainSteps, last, n, _trainSigmas,
            _karras, roundKarras: !_cosine, finalSigma: _finalZero ? 0 : _trainSigmas[0]);
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
    /// One multistep update from σ_s0 = σ[i] to σ_t = σ[i+1]. The model output is first converted
    /// (<c>convert_model_output</c>): for DPM-Solver++ to the data prediction x₀ = (x − σ_t·ε)/α_t
    /// (v: α_t·x − σ_t·v), for DPM-Solver to the noise prediction ε (v: α_t·v + σ_t·x). With h = λ_t − λ_s0,
    /// h_k = λ_{s_k} − λ_{s_{k+1}}, r_k = h_k/h, D0 = m0, D1 = (m0 − m1)/r0 (order 2), the update is
    /// x_t = A·x + φ·D0 + ψ·D1 + ω·D2 with
    /// DPM-Solver++ (2211.01095 eqs. 9–10, Alg. 2): A = σ_t/σ_s0, φ = α_t(1 − e^{−h}), ψ = α_t((e^{−h} − 1)/h + 1),
    /// ω = −α_t((e^{−h} − 1 + h)/h² − ½);
    /// DPM-Solver (2206.00927 Alg. 1 and App. B): A = α_t/α_s0, φ = −σ_t(e^h − 1), ψ = −σ_t((e^h − 1)/h − 1),
    /// ω = −σ_t((e^h − 1 − h)/h² − ½);
    /// at order 2 the midpoint solver uses ψ = φ/2; order 3 uses D1 = D1₀ + r0/(r0 + r1)(D1₀ − D1₁),
    /// D2 = (D1₀ − D1₁)/(r0 + r1), D1₀ = (m0 − m1)/r0, D1₁ = (m1 − m2)/r1. The order is min(solver_order,
    /// steps taken + 1), lowered to 1 at the last step (always with <c>final_sigmas_type: zero</c>, where
    /// e^{−h} = σ_t/σ_s0 = 0 and the update returns x₀) and to 2 at the one before when
    /// <c>lower_order_final</c> and fewer than 15 steps.
    /// <para>The SDE variants (Lu et al. 2022b, § 5 and App. A; diffusers' <c>sde-dpmsolver++</c>/<c>sde-dpmsolver</c>)
    /// add σ_t·√(1 − e^{−2h})·z (++) or σ_t·√(e^{2h} − 1)·z, z ~ N(0, I) drawn from <paramref name="noise"/> at every
    /// step, with SDE-DPM-Solver++: A = (σ_t/σ_s0)·e^{−h}, φ = α_t(1 − e^{−2h}), ψ = φ/2 (midpoint) or
    /// α_t((1 − e^{−2h})/(−2h) + 1) (heun); SDE-DPM-Solver: A = α_t/α_s0, φ = −2σ_t(e^h − 1), ψ = φ/2 (midpoint) or
    /// −2σ_t((e^h − 1)/h − 1) (heun).</para>
    /// </summary>
    /// <exception cref="ArgumentNullException">An SDE variant is configured and <paramref name="noise"/> is null.</exception>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        var source = _sde ? RequireNoise(noise) : null;
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        int i = StepIndex, n = CallCount;
        bool lowerOrderFinal = i == n - 1 && (_eulerAtFinal || (_lowerOrderFinal && n < 15) || _finalZero);
        bool lowerOrderSecond = i == n - 2 && _lowerOrderFinal && n < 15;

        // History buffers: allocated once per sample size, then reused.
        if (_m1 is null || _m1.Length != sample.Length)
        {
            if (_lowerOrderNums > 0 && _m1 is not null)
                throw new ArgumentException($"{Name}: the sample size changed from {_m1.Length} to {sample.Length} in the middle of a schedule.", nameof(sample));
            _m1 = new float[sample.Length];
            _m2 = _solverOrder == 3 ? new float[sample.Length] : null;
        }
        var (alphaS, sigmaS) = VpSolverMath.AlphaSigma(_sigmas[i]);
        var (convertF, convertX) = VpSolverMath.Conversion(PredictionType, _plusPlus, alphaS, sigmaS);

        int order = _solverOrder == 1 || _lowerOrderNums < 1 || lowerOrderFinal ? 1
            : _solverOrder == 2 || _lowerOrderNums < 2 || lowerOrderSecond ? 2 : 3;

        var (alphaT, sigmaT) = VpSolverMath.AlphaSigma(_sigmas[i + 1]);
        double lambdaT = VpSolverMath.Lambda(_sigmas[i + 1]), lambdaS0 = VpSolverMath.Lambda(_sigmas[i]);
        double h = lambdaT - lambdaS0;
        double a, phi, psi, omega = 0, noiseScale = 0;
        if (_sde && _plusPlus)
        {
            double em2 = Math.Exp(-2 * h); // 0 when σ_t = 0
            a = sigmaT / sigmaS * Math.Exp(-h);
            phi = alphaT * (1 - em2);
            psi = order == 2 && _midpoint ? phi / 2 : alphaT * ((1 - em2) / (-2 * h) + 1);
            noiseScale = sigmaT * Math.Sqrt(1 - em2);
        }
        else if (_sde)
        {
            double ep = Math.Exp(h);
            a = alphaT / alphaS;
            phi = -2 * sigmaT * (ep - 1);
            psi = order == 2 && _midpoint ? phi / 2 : -2 * sigmaT * ((ep - 1) / h - 1);
            noiseScale = sigmaT * Math.Sqrt(ep * ep - 1);
        }
        else if (_plusPlus)
        {
            double em = Math.Exp(-h); // = σ_VE(t)/σ_VE(s0); 0 when σ_t = 0
            a = sigmaT / sigmaS;
            phi = alphaT * (1 - em);
            psi = order == 2 && _midpoint ? phi / 2 : alphaT * ((em - 1) / h + 1);
            omega = -alphaT * ((em - 1 + h) / (h * h) - 0.5);
        }
        else
        {
            double ep = Math.Exp(h);
            a = alphaT / alphaS;
            phi = -sigmaT * (ep - 1);
            psi = order == 2 && _midpoint ? phi / 2 : -sigmaT * ((ep - 1) / h - 1);
            omega = -sigmaT * ((ep - 1 - h) / (h * h) - 0.5);
        }

        // x_t = A·x + c0·m0 + c1·m1 + c2·m2.
        double c0 = phi, c1 = 0, c2 = 0;
        if (order == 2)
        {
            double r0 = (lambdaS0 - VpSolverMath.Lambda(_sigmas[i - 1])) / h;
            c0 += psi / r0;
            c1 = -psi / r0;
        }
        else if (order == 3)
        {
            double lambdaS1 = VpSolverMath.Lambda(_sigmas[i - 1]), lambdaS2 = VpSolverMath.Lambda(_sigmas[i - 2]);
            double r0 = (lambdaS0 - lambdaS1) / h, r1 = (lambdaS1 - lambdaS2) / h, g = 1 / (r0 + r1);
            double p = psi * (1 + r0 * g) + omega * g; // coefficient of D1₀
            double q = -psi * r0 * g - omega * g;      // coefficient of D1₁
            c0 += p / r0;
            c1 = -p / r0 + q / r1;
            c2 = -q / r1;
        }

        // One pass: m0 = q·x + p·F (convert_model_output), x ← A·x + c0·m0 + c1·m1 + c2·m2. m0 overwrites the oldest
        // history, which the next step no longer needs; at full order this step reads it, so the overwrite is in place
        // (2.3× → 1.6× the time of a copy of the step's bytes for DPM-Solver++ 2M at 4×128×128, docs/PERFORMANCE.md).
        var m0 = _solverOrder == 1 ? default : _solverOrder == 2 ? _m1 : _m2!;
        if (source is not null)
        {
            // The noise term enters the same pass as one more history, after the order − 1 real ones (order ≤ 2 here).
            var z = Scratch(ref _noise, sample.Length);
            source.Fill(z);
            if (order == 1) LatentKernels.Update(modelOutput, sample, m0, convertF, convertX, (float)a, (float)c0, 1, z, (float)noiseScale);
            else LatentKernels.Update(modelOutput, sample, m0, convertF, convertX, (float)a, (float)c0, 2, _m1, (float)c1, z, (float)noiseScale);
        }
        else
        {
            LatentKernels.Update(modelOutput, sample, m0, convertF, convertX, (float)a, (float)c0, order - 1, _m1, (float)c1, _m2, (float)c2);
        }
        if (_solverOrder == 3) (_m1, _m2) = (_m2, _m1);

        if (_lowerOrderNums < _solverOrder) _lowerOrderNums++;
        StepIndex++;
    }

    /// <summary>α_t·x₀ + σ_t·ε with α_t = 1/√(σ² + 1), σ_t = σ·α_t at model call <paramref name="callIndex"/> (diffusers <c>add_noise</c>).</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        SigmaSchedule.CheckNoiseLengths(original, noise, destination, Name);
        VpSolverMath.AddNoise(original, noise, _sigmas[callIndex], destination);
    }
}

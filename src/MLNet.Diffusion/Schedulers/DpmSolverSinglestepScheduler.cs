using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>DPMSolverSinglestepScheduler</c>: singlestep DPM-Solver++ (Lu et al. 2022b, arXiv:2211.01095, Alg. 1)
/// and DPM-Solver (Lu et al. 2022a, arXiv:2206.00927), orders 1 to 3. Where the multistep solver reuses the previous
/// steps' outputs, a singlestep group of order k starts from a saved sample, takes k − 1 first-order sub-steps that
/// produce the intermediate model outputs, and its last call integrates the whole group from the saved sample with all
/// of them ("DPM++ 2S" at order 2). Source: diffusers <c>src/diffusers/schedulers/scheduling_dpmsolver_singlestep.py</c>.
/// </summary>
/// <remarks>
/// <para>Orders per call (diffusers' <c>get_order_list</c>): groups [1, 2] or [1, 2, 3], with <c>lower_order_final</c>
/// (default true) ending in [1, 1]/[1] or [1, 2]/[1]; without it the step count must divide by the order (diffusers
/// switches <c>lower_order_final</c> on otherwise, and so does this class). A group that would reach back before the first
/// call of the run (image-to-image) is cut to the outputs it has.</para>
/// <para>Keys (diffusers defaults): <c>solver_order</c> (2), <c>algorithm_type</c> (<c>dpmsolver++</c> or
/// <c>dpmsolver</c>; <c>deis</c> maps to <c>dpmsolver++</c>), <c>solver_type</c> (<c>midpoint</c> or <c>heun</c>; the
/// UniPC/DEIS names map to <c>midpoint</c>), <c>lower_order_final</c>, <c>use_karras_sigmas</c>, <c>final_sigmas_type</c>
/// (<c>zero</c>; <c>sigma_min</c>), <c>lambda_min_clipped</c>, <c>prediction_type</c>. Timesteps are always linspace,
/// as in diffusers (<c>timestep_spacing</c> is not read). Not supported: the SDE variants, <c>thresholding</c>,
/// <c>variance_type</c> learned.</para>
/// </remarks>
internal sealed class DpmSolverSinglestepScheduler : DiffusionScheduler
{
    private static readonly (string Key, object? Value) Linspace = ("timestep_spacing", "linspace");

    private readonly double[] _trainSigmas;
    private readonly bool _plusPlus, _midpoint, _karras, _finalZero, _cosine;
    private readonly int _solverOrder;
    private readonly bool _lowerOrderFinalConfigured;
    private readonly double _lambdaMinClipped;
    private double[] _sigmas = [];
    private int[] _orders = [];
    private readonly float[]?[] _history = new float[]?[3]; // converted outputs, newest first
    private float[]? _saved;                                 // the sample the current group started from
    private int _outputs;                                    // converted outputs since the run began

    /// <summary>Builds the scheduler from a diffusers scheduler configuration.</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for an option this implementation lacks.</exception>
    public DpmSolverSinglestepScheduler(SchedulerConfig config) : base(config)
    {
        SigmaSchedule.FloorZeroTerminalSnr(AlphasCumprod, config);
        _trainSigmas = SchedulerMath.Sigmas(AlphasCumprod);
        string where = $"(scheduler configuration '{config.Source ?? "(text)"}')";
        string algorithm = config.GetString("algorithm_type", "dpmsolver++");
        if (algorithm == "deis") algorithm = "dpmsolver++";
        if (algorithm is "sde-dpmsolver" or "sde-dpmsolver++")
            throw new NotSupportedException($"{Name}: algorithm_type '{algorithm}' is not supported by the singlestep solver; use DPMSolverMultistepScheduler (dpm++2m-sde) {where}.");
        if (algorithm is not ("dpmsolver++" or "dpmsolver"))
            throw new InvalidDataException($"{Name}: algorithm_type '{algorithm}' is not one of dpmsolver++, dpmsolver {where}.");
        _plusPlus = algorithm == "dpmsolver++";
        string solverType = config.GetString("solver_type", "midpoint");
        if (solverType is "logrho" or "bh1" or "bh2") solverType = "midpoint";
        if (solverType is not ("midpoint" or "heun"))
            throw new InvalidDataException($"{Name}: solver_type '{solverType}' is not one of midpoint, heun {where}.");
        _midpoint = solverType == "midpoint";
        _solverOrder = SigmaSchedule.SolverOrder(config, Name, where);
        _finalZero = SigmaSchedule.FinalSigmaIsZero(config, Name, where);
        if (!_plusPlus && _finalZero)
            throw new InvalidDataException($"{Name}: final_sigmas_type 'zero' is not supported with algorithm_type 'dpmsolver' (λ = +∞ at σ = 0); set final_sigmas_type to 'sigma_min' {where}.");
        SigmaSchedule.RejectThresholdingAndLearnedVariance(config, Name, where);
        SigmaSchedule.RejectFlags(config, Name, "use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas");
        _karras = config.GetBool("use_karras_sigmas", false);
        _cosine = config.GetString("beta_schedule", "linear") == "squaredcos_cap_v2";
        _lowerOrderFinalConfigured = config.GetBool("lower_order_final", true);
        _lambdaMinClipped = config.GetDouble("lambda_min_clipped", double.NegativeInfinity, allowInfinite: true);
    }

    /// <inheritdoc />
    public override string Name => "DPMSolverSinglestepScheduler";

    /// <summary>1: the solver works on the unscaled VP sample.</summary>
    public override float InitNoiseSigma => 1f;

    /// <summary>The VE noise level of each model call followed by the final one (0 or σ_min), as diffusers' <c>sigmas</c>.</summary>
    public ReadOnlySpan<double> Sigmas => _sigmas;

    /// <summary>The solver order of each call (diffusers' <c>order_list</c>).</summary>
    public ReadOnlySpan<int> Orders => _orders;

    /// <summary>Linspace integer timesteps up to the <c>lambda_min_clipped</c> cut; Karras σ mapped back and rounded (not for the cosine schedule).</summary>
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        int clipped = 0;
        foreach (var s in _trainSigmas)
            if (VpSolverMath.Lambda(s) < _lambdaMinClipped) clipped++;
        (var timesteps, _sigmas) = SigmaSchedule.MultistepSchedule(Config.With(Linspace), NumTrainTimesteps, NumTrainTimesteps - clipped, inferenceSteps,
            _trainSigmas, _karras, roundKarras: !_cosine, finalSigma: _finalZero ? 0 : _trainSigmas[0]);
        _orders = OrderList(inferenceSteps);
        _outputs = 0;
        return timesteps;
    }

    /// <summary>
    /// diffusers' <c>get_order_list</c>; <c>lower_order_final</c> is forced on for a step count the order does not divide,
    /// or a final σ of 0, where the last call is also made first order.
    /// </summary>
    private int[] OrderList(int steps)
    {
        bool lowerOrderFinal = _lowerOrderFinalConfigured || steps % _solverOrder != 0 || _finalZero;
        var orders = new List<int>(steps);
        if (_solverOrder == 1 || (_solverOrder == 2 && lowerOrderFinal && steps < 2))
        {
            for (int i = 0; i < steps; i++) orders.Add(1);
        }
        else if (_solverOrder == 2)
        {
            int groups = lowerOrderFinal ? (steps % 2 == 0 ? steps / 2 - 1 : steps / 2) : steps / 2;
            for (int g = 0; g < groups; g++) orders.AddRange([1, 2]);
            if (lowerOrderFinal) orders.AddRange(steps % 2 == 0 ? [1, 1] : [1]);
        }
        else
        {
            int groups = lowerOrderFinal ? (steps % 3 == 0 ? steps / 3 - 1 : steps / 3) : steps / 3;
            for (int g = 0; g < groups; g++) orders.AddRange([1, 2, 3]);
            if (lowerOrderFinal) orders.AddRange(steps % 3 == 0 ? [1, 2, 1] : steps % 3 == 1 ? [1] : [1, 2]);
        }
        var list = orders.Take(steps).ToArray();
        if (_finalZero && list.Length > 0) list[^1] = 1; // λ = +∞ at σ = 0: the last call is first order (diffusers does the same)
        return list;
    }

    /// <summary>Starts part-way down the schedule: the first groups are cut to the outputs the run has.</summary>
    public override void SetBeginIndex(int callIndex)
    {
        base.SetBeginIndex(callIndex);
        _outputs = 0;
    }

    /// <summary>
    /// The call's output is converted (x₀ for DPM-Solver++, ε for DPM-Solver) and joins the history; the order is the
    /// call's entry of <see cref="Orders"/>, cut to the outputs since the run began. Order 1 saves the sample and takes the
    /// first-order step from it; order k &gt; 1 integrates from the sample saved k − 1 calls ago (σ_s) to σ_{i+1} with
    /// the last k outputs: D0 = m_{k−1}, the divided differences D1 (midpoint: D1 at r₀ only) and D2, and the same
    /// φ-coefficients as the multistep solver (2211.01095 eqs. 9–10; 2206.00927 App. B).
    /// </summary>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        int i = StepIndex, len = sample.Length;
        if (_saved is null || _saved.Length != len)
        {
            if (_outputs > 0 && _saved is not null)
                throw new ArgumentException($"{Name}: the sample size changed from {_saved.Length} to {len} in the middle of a schedule.", nameof(sample));
            for (int k = 0; k < _history.Length; k++) _history[k] = new float[len];
            _saved = new float[len];
        }

        // Convert into the oldest slot, which becomes the newest.
        var converted = _history[2]!;
        (_history[2], _history[1], _history[0]) = (_history[1], _history[0], converted);
        var (alphaS, sigmaS) = VpSolverMath.AlphaSigma(_sigmas[i]);
        var (p, q) = VpSolverMath.Conversion(PredictionType, _plusPlus, alphaS, sigmaS);
        // m = p·F + q·x with x the sample the model saw (before this call's update).
        TensorPrimitives.Multiply(modelOutput, p, converted);
        if (q != 0) TensorPrimitives.MultiplyAdd(sample, q, converted, converted);
        _outputs++;

        int order = Math.Min(_orders[i], _outputs);
        if (order == 1) sample.CopyTo(_saved);

        // x_t = A·x_saved + c0·m0 + c1·m1 + c2·m2 (m0 newest), from σ_s = σ[i − order + 1] to σ_t = σ[i + 1].
        double sigmaT = _sigmas[i + 1], sigmaStart = _sigmas[i - order + 1];
        var (alphaT, sigmaTv) = VpSolverMath.AlphaSigma(sigmaT);
        var (alphaStart, sigmaStartV) = VpSolverMath.AlphaSigma(sigmaStart);
        double lambdaT = VpSolverMath.Lambda(sigmaT), lambdaStart = VpSolverMath.Lambda(sigmaStart);
        double h = lambdaT - lambdaStart;
        double a = _plusPlus ? sigmaTv / sigmaStartV : alphaT / alphaStart;
        // φ-terms: the D0 coefficient, the first-difference coefficient (midpoint, heun) and the second-difference one.
        double phi, psiMid, psi, omega;
        if (_plusPlus)
        {
            double em = Math.Exp(-h); // 0 at σ_t = 0
            phi = -alphaT * (em - 1);
            psiMid = -0.5 * alphaT * (em - 1);
            psi = alphaT * ((em - 1) / h + 1);
            omega = -alphaT * ((em - 1 + h) / (h * h) - 0.5);
        }
        else
        {
            double ep = Math.Exp(h);
            phi = -sigmaTv * (ep - 1);
            psiMid = -0.5 * sigmaTv * (ep - 1);
            psi = -sigmaTv * ((ep - 1) / h - 1);
            omega = -sigmaTv * ((ep - 1 - h) / (h * h) - 0.5);
        }

        // Coefficients over (m0, m1, m2) = the last three outputs, newest first.
        Span<double> c = stackalloc double[3];
        if (order == 1)
        {
            c[0] = phi;
        }
        else if (order == 2)
        {
            // D0 = m1 (at σ_s), D1 = (m0 − m1)/r0, r0 = (λ_{i} − λ_s)/h.
            double r0 = (VpSolverMath.Lambda(_sigmas[i]) - lambdaStart) / h;
            double d1 = _midpoint ? psiMid : psi;
            c[1] = phi - d1 / r0;
            c[0] = d1 / r0;
        }
        else
        {
            // D0 = m2 (at σ_s); D1_0 = (m1 − m2)/r1, D1_1 = (m0 − m2)/r0, r_k = (λ − λ_s)/h at calls i, i − 1;
            // D1 = (r0·D1_0 − r1·D1_1)/(r0 − r1), D2 = 2(D1_1 − D1_0)/(r0 − r1); midpoint uses D1_1 alone.
            double r0 = (VpSolverMath.Lambda(_sigmas[i]) - lambdaStart) / h, r1 = (VpSolverMath.Lambda(_sigmas[i - 1]) - lambdaStart) / h;
            Span<double> d10 = [0, 1 / r1, -1 / r1];
            Span<double> d11 = [1 / r0, 0, -1 / r0];
            c[2] = phi;
            for (int k = 0; k < 3; k++)
            {
                if (_midpoint)
                {
                    c[k] += psi * d11[k];
                }
                else
                {
                    double d1 = (r0 * d10[k] - r1 * d11[k]) / (r0 - r1), d2 = 2 * (d11[k] - d10[k]) / (r0 - r1);
                    c[k] += psi * d1 + omega * d2;
                }
            }
        }

        LatentKernels.AxPlusBy((float)a, _saved, (float)c[0], _history[0], sample);
        if (order >= 2) TensorPrimitives.MultiplyAdd(_history[1], (float)c[1], sample, sample);
        if (order >= 3) TensorPrimitives.MultiplyAdd(_history[2], (float)c[2], sample, sample);
        StepIndex++;
    }

    /// <summary>α_t·x₀ + σ_t·ε at model call <paramref name="callIndex"/> (diffusers <c>add_noise</c>).</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        SigmaSchedule.CheckNoiseLengths(original, noise, destination, Name);
        VpSolverMath.AddNoise(original, noise, _sigmas[callIndex], destination);
    }
}

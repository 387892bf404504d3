using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>UniPCMultistepScheduler</c>: the unified predictor–corrector of Zhao et al. 2023, "UniPC: A Unified
/// Predictor-Corrector Framework for Fast Sampling of Diffusion Models" (arXiv:2302.04867), with the B(h) variants
/// <c>bh1</c> (B(h) = h) and <c>bh2</c> (B(h) = e^h − 1). Each step first corrects the previous step's result with the
/// new model output (UniC), then predicts the next sample (UniP), so the corrector costs no extra model call.
/// Source: diffusers <c>src/diffusers/schedulers/scheduling_unipc_multistep.py</c>.
/// </summary>
/// <remarks>
/// <para>The solver works on the VP sample with α_t = 1/√(σ² + 1), σ_t = σ·α_t, λ = −log σ (σ the VE noise level), like
/// <see cref="DpmSolverMultistepScheduler"/>: no input scaling, initial noise N(0, 1), and the same integer timesteps.</para>
/// <para>Keys (diffusers defaults): <c>solver_order</c> (2; 1 to 3), <c>solver_type</c> (<c>bh2</c>; <c>midpoint</c>,
/// <c>heun</c> and <c>logrho</c> map to <c>bh2</c>, as in diffusers), <c>predict_x0</c> (true: data prediction;
/// false: noise prediction), <c>lower_order_final</c> (true), <c>disable_corrector</c> (steps whose result is not
/// corrected, []), <c>use_karras_sigmas</c>, <c>final_sigmas_type</c> (<c>zero</c> or <c>sigma_min</c>),
/// <c>timestep_spacing</c> (<c>linspace</c>), <c>steps_offset</c>, <c>rescale_betas_zero_snr</c>,
/// <c>prediction_type</c>. Not supported (<see cref="NotSupportedException"/>): <c>thresholding</c>,
/// <c>use_exponential_sigmas</c>, <c>use_beta_sigmas</c>, <c>use_flow_sigmas</c>, <c>use_dynamic_shifting</c>.</para>
/// <para>After the first <see cref="Step"/> at a sample size nothing is allocated: the history, the last sample and the
/// converted output live in buffers kept across steps.</para>
/// </remarks>
internal sealed class UniPcMultistepScheduler : DiffusionScheduler
{
    private readonly double[] _trainSigmas;
    private readonly int _solverOrder;
    private readonly bool _bh2, _predictX0, _lowerOrderFinal, _karras, _finalZero;
    private readonly HashSet<int> _disableCorrector;
    private double[] _sigmas = [];
    private readonly float[]?[] _history;  // converted outputs of earlier steps, newest first
    private float[]? _converted;           // this step's converted output until it joins the history
    private float[]? _lastSample;          // the sample the previous predictor started from (x_{t−1} of UniC)
    private bool _hasLastSample;
    private int _lowerOrderNums, _lastOrder;
    private readonly double[] _rho = new double[3];

    /// <summary>Builds the scheduler from a diffusers scheduler configuration.</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for an option this implementation lacks.</exception>
    public UniPcMultistepScheduler(SchedulerConfig config) : base(config)
    {
        SigmaSchedule.FloorZeroTerminalSnr(AlphasCumprod, config);
        _trainSigmas = SchedulerMath.Sigmas(AlphasCumprod);
        string where = $"(scheduler configuration '{config.Source ?? "(text)"}')";

        _solverOrder = SigmaSchedule.SolverOrder(config, Name, where);
        string solverType = config.GetString("solver_type", "bh2");
        if (solverType is "midpoint" or "heun" or "logrho") solverType = "bh2";
        if (solverType is not ("bh1" or "bh2"))
            throw new InvalidDataException($"{Name}: solver_type '{solverType}' is not one of bh1, bh2 {where}.");
        _bh2 = solverType == "bh2";
        _predictX0 = config.GetBool("predict_x0", true);
        _lowerOrderFinal = config.GetBool("lower_order_final", true);
        _karras = config.GetBool("use_karras_sigmas", false);
        _finalZero = SigmaSchedule.FinalSigmaIsZero(config, Name, where);
        if (!_predictX0 && _finalZero)
            throw new InvalidDataException($"{Name}: final_sigmas_type 'zero' needs predict_x0 true: noise prediction has no update to σ = 0 (λ = +∞; diffusers returns NaN there); set final_sigmas_type to 'sigma_min' {where}.");
        _disableCorrector = [];
        foreach (double step in config.GetDoubleArray("disable_corrector") ?? [])
        {
            if (step != Math.Floor(step) || step < 0 || step > int.MaxValue)
                throw new InvalidDataException($"{Name}: disable_corrector must list step indices (integers ≥ 0); it holds {step} {where}.");
            _disableCorrector.Add((int)step);
        }

        if (config.GetBool("thresholding", false))
            throw new NotSupportedException($"{Name}: 'thresholding: true' (dynamic thresholding, for pixel-space models) is not supported {where}.");
        SigmaSchedule.RejectFlags(config, Name, "use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting");
        SigmaSchedule.RequireMultistepSpacing(config, Name, where);
        _history = new float[]?[_solverOrder];
    }

    /// <inheritdoc />
    public override string Name => "UniPCMultistepScheduler";

    /// <summary>1: the solver works on the unscaled VP sample.</summary>
    public override float InitNoiseSigma => 1f;

    /// <summary>The VE noise level of each model call followed by the final one (0 or σ_min), as diffusers' <c>sigmas</c>.</summary>
    public ReadOnlySpan<double> Sigmas => _sigmas;

    /// <summary>The integer timesteps of <see cref="SigmaSchedule.MultistepTimesteps"/>; Karras σ are mapped back and rounded.</summary>
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        (var timesteps, _sigmas) = SigmaSchedule.MultistepSchedule(Config, NumTrainTimesteps, NumTrainTimesteps, inferenceSteps, _trainSigmas,
            _karras, roundKarras: true, finalSigma: _finalZero ? 0 : _trainSigmas[0]);
        ResetState();
        return timesteps;
    }

    /// <summary>Starts part-way down the schedule: no history, so the first step neither corrects nor goes above first order.</summary>
    public override void SetBeginIndex(int callIndex)
    {
        base.SetBeginIndex(callIndex);
        ResetState();
    }

    private void ResetState()
    {
        _lowerOrderNums = 0;
        _lastOrder = 0;
        _hasLastSample = false;
    }

    /// <summary>
    /// One UniPC step at call i (σ_i → σ_{i+1}). The model output is converted as DPM-Solver does (data prediction x₀
    /// with <c>predict_x0</c>, else noise ε) into m0. If a previous step ran and its index is not in
    /// <c>disable_corrector</c>, UniC-p (p the previous predictor's order) first replaces the sample: with
    /// h = λ_i − λ_{i−1}, r_k = (λ_{i−1−k} − λ_{i−1})/h, D_k = (m_k − m_prev)/r_k, it recomputes the previous step from the
    /// previous sample using also D_t = m0 − m_prev. Then UniP-q (q = min(solver_order, steps left with
    /// <c>lower_order_final</c>, steps taken + 1)) predicts σ_{i+1}: x_t = (σ_t/σ_s)·x − α_t·(e^{−h} − 1)·m0 −
    /// α_t·B(h)·Σ ρ_k·D_k (data prediction; with noise prediction α_t/α_s, σ_t and e^{h} − 1). The weights ρ solve
    /// R·ρ = b with R_{jk} = r_k^j and b_j = j!·φ_{j+1}(h)/B(h), φ built by the recursion of the paper's eq. 7 (predictor:
    /// without the last row and column, ρ = ½ at order 2; corrector: ρ = ½ at order 1).
    /// </summary>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        int i = StepIndex, len = sample.Length;
        if (_history[0] is null || _history[0]!.Length != len)
        {
            if (_lowerOrderNums > 0)
                throw new ArgumentException($"{Name}: the sample size changed from {_history[0]!.Length} to {len} in the middle of a schedule.", nameof(sample));
            for (int k = 0; k < _history.Length; k++) _history[k] = new float[len];
            _lastSample = new float[len];
            _converted = new float[len];
        }

        // Conversion e = P·F + Q·x (into the spare buffer: the corrector still reads every history entry).
        var (alphaS, sigmaS) = VpSolverMath.AlphaSigma(_sigmas[i]);
        var (p, q) = VpSolverMath.Conversion(PredictionType, _predictX0, alphaS, sigmaS);

        // UniC: correct the sample the previous predictor produced, with history h_k = the converted output k + 1 steps back:
        // x_c = a·x_last − scale·φ1·h0 − scale·B·(Σ_{k<p−1} ρ_k·(h_k − h0)/r_k + ρ_last·(e − h0)).
        bool correct = i > 0 && _hasLastSample && !_disableCorrector.Contains(i - 1);
        double cLast = 0, cNew = 0, ch0 = 0, ch1 = 0, ch2 = 0;
        int correctorOrder = correct ? _lastOrder : 0;
        if (correct)
        {
            double lambdaS0 = VpSolverMath.Lambda(_sigmas[i - 1]), h = VpSolverMath.Lambda(_sigmas[i]) - lambdaS0;
            var (alphaT, sigmaT) = VpSolverMath.AlphaSigma(_sigmas[i]);
            var (alphaS0, sigmaS0) = VpSolverMath.AlphaSigma(_sigmas[i - 1]);
            Span<double> r = stackalloc double[3];
            for (int k = 1; k < correctorOrder; k++) r[k - 1] = (VpSolverMath.Lambda(_sigmas[i - 1 - k]) - lambdaS0) / h;
            var (phi1, bh) = Weights(h, correctorOrder, r, corrector: true);
            double scale = _predictX0 ? alphaT : sigmaT;
            cLast = _predictX0 ? sigmaT / sigmaS0 : alphaT / alphaS0;
            cNew = -scale * bh * _rho[correctorOrder - 1];
            ch0 = -scale * phi1 - cNew;
            if (correctorOrder >= 2) { ch1 = -scale * bh * _rho[0] / r[0]; ch0 -= ch1; }
            if (correctorOrder >= 3) { ch2 = -scale * bh * _rho[1] / r[1]; ch0 -= ch2; }
        }

        int thisOrder = _lowerOrderFinal ? Math.Min(_solverOrder, CallCount - i) : _solverOrder;
        thisOrder = Math.Min(thisOrder, _lowerOrderNums + 1);
        if (_sigmas[i + 1] == 0) thisOrder = 1; // λ = +∞: the update is x₀ itself at any order (diffusers divides by r = 0 above order 1)

        // UniP from σ_i to σ_{i+1}, after e joins the history (so the older entries are today's h0, h1):
        // x' = a·x_c − scale·φ1·e − scale·B·Σ_{k<q} ρ_k·(h_{k−1} − e)/r_k.
        double px, pNew, ph0 = 0, ph1 = 0;
        {
            double lambdaS0 = VpSolverMath.Lambda(_sigmas[i]), h = VpSolverMath.Lambda(_sigmas[i + 1]) - lambdaS0;
            var (alphaT, sigmaT) = VpSolverMath.AlphaSigma(_sigmas[i + 1]);
            Span<double> r = stackalloc double[3];
            for (int k = 1; k < thisOrder; k++) r[k - 1] = (VpSolverMath.Lambda(_sigmas[i - k]) - lambdaS0) / h;
            var (phi1, bh) = Weights(h, thisOrder, r, corrector: false);
            double scale = _predictX0 ? alphaT : sigmaT;
            px = _predictX0 ? sigmaT / sigmaS : alphaT / alphaS;
            pNew = -scale * phi1;
            if (thisOrder >= 2) { ph0 = -scale * bh * _rho[0] / r[0]; pNew -= ph0; }
            if (thisOrder >= 3) { ph1 = -scale * bh * _rho[1] / r[1]; pNew -= ph1; }
        }

        // One pass over the latents: e, the corrected sample (kept as the next corrector's x_last), the prediction.
        var converted = _converted!;
        int histories = Math.Max(correctorOrder, thisOrder - 1);
        LatentKernels.UniPc(modelOutput, sample, _lastSample, converted, histories,
            histories >= 1 ? _history[0] : default, histories >= 2 ? _history[1] : default, histories >= 3 ? _history[2] : default,
            new LatentKernels.UniPcCoefficients(p, q, correct, (float)cLast, (float)cNew, (float)ch0, (float)ch1, (float)ch2,
                (float)px, (float)pNew, (float)ph0, (float)ph1));
        _hasLastSample = true;
        _lastOrder = thisOrder;

        // The converted output becomes the newest history entry; the dropped oldest is the next spare.
        var dropped = _history[^1];
        for (int k = _history.Length - 1; k > 0; k--) _history[k] = _history[k - 1];
        _history[0] = converted;
        _converted = dropped;

        if (_lowerOrderNums < _solverOrder) _lowerOrderNums++;
        StepIndex++;
    }

    /// <summary>
    /// e^{hh} − 1 (hh = −h for data prediction, h for noise prediction) and B(h), and the weights ρ in
    /// <see cref="_rho"/>: the predictor's order − 1 of them, the corrector's order.
    /// </summary>
    private (double Phi1, double B) Weights(double h, int order, ReadOnlySpan<double> r, bool corrector)
    {
        double hh = _predictX0 ? -h : h;
        double phi1 = Math.Exp(hh) - 1; // expm1; h is never tiny between distinct timesteps
        double b = _bh2 ? phi1 : hh;
        int size = corrector ? order : order - 1;
        if (size <= 0) return (phi1, b);
        if ((corrector && order == 1) || (!corrector && order == 2))
        {
            _rho[0] = 0.5;
            return (phi1, b);
        }
        // R (order × order): row j holds r_k^j over the nodes r_1 … r_{order−1}, 1; rhs b_j = j!·φ / B, φ by eq. 7's recursion.
        Span<double> matrix = stackalloc double[9];
        Span<double> rhs = stackalloc double[3];
        double hPhiK = phi1 / hh - 1, factorial = 1;
        for (int j = 0; j < size; j++)
        {
            for (int k = 0; k < size; k++)
            {
                double node = k < order - 1 ? r[k] : 1;
                matrix[j * size + k] = Math.Pow(node, j);
            }
            rhs[j] = hPhiK * factorial / b;
            factorial *= j + 2;
            hPhiK = hPhiK / hh - 1 / factorial;
        }
        Solve(matrix, rhs, size);
        for (int k = 0; k < size; k++) _rho[k] = rhs[k];
        return (phi1, b);
    }

    /// <summary>Gaussian elimination with partial pivoting on a size × size system (size ≤ 3), in place; the solution replaces <paramref name="rhs"/>.</summary>
    private static void Solve(Span<double> a, Span<double> rhs, int size)
    {
        for (int col = 0; col < size; col++)
        {
            int pivot = col;
            for (int row = col + 1; row < size; row++)
                if (Math.Abs(a[row * size + col]) > Math.Abs(a[pivot * size + col])) pivot = row;
            if (pivot != col)
            {
                for (int k = 0; k < size; k++) (a[col * size + k], a[pivot * size + k]) = (a[pivot * size + k], a[col * size + k]);
                (rhs[col], rhs[pivot]) = (rhs[pivot], rhs[col]);
            }
            for (int row = col + 1; row < size; row++)
            {
                double f = a[row * size + col] / a[col * size + col];
                for (int k = col; k < size; k++) a[row * size + k] -= f * a[col * size + k];
                rhs[row] -= f * rhs[col];
            }
        }
        for (int row = size - 1; row >= 0; row--)
        {
            double sum = rhs[row];
            for (int k = row + 1; k < size; k++) sum -= a[row * size + k] * rhs[k];
            rhs[row] = sum / a[row * size + row];
        }
    }

    /// <summary>α_t·x₀ + σ_t·ε at model call <paramref name="callIndex"/> (diffusers <c>add_noise</c>).</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        SigmaSchedule.CheckNoiseLengths(original, noise, destination, Name);
        VpSolverMath.AddNoise(original, noise, _sigmas[callIndex], destination);
    }
}

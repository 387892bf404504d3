using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// PNDM: Liu, Ren, Lin and Zhao 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"
/// (arXiv:2202.09778), as diffusers' <c>PNDMScheduler</c> (<c>schedulers/scheduling_pndm.py</c>): a linear
/// multistep method (PLMS, 4th-order Adams–Bashforth on ε̂, eq. 12) whose transfer step is the DDIM update
/// (eq. 9). The warm-up is either the pseudo Runge–Kutta steps (F-PNDM, eq. 13; <c>skip_prk_steps</c> false)
/// or, as Stable Diffusion 1.x configures, crowsonkb's PLMS warm-up: one Euler step, then a restart from the
/// same point with the average of the two ε̂ (<c>skip_prk_steps</c> true). Deterministic.
/// </summary>
/// <remarks>
/// <para>Class defaults, as in diffusers: β 0.0001 → 0.02 <c>linear</c>, <c>skip_prk_steps</c> false,
/// <c>set_alpha_to_one</c> false, <c>steps_offset</c> 0, <c>timestep_spacing</c> <c>leading</c>,
/// <c>prediction_type</c> <c>epsilon</c>. Steps go from t to t − N div n, as in diffusers.</para>
/// <para>Differences from diffusers: each model output is turned into ε̂ at the timestep and sample it was
/// evaluated at before it enters the multistep history (diffusers combines raw v-predictions and converts the
/// combination at the current timestep, which is only first-order accurate); for ε-prediction the two agree.
/// <c>sample</c> prediction, which diffusers rejects, is accepted through the same conversion. When
/// <see cref="DiffusionScheduler.SetBeginIndex"/> starts past the warm-up, the history restarts with
/// Adams–Bashforth of order 1, 2, 3, then 4 (diffusers would repeat the restart at the wrong timestep).</para>
/// <para>After the first <see cref="Step"/> at a given sample size nothing is allocated: the ε̂ history is a
/// ring of three buffers (the newest ε̂ overwrites the oldest in place).</para>
/// </remarks>
internal sealed class PndmScheduler : DiffusionScheduler
{
    /// <summary>diffusers' <c>pndm_order</c>: the history length of the 4th-order multistep.</summary>
    private const int PndmOrder = 4;

    /// <summary>
    /// Ring slots for past ε̂: a full-order step reads the last three and writes the new one over the oldest, in place,
    /// since the next step no longer needs it (the kernel reads every input at an index before storing there).
    /// </summary>
    private const int RingSlots = PndmOrder - 1;

    /// <summary>Adams–Bashforth weights for the newest-first history ε_n, ε_{n−1}, …, by order (PNDM eq. 12).</summary>
    private static readonly double[][] AdamsBashforth =
    [
        [1.0],
        [3.0 / 2, -1.0 / 2],
        [23.0 / 12, -16.0 / 12, 5.0 / 12],
        [55.0 / 24, -59.0 / 24, 37.0 / 24, -9.0 / 24],
    ];

    private readonly string _spacing;
    private readonly int _stepsOffset;
    private int[] _t = [];
    private int _prkCalls;   // leading Runge–Kutta calls in _t (12, or 0 with skip_prk_steps)
    private int _ratio;      // N div n: the PLMS step
    private int _halfRatio;  // N div n div 2: the Runge–Kutta half step

    private readonly float[]?[] _ets = new float[]?[RingSlots];
    private int _etsCount, _etsNewest;
    private float[]? _curSample, _rkSum, _work;

    /// <summary>Builds the scheduler from a diffusers configuration; missing keys take PNDMScheduler's defaults.</summary>
    /// <exception cref="InvalidDataException">A value is malformed or unknown.</exception>
    public PndmScheduler(SchedulerConfig config) : base(config)
    {
        SkipPrkSteps = config.GetBool("skip_prk_steps", false);
        _spacing = AlphaBarSampling.ReadSpacing(config, "leading");
        _stepsOffset = config.GetInt("steps_offset", 0);
        FinalAlphaCumprod = config.GetBool("set_alpha_to_one", false) ? 1.0 : AlphasCumprod[0];
    }

    /// <inheritdoc />
    public override string Name => "PNDMScheduler";

    /// <summary>Always 1: PNDM starts from x_T ~ N(0, I).</summary>
    public override float InitNoiseSigma => 1f;

    /// <summary>Whether the Runge–Kutta warm-up is skipped (<c>skip_prk_steps</c>; true for Stable Diffusion 1.x).</summary>
    public bool SkipPrkSteps { get; }

    /// <summary>ᾱ after the final step: 1 when <c>set_alpha_to_one</c>, else ᾱ_0 (the default, false).</summary>
    public double FinalAlphaCumprod { get; }

    /// <inheritdoc />
    /// <exception cref="ArgumentOutOfRangeException">Fewer than 4 steps with the Runge–Kutta warm-up, or timesteps outside the training range.</exception>
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        if (!SkipPrkSteps && inferenceSteps < PndmOrder)
            throw new ArgumentOutOfRangeException(nameof(inferenceSteps), inferenceSteps,
                $"{Name}: the Runge–Kutta warm-up (skip_prk_steps false) needs at least {PndmOrder} inference steps.");
        var desc = AlphaBarSampling.IntegerTimesteps(this, _spacing, inferenceSteps, _stepsOffset);
        int n = desc.Length;
        var asc = new int[n];
        for (int i = 0; i < n; i++) asc[i] = desc[n - 1 - i];
        _ratio = NumTrainTimesteps / inferenceSteps;
        _halfRatio = _ratio / 2;

        var calls = new List<int>(n + 3 * PndmOrder);
        if (SkipPrkSteps)
        {
            // diffusers: plms = concat(τ[:−1], τ[−2:−1], τ[−1:])[::−1] (τ ascending): the second-highest timestep
            // is visited twice, once by the Euler step and once by the restart. n + 1 calls (1 when n = 1).
            calls.Add(asc[n - 1]);
            if (n >= 2) calls.Add(asc[n - 2]);
            for (int i = n - 2; i >= 0; i--) calls.Add(asc[i]);
            _prkCalls = 0;
        }
        else
        {
            // diffusers: with the four highest timesteps a < b < c < d and h = N div n div 2,
            // x = [a, a+h, b, b+h, c, c+h, d, d+h]; prk = x[:−1].repeat(2)[1:−1][::−1]
            //   = [d, c+h, c+h, c, c, b+h, b+h, b, b, a+h, a+h, a]: three RK4 steps of four calls each.
            var x = new int[2 * PndmOrder];
            for (int j = 0; j < PndmOrder; j++)
            {
                x[2 * j] = asc[n - PndmOrder + j];
                x[2 * j + 1] = asc[n - PndmOrder + j] + _halfRatio;
            }
            var repeated = new List<int>(4 * PndmOrder);
            for (int j = 0; j < x.Length - 1; j++) { repeated.Add(x[j]); repeated.Add(x[j]); }
            for (int j = repeated.Count - 2; j >= 1; j--) calls.Add(repeated[j]);
            _prkCalls = calls.Count;
            // then plms = τ[:−3][::−1]: the multistep continues from a.
            for (int i = n - PndmOrder; i >= 0; i--) calls.Add(asc[i]);
        }
        _t = [.. calls];
        ResetState();
        return AlphaBarSampling.ToFloats(_t);
    }

    /// <summary>
    /// Where step i begins in the call list. With <c>skip_prk_steps</c> the PLMS warm-up visits the second timestep
    /// twice (calls 1 and 2), so step 0 is call 0 and step i ≥ 1 is call i + 1. With the Runge–Kutta warm-up,
    /// steps 0–2 take four calls each (calls 0, 4, 8) and step i ≥ 3 is call i + 9. (diffusers' image-to-image
    /// slices <c>timesteps[t_start:]</c> since PNDM's order is 1, which starts one timestep early past the
    /// warm-up; here a skipped step is skipped with its extra calls, so the kept steps and noise level agree with
    /// every other scheduler.)
    /// </summary>
    protected override int FirstCallOfStepCore(int step) =>
        SkipPrkSteps ? (step == 0 ? 0 : step + 1) : (step < 3 ? 4 * step : step + 9);

    /// <summary>
    /// Skips the first <paramref name="callIndex"/> calls. With <c>skip_prk_steps</c>, index 1 (the Euler point,
    /// whose timestep is visited again at index 2) moves to index 2, the same timestep. With the Runge–Kutta
    /// warm-up only the start of a Runge–Kutta step (0, 4, 8) or a multistep call may begin a run.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The index is out of range or inside a Runge–Kutta step.</exception>
    public override void SetBeginIndex(int callIndex)
    {
        if (callIndex > 0 && callIndex < _prkCalls && callIndex % 4 != 0)
            throw new ArgumentOutOfRangeException(nameof(callIndex), callIndex,
                $"{Name}: call {callIndex} lies inside a Runge–Kutta warm-up step; begin at 0, 4, 8 or from {_prkCalls} on.");
        if (SkipPrkSteps && callIndex == 1 && CallCount >= 3) callIndex = 2;
        base.SetBeginIndex(callIndex);
        ResetState();
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException"><see cref="DiffusionScheduler.SetTimesteps"/> was not called, or all calls are done.</exception>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        int len = sample.Length;
        for (int j = 0; j < RingSlots; j++) Scratch(ref _ets[j], len);
        var cur = Scratch(ref _curSample, len);
        var rkSum = Scratch(ref _rkSum, len);
        var work = Scratch(ref _work, len);

        int i = StepIndex, t = _t[i];
        double aT = AlphasCumprod[t];

        if (i < _prkCalls)
        {
            // F-PNDM warm-up (eq. 13), classical RK4 on ε̂ from the group's start point x_g at t_g:
            // stages at t_g, t_g − h, t_g − h, t_g − 2h; result x_g → t_g − 2h with ε' = (e₁ + 2e₂ + 2e₃ + e₄)/6.
            int k = i % 4, tg = _t[i - k];
            if (k == 0)
            {
                var e = PushEpsilon(modelOutput, sample, aT);
                TensorPrimitives.Multiply(e, 1f / 6, rkSum);
                sample.CopyTo(cur);
                Transfer(cur, tg, t - _halfRatio, e, sample);
            }
            else
            {
                AlphaBarSampling.ToEpsilon(PredictionType, aT, modelOutput, sample, work);
                if (k < 3)
                {
                    TensorPrimitives.MultiplyAdd(work, 1f / 3, rkSum, rkSum);
                    // diffusers: prev = t − (0 for odd calls, h for even ones), from the group start.
                    Transfer(cur, tg, k == 1 ? t : t - _halfRatio, work, sample);
                }
                else
                {
                    TensorPrimitives.MultiplyAdd(work, 1f / 6, rkSum, work);
                    Transfer(cur, tg, t, work, sample);
                }
            }
        }
        else if (SkipPrkSteps && i == 0)
        {
            // PLMS warm-up, first call: Euler (DDIM) step t → t − r with e₀; remember x_t.
            var e = PushEpsilon(modelOutput, sample, aT);
            sample.CopyTo(cur);
            Transfer(cur, t, t - _ratio, e, sample);
        }
        else if (SkipPrkSteps && i == 1)
        {
            // PLMS warm-up, second call at t − r: restart from the remembered x_t with ε' = (e₀ + e₁)/2
            // (a 2nd-order, Heun-like step); e₁ stays out of the history, as in diffusers.
            AlphaBarSampling.ToEpsilon(PredictionType, aT, modelOutput, sample, work);
            TensorPrimitives.Add(work, Newest(0), work);
            TensorPrimitives.Multiply(work, 0.5f, work);
            Transfer(cur, Math.Min(t + _ratio, NumTrainTimesteps - 1), t, work, sample);
        }
        else
        {
            // PLMS (eq. 12): ε' = Adams–Bashforth over the last min(count, 4) ε̂, then the transfer t → t − r,
            // in one pass over the latents (the new ε̂ goes into the next ring slot on the way).
            _etsNewest = (_etsNewest + 1) % RingSlots; // the new ε̂'s slot holds the oldest, Newest(3), until the kernel overwrites it
            if (_etsCount < PndmOrder) _etsCount++;
            var w = AdamsBashforth[_etsCount - 1];
            var (p, q) = EpsilonCoefficients(aT);
            var (sampleCoeff, epsCoeff) = TransferCoefficients(t, t - _ratio);
            LatentKernels.Plms(modelOutput, sample, _ets[_etsNewest], p, q, (float)w[0], w.Length - 1,
                w.Length > 1 ? Newest(1) : default, w.Length > 1 ? (float)w[1] : 0,
                w.Length > 2 ? Newest(2) : default, w.Length > 2 ? (float)w[2] : 0,
                w.Length > 3 ? Newest(3) : default, w.Length > 3 ? (float)w[3] : 0,
                (float)sampleCoeff, (float)-epsCoeff);
        }
        StepIndex++;
    }

    /// <inheritdoc />
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination) =>
        AlphaBarSampling.AddNoise(this, original, noise, callIndex, destination);

    /// <summary>
    /// PNDM eq. 9, the transfer φ(x_t, ε, t, t − δ) (diffusers <c>_get_prev_sample</c>):
    /// x_{t−δ} = √(ᾱ_{t−δ}/ᾱ_t)·x_t − (ᾱ_{t−δ} − ᾱ_t)·ε / (ᾱ_t·√(1 − ᾱ_{t−δ}) + √(ᾱ_t(1 − ᾱ_t)ᾱ_{t−δ})),
    /// algebraically the DDIM (η = 0) step; ᾱ below t = 0 is <see cref="FinalAlphaCumprod"/>.
    /// </summary>
    private void Transfer(ReadOnlySpan<float> from, int t, int tPrev, ReadOnlySpan<float> eps, Span<float> destination)
    {
        var (sampleCoeff, epsCoeff) = TransferCoefficients(t, tPrev);
        LatentKernels.AxPlusBy((float)sampleCoeff, from, (float)-epsCoeff, eps, destination);
    }

    /// <summary>The two coefficients of <see cref="Transfer"/>: √(ᾱ_{t−δ}/ᾱ_t) and the ε coefficient (subtracted).</summary>
    private (double Sample, double Epsilon) TransferCoefficients(int t, int tPrev)
    {
        double a = AlphasCumprod[t], ap = tPrev >= 0 ? AlphasCumprod[tPrev] : FinalAlphaCumprod;
        return (Math.Sqrt(ap / a), (ap - a) / (a * Math.Sqrt(1 - ap) + Math.Sqrt(a * (1 - a) * ap)));
    }

    /// <summary>ε̂ = q·x + p·F for the model output F at ᾱ (p = 1, q = 0 for ε-prediction).</summary>
    private (float P, float Q) EpsilonCoefficients(double alphaBar)
    {
        if (PredictionType == PredictionType.Epsilon) return (1f, 0f);
        var (_, _, a1, b1) = AlphaBarSampling.Decompose(PredictionType, alphaBar);
        return ((float)b1, (float)a1);
    }

    /// <summary>Converts the model output at (x, ᾱ_t) to ε̂ into the next ring slot and returns it.</summary>
    private float[] PushEpsilon(ReadOnlySpan<float> modelOutput, ReadOnlySpan<float> sample, double alphaBar)
    {
        _etsNewest = (_etsNewest + 1) % RingSlots;
        var slot = _ets[_etsNewest]!;
        AlphaBarSampling.ToEpsilon(PredictionType, alphaBar, modelOutput, sample, slot);
        if (_etsCount < PndmOrder) _etsCount++;
        return slot;
    }

    /// <summary>The history entry <paramref name="age"/> steps old (0 = newest).</summary>
    private float[] Newest(int age) => _ets[(_etsNewest - age + RingSlots) % RingSlots]!;

    private void ResetState()
    {
        _etsCount = 0;
        _etsNewest = RingSlots - 1;
    }
}

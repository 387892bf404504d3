using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// DDIM: Song, Meng and Ermon 2021, "Denoising Diffusion Implicit Models" (arXiv:2010.02502), as diffusers'
/// <c>DDIMScheduler</c> (<c>schedulers/scheduling_ddim.py</c>). With <see cref="Eta"/> = 0 (the default) it is
/// the deterministic first-order sampler of the probability-flow ODE; η = 1 gives DDPM's ancestral noise.
/// </summary>
/// <remarks>
/// Class defaults, as in diffusers: β 0.0001 → 0.02 <c>linear</c>, <c>clip_sample</c> true,
/// <c>clip_sample_range</c> 1, <c>set_alpha_to_one</c> true, <c>steps_offset</c> 0,
/// <c>timestep_spacing</c> <c>leading</c>, <c>prediction_type</c> <c>epsilon</c>.
/// As in diffusers, the step always goes from t to t − N div n (N training steps, n inference steps), also for
/// <c>linspace</c> and <c>trailing</c> spacing where that can differ by one from the next listed timestep.
/// Dynamic thresholding is not supported; a configuration that enables it is rejected.
/// </remarks>
internal sealed class DdimScheduler : DiffusionScheduler
{
    private readonly double _clipRange;
    private readonly string _spacing;
    private readonly int _stepsOffset;
    private int[] _t = [];
    private float[]? _noise;
    private double _eta;

    /// <summary>Builds the scheduler from a diffusers configuration; missing keys take DDIMScheduler's defaults.</summary>
    /// <exception cref="InvalidDataException">A value is malformed or unknown.</exception>
    /// <exception cref="NotSupportedException">The configuration enables <c>thresholding</c>.</exception>
    public DdimScheduler(SchedulerConfig config) : base(config)
    {
        AlphaBarSampling.RejectThresholding(config, Name);
        _clipRange = AlphaBarSampling.ReadClipRange(config, clipDefault: true);
        _spacing = AlphaBarSampling.ReadSpacing(config, "leading");
        _stepsOffset = config.GetInt("steps_offset", 0);
        // "set_alpha_to_one": the ᾱ used after the last step, 1 (a clean sample) or ᾱ_0.
        FinalAlphaCumprod = config.GetBool("set_alpha_to_one", true) ? 1.0 : AlphasCumprod[0];
    }

    /// <inheritdoc />
    public override string Name => "DDIMScheduler";

    /// <summary>True when <see cref="Eta"/> &gt; 0: each step then adds σ_t(η)·z.</summary>
    public override bool IsStochastic => _eta > 0;

    /// <summary>Always 1: DDIM starts from x_T ~ N(0, I).</summary>
    public override float InitNoiseSigma => 1f;

    /// <summary>
    /// η of DDIM eq. 16, the weight of fresh noise: 0 (default) is deterministic DDIM, 1 is the DDPM posterior
    /// variance. Values above 1 are allowed, with the direction coefficient √(1 − ᾱ_prev − σ²) floored at 0.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative or not finite.</exception>
    public double Eta
    {
        get => _eta;
        set
        {
            if (!double.IsFinite(value) || value < 0)
                throw new ArgumentOutOfRangeException(nameof(value), value, "DDIMScheduler: eta must be a finite number ≥ 0.");
            _eta = value;
        }
    }

    /// <summary>ᾱ after the final step: 1 when <c>set_alpha_to_one</c> (default true), else ᾱ_0.</summary>
    public double FinalAlphaCumprod { get; }

    /// <inheritdoc />
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        _t = AlphaBarSampling.IntegerTimesteps(this, _spacing, inferenceSteps, _stepsOffset);
        return AlphaBarSampling.ToFloats(_t);
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException"><see cref="DiffusionScheduler.SetTimesteps"/> was not called, or all calls are done.</exception>
    /// <exception cref="ArgumentNullException"><see cref="Eta"/> &gt; 0 and <paramref name="noise"/> is null.</exception>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        var source = _eta > 0 ? RequireNoise(noise) : null;

        int t = _t[StepIndex];
        int prev = t - NumTrainTimesteps / InferenceSteps;
        double a = AlphasCumprod[t], ap = prev >= 0 ? AlphasCumprod[prev] : FinalAlphaCumprod;

        // DDIM eq. 16: σ_t(η) = η·√((1 − ᾱ_prev)/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev)   (diffusers _get_variance)
        double sigma = _eta * Math.Sqrt((1 - ap) / (1 - a) * (1 - a / ap));
        // DDIM eq. 12: x_prev = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ_t²)·ε̂ + σ_t·z, with x̂₀ clipped when clip_sample.
        AlphaBarSampling.Combine(PredictionType, a, modelOutput, sample, _clipRange,
            Math.Sqrt(ap), Math.Sqrt(Math.Max(1 - ap - sigma * sigma, 0)), 0);
        if (source is not null)
        {
            var z = Scratch(ref _noise, sample.Length);
            source.Fill(z);
            TensorPrimitives.MultiplyAdd(z, (float)sigma, sample, sample);
        }
        StepIndex++;
    }

    /// <inheritdoc />
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination) =>
        AlphaBarSampling.AddNoise(this, original, noise, callIndex, destination);
}

using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>FlowMatchEulerDiscreteScheduler</c>, the sampler of Stable Diffusion 3/3.5 and FLUX.1: Euler steps of
/// the rectified-flow ODE dx/dσ = v along x_σ = (1 − σ)·x₀ + σ·ε, where the model predicts the velocity v = ε − x₀
/// (Lipman et al. 2023, "Flow Matching for Generative Modeling"; Esser et al. 2024, "Scaling Rectified Flow
/// Transformers for High-Resolution Image Synthesis", whose timestep shift this applies).
/// Source: diffusers <c>src/diffusers/schedulers/scheduling_flow_match_euler_discrete.py</c> and the SD3/FLUX pipelines.
/// </summary>
/// <remarks>
/// <para>The schedule, as diffusers builds it: the training σ are N/N … 1/N (float32), shifted once at set-up
/// (σ' = s·σ/(1 + (s − 1)·σ), float32) unless the shift is dynamic; <c>set_timesteps</c> spaces n timesteps linearly
/// from 1000·σ_max to 1000·σ_min (float64) and applies the shift again — so σ_min is shifted twice, a diffusers quirk
/// kept here because the released models were tuned on it. With <c>use_dynamic_shifting</c> (FLUX.1-dev) the shift
/// is σ' = e^μ / (e^μ + (1/σ − 1)) (or μ / (μ + (1/σ − 1)) for <c>time_shift_type: linear</c>) with μ from the image's
/// token count (<see cref="ResolutionShift"/>), and the FLUX pipeline passes σ = linspace(1, 1/n, n) itself
/// (<see cref="UsePipelineSigmas"/>, float32). <c>shift_terminal</c> stretches the schedule to end at that σ. The
/// timesteps are 1000·σ (float32); a final σ of 0 follows the last call.</para>
/// <para>Not supported (throw <see cref="NotSupportedException"/>): <c>invert_sigmas</c>, <c>stochastic_sampling</c>,
/// <c>use_karras_sigmas</c>, <c>use_exponential_sigmas</c>, <c>use_beta_sigmas</c>. The β table of the base class is
/// computed from its defaults and unused: flow matching has no ᾱ.</para>
/// </remarks>
internal sealed class FlowMatchEulerDiscreteScheduler : DiffusionScheduler
{
    private readonly double _shift;
    private readonly bool _dynamicShifting;
    private readonly bool _linearTimeShift;
    private readonly double? _shiftTerminal;
    private readonly float _sigmaMax, _sigmaMin;
    private float[] _sigmas = [];
    private double? _mu;

    /// <summary>Builds the scheduler from a diffusers scheduler configuration.</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for an option this implementation lacks.</exception>
    public FlowMatchEulerDiscreteScheduler(SchedulerConfig config) : base(config)
    {
        SigmaSchedule.RejectFlags(config, Name, "invert_sigmas", "stochastic_sampling", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas");
        _shift = config.GetDouble("shift", 1.0);
        if (!(_shift > 0)) throw new InvalidDataException($"{Name}: shift must be positive (got {_shift}).");
        _dynamicShifting = config.GetBool("use_dynamic_shifting", false);
        _linearTimeShift = SigmaSchedule.RequireOneOf(config, Name, "time_shift_type", "exponential", "exponential", "linear") == "linear";
        _shiftTerminal = config.Contains("shift_terminal") ? config.GetDouble("shift_terminal", 0) : null;
        if (_shiftTerminal is { } terminal && !(terminal is >= 0 and < 1))
            throw new InvalidDataException($"{Name}: shift_terminal must be in [0, 1) (got {terminal}).");

        // The training sigmas N/N … 1/N in float32, shifted once unless the shift is dynamic; their ends bound set_timesteps.
        int n = NumTrainTimesteps;
        _sigmaMax = TrainSigma(n, n);
        _sigmaMin = TrainSigma(1, n);
    }

    /// <inheritdoc />
    public override string Name => "FlowMatchEulerDiscreteScheduler";

    /// <summary>1: the initial latents are pure noise (σ = 1).</summary>
    public override float InitNoiseSigma => 1f;

    /// <summary>The noise level σ of each model call followed by the final 0, as diffusers' <c>sigmas</c>.</summary>
    public ReadOnlySpan<float> Sigmas => _sigmas;

    /// <summary>Whether the shift depends on the image size (<c>use_dynamic_shifting</c>): set <see cref="Mu"/> first.</summary>
    public bool UsesDynamicShifting => _dynamicShifting;

    /// <summary>
    /// The dynamic shift μ for the next <see cref="DiffusionScheduler.SetTimesteps"/> (diffusers' <c>mu</c>), usually
    /// <see cref="ResolutionShift"/> of the image's token count. Ignored when the shift is static.
    /// </summary>
    public double? Mu
    {
        get => _mu;
        set => _mu = value is { } m && !double.IsFinite(m) ? throw new ArgumentOutOfRangeException(nameof(value), m, $"{Name}: μ must be finite.") : value;
    }

    /// <summary>
    /// Whether <see cref="DiffusionScheduler.SetTimesteps"/> uses FLUX's σ = linspace(1, 1/n, n) (the FLUX pipelines
    /// pass these to diffusers' <c>set_timesteps</c>) instead of spacing the training schedule's ends.
    /// </summary>
    public bool UsePipelineSigmas { get; set; }

    /// <summary>
    /// μ for an image of <paramref name="imageTokens"/> latent tokens (2×2 patches): diffusers' <c>calculate_shift</c>,
    /// linear from <c>base_shift</c> (0.5) at <c>base_image_seq_len</c> (256) to <c>max_shift</c> (1.15) at
    /// <c>max_image_seq_len</c> (4096), read from the configuration as the FLUX and SD3 pipelines do.
    /// </summary>
    public double ResolutionShift(int imageTokens)
    {
        double baseLen = Config.GetDouble("base_image_seq_len", 256), maxLen = Config.GetDouble("max_image_seq_len", 4096);
        double baseShift = Config.GetDouble("base_shift", 0.5), maxShift = Config.GetDouble("max_shift", 1.15);
        double m = (maxShift - baseShift) / (maxLen - baseLen);
        double b = baseShift - m * baseLen;
        return imageTokens * m + b;
    }

    /// <inheritdoc />
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        if (_dynamicShifting && _mu is null)
            throw new InvalidOperationException($"{Name}: use_dynamic_shifting is set, so μ (the image-size shift) must be given before SetTimesteps.");
        float[] sigmas = UsePipelineSigmas ? PipelineSigmas(inferenceSteps) : SpacedSigmas(inferenceSteps);
        var timesteps = new float[inferenceSteps];
        for (int i = 0; i < inferenceSteps; i++) timesteps[i] = sigmas[i] * NumTrainTimesteps;
        _sigmas = [.. sigmas, 0f];
        return timesteps;
    }

    /// <summary>The default path: linspace(1000·σ_max, 1000·σ_min, n)/1000 shifted, in float64, then float32.</summary>
    private float[] SpacedSigmas(int steps)
    {
        double start = (double)_sigmaMax * NumTrainTimesteps, stop = (double)_sigmaMin * NumTrainTimesteps;
        var sigmas = new double[steps];
        double step = steps > 1 ? (stop - start) / (steps - 1) : 0;
        for (int i = 0; i < steps; i++) sigmas[i] = (i == steps - 1 && steps > 1 ? stop : i * step + start) / NumTrainTimesteps;
        for (int i = 0; i < steps; i++)
            sigmas[i] = _dynamicShifting ? TimeShift(_mu!.Value, sigmas[i]) : _shift * sigmas[i] / (1 + (_shift - 1) * sigmas[i]);
        if (_shiftTerminal is { } terminal) StretchToTerminal(sigmas, terminal);
        return Array.ConvertAll(sigmas, s => (float)s);
    }

    /// <summary>FLUX's path: σ = linspace(1, 1/n, n) cast to float32, shifted and stretched in float32.</summary>
    private float[] PipelineSigmas(int steps)
    {
        var sigmas = new float[steps];
        double start = 1.0, stop = 1.0 / steps, step = steps > 1 ? (stop - start) / (steps - 1) : 0;
        for (int i = 0; i < steps; i++) sigmas[i] = (float)(i == steps - 1 && steps > 1 ? stop : i * step + start);
        for (int i = 0; i < steps; i++)
        {
            if (_dynamicShifting)
            {
                float e = (float)(_linearTimeShift ? _mu!.Value : Math.Exp(_mu!.Value));
                sigmas[i] = e / (e + (1f / sigmas[i] - 1f));
            }
            else sigmas[i] = (float)_shift * sigmas[i] / (1f + ((float)_shift - 1f) * sigmas[i]);
        }
        if (_shiftTerminal is { } terminal)
        {
            float scale = (1f - sigmas[^1]) / (1f - (float)terminal);
            for (int i = 0; i < steps; i++) sigmas[i] = 1f - (1f - sigmas[i]) / scale;
        }
        return sigmas;
    }

    /// <summary>diffusers' <c>time_shift</c> with exponent 1: e^μ/(e^μ + (1/σ − 1)), or μ/(μ + (1/σ − 1)) when linear.</summary>
    private double TimeShift(double mu, double sigma)
    {
        double a = _linearTimeShift ? mu : Math.Exp(mu);
        return a / (a + (1 / sigma - 1));
    }

    /// <summary>diffusers' <c>stretch_shift_to_terminal</c>: rescales 1 − σ so that the last σ equals <paramref name="terminal"/>.</summary>
    private static void StretchToTerminal(double[] sigmas, double terminal)
    {
        double scale = (1 - sigmas[^1]) / (1 - terminal);
        for (int i = 0; i < sigmas.Length; i++) sigmas[i] = 1 - (1 - sigmas[i]) / scale;
    }

    /// <summary>Training σ = k/N in float32, shifted in float32 when the shift is static (diffusers' <c>__init__</c>).</summary>
    private float TrainSigma(int k, int n)
    {
        float sigma = (float)k / n;
        if (_dynamicShifting) return sigma;
        float s = (float)_shift;
        return s * sigma / (1f + (s - 1f) * sigma);
    }

    /// <summary>x ← x + (σ_next − σ)·v (float32, as diffusers' <c>step</c>).</summary>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        float dt = _sigmas[StepIndex + 1] - _sigmas[StepIndex];
        for (int i = 0; i < sample.Length; i++) sample[i] += dt * modelOutput[i];
        StepIndex++;
    }

    /// <summary>diffusers' <c>scale_noise</c>: σ·ε + (1 − σ)·x₀ with σ of model call <paramref name="callIndex"/>.</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        if (original.Length != noise.Length || destination.Length != original.Length)
            throw new ArgumentException($"{Name}: the sample ({original.Length}), noise ({noise.Length}) and destination ({destination.Length}) lengths differ.");
        float sigma = _sigmas[callIndex], keep = 1f - sigma;
        for (int i = 0; i < destination.Length; i++) destination[i] = sigma * noise[i] + keep * original[i];
    }
}

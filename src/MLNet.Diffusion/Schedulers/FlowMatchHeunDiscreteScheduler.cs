using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// diffusers' <c>FlowMatchHeunDiscreteScheduler</c>: Heun's second-order method on the rectified-flow ODE dx/dσ = v
/// (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models", Algorithm 1 with no churn),
/// for velocity-predicting transformers (SD3, FLUX.1). Each step but the last costs two model calls: a first-order call
/// x' = x + v(x, σ)·(σ_next − σ), then a correction at σ_next that steps from x with the mean of the two velocities; the
/// last step, to σ = 0, is the first-order call alone (2n − 1 calls for n steps).
/// Source: diffusers <c>src/diffusers/schedulers/scheduling_flow_match_heun_discrete.py</c>.
/// </summary>
/// <remarks>
/// The σ schedule is <see cref="FlowMatchEulerDiscreteScheduler"/>'s with a static shift (diffusers' Heun class has no
/// dynamic shifting, terminal stretch or other σ spacings: those keys of a folder's configuration are ignored, as its
/// <c>from_config</c> ignores them); each σ after the first is repeated for the correction call, as the timesteps are.
/// </remarks>
internal sealed class FlowMatchHeunDiscreteScheduler : DiffusionScheduler
{
    private readonly SchedulerConfig _eulerConfig;
    private float[] _sigmas = [];                // one per step, then 0
    private float[]? _firstSample, _firstDerivative;

    /// <summary>Builds the scheduler from a diffusers scheduler configuration (its <c>shift</c> and training steps).</summary>
    /// <exception cref="InvalidDataException">A key has a value diffusers rejects.</exception>
    public FlowMatchHeunDiscreteScheduler(SchedulerConfig config) : base(config)
    {
        _eulerConfig = config.With(("use_dynamic_shifting", false), ("shift_terminal", null), ("invert_sigmas", false), ("stochastic_sampling", false),
            ("use_karras_sigmas", false), ("use_exponential_sigmas", false), ("use_beta_sigmas", false));
        _ = new FlowMatchEulerDiscreteScheduler(_eulerConfig); // the shift is checked now
    }

    /// <inheritdoc />
    public override string Name => "FlowMatchHeunDiscreteScheduler";

    /// <summary>1: the initial latents are pure noise (σ = 1).</summary>
    public override float InitNoiseSigma => 1f;

    /// <summary>The σ of each step followed by the final 0 (not repeated per call).</summary>
    public ReadOnlySpan<float> Sigmas => _sigmas;

    internal override int Order => 2;

    /// <inheritdoc />
    protected override float[] ComputeTimesteps(int inferenceSteps)
    {
        var euler = new FlowMatchEulerDiscreteScheduler(_eulerConfig);
        euler.SetTimesteps(inferenceSteps);
        _sigmas = euler.Sigmas.ToArray();
        // diffusers: cat([t[:1], t[1:].repeat_interleave(2)]).
        var calls = new float[2 * inferenceSteps - 1];
        calls[0] = euler.Timesteps[0];
        for (int i = 1; i < inferenceSteps; i++) calls[2 * i - 1] = calls[2 * i] = euler.Timesteps[i];
        return calls;
    }

    /// <inheritdoc />
    protected override int FirstCallOfStepCore(int step) => 2 * step;

    /// <inheritdoc />
    public override void SetBeginIndex(int callIndex)
    {
        if (callIndex % 2 != 0 && callIndex != CallCount)
            throw new ArgumentOutOfRangeException(nameof(callIndex), callIndex, $"{Name}: the begin index must be even (the first call of a step).");
        base.SetBeginIndex(callIndex);
    }

    /// <summary>The σ of model call <paramref name="call"/>: a step's σ at its first call, σ_next at its correction.</summary>
    private float CallSigma(int call) => _sigmas[(call + 1) / 2];

    /// <summary>
    /// A first-order call: d = (x − (x − v·σ))/σ, x ← x + d·(σ_next − σ), keeping x and d; a correction call:
    /// d₂ = (x − (x − v·σ_next))/σ_next, x ← x_kept + ½(d + d₂)·(σ_next − σ). The derivative is diffusers'
    /// (x − denoised)/σ with denoised = x − v·σ, computed in float32 in that order, so the result is theirs to the bit
    /// (with no churn it equals v up to rounding).
    /// </summary>
    public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null)
    {
        EnsureStepping();
        CheckLengths(modelOutput, sample);
        int call = StepIndex, i = call / 2;
        float sigma = _sigmas[i], sigmaNext = _sigmas[i + 1], dt = sigmaNext - sigma;
        if (call % 2 == 0)
        {
            var kept = Scratch(ref _firstSample, sample.Length);
            var derivative = Scratch(ref _firstDerivative, sample.Length);
            sample.CopyTo(kept);
            for (int k = 0; k < sample.Length; k++)
            {
                float denoised = sample[k] - modelOutput[k] * sigma;
                derivative[k] = (sample[k] - denoised) / sigma;
                sample[k] += derivative[k] * dt;
            }
        }
        else
        {
            if (_firstSample is null || _firstDerivative is null || _firstSample.Length != sample.Length)
                throw new InvalidOperationException($"{Name}: the correction call of a step came without its first call at this sample size.");
            for (int k = 0; k < sample.Length; k++)
            {
                float denoised = sample[k] - modelOutput[k] * sigmaNext;
                float mean = 0.5f * (_firstDerivative[k] + (sample[k] - denoised) / sigmaNext);
                sample[k] = _firstSample[k] + mean * dt;
            }
        }
        StepIndex++;
    }

    /// <summary>diffusers' <c>scale_noise</c>: σ·ε + (1 − σ)·x₀ with the σ of model call <paramref name="callIndex"/>.</summary>
    public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination)
    {
        SigmaSchedule.CheckCallIndex(callIndex, CallCount, Name);
        if (original.Length != noise.Length || destination.Length != original.Length)
            throw new ArgumentException($"{Name}: the sample ({original.Length}), noise ({noise.Length}) and destination ({destination.Length}) lengths differ.");
        float sigma = CallSigma(callIndex), keep = 1f - sigma;
        for (int k = 0; k < destination.Length; k++) destination[k] = sigma * noise[k] + keep * original[k];
    }
}

using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// The shape that every scheduler shares, after diffusers' <c>SchedulerMixin</c>:
/// <see cref="SetTimesteps"/> chooses the model calls, then for each entry of <see cref="Timesteps"/> the
/// pipeline calls <see cref="ScaleModelInput"/>, runs the UNet at that timestep and hands its output to
/// <see cref="Step"/>, which moves the sample to the next noise level.
/// </summary>
/// <remarks>
/// Spans hold a whole batch of latents, image after image ([B, C, H, W] flattened); all images of a batch
/// share the timestep, so every update is element-wise. <see cref="Step"/> updates the sample in place and,
/// after the first call at a given size, allocates nothing.
/// </remarks>
public abstract class DiffusionScheduler
{
    private float[] _timesteps = [];

    /// <summary>Builds the training noise schedule from <paramref name="config"/>.</summary>
    protected DiffusionScheduler(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        NumTrainTimesteps = SchedulerMath.TrainTimesteps(config);
        Betas = SchedulerMath.Betas(config, NumTrainTimesteps);
        AlphasCumprod = SchedulerMath.AlphasCumprod(Betas);
        PredictionType = SchedulerMath.ParsePredictionType(config);
    }

    /// <summary>The configuration the scheduler was built from.</summary>
    public SchedulerConfig Config { get; }

    /// <summary>The diffusers class name this scheduler implements (for example <c>EulerDiscreteScheduler</c>).</summary>
    public abstract string Name { get; }

    /// <summary>Whether <see cref="Step"/> draws fresh noise (and so needs a noise source).</summary>
    public virtual bool IsStochastic => false;

    /// <summary>The number of diffusion steps the model was trained with (<c>num_train_timesteps</c>).</summary>
    public int NumTrainTimesteps { get; }

    /// <summary>β_t for t = 0 … <see cref="NumTrainTimesteps"/> − 1.</summary>
    public double[] Betas { get; }

    /// <summary>ᾱ_t = Π_{s ≤ t} (1 − β_s).</summary>
    public double[] AlphasCumprod { get; }

    /// <summary>What the model predicts: ε, the clean sample, or v.</summary>
    public PredictionType PredictionType { get; }

    /// <summary>The timestep of each model call, in call order, set by <see cref="SetTimesteps"/>.
    /// Second-order schedulers (Heun, KDPM2) and PNDM's warm-up call the model more than once per step,
    /// so this can be longer than the number of inference steps.</summary>
    public ReadOnlySpan<float> Timesteps => _timesteps;

    /// <summary>The number of model calls, i.e. the length of <see cref="Timesteps"/>.</summary>
    public int CallCount => _timesteps.Length;

    /// <summary>
    /// diffusers' <c>order</c>: 2 for the second-order schedulers whose <see cref="Timesteps"/> list two model calls per
    /// inference step after the first (Heun, KDPM2), 1 for all others (PNDM's extra warm-up call included, as in diffusers).
    /// The refiner hand-off (<see cref="DenoisingSplit"/>) reads it.
    /// </summary>
    internal virtual int Order => 1;

    /// <summary>The number of inference steps last passed to <see cref="SetTimesteps"/>.</summary>
    public int InferenceSteps { get; private set; }

    /// <summary>The index in <see cref="Timesteps"/> of the next model call.</summary>
    public int StepIndex { get; protected set; }

    /// <summary>The standard deviation of the initial noise: initial latents are N(0, 1) times this.</summary>
    public abstract float InitNoiseSigma { get; }

    /// <summary>Chooses the timesteps for <paramref name="inferenceSteps"/> steps and resets all state.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The step count is below 1 or above the training steps.</exception>
    public void SetTimesteps(int inferenceSteps)
    {
        if (inferenceSteps < 1 || inferenceSteps > NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(inferenceSteps), inferenceSteps,
                $"{Name}: the number of inference steps must be between 1 and num_train_timesteps ({NumTrainTimesteps}).");
        // Compute first: a step count the subclass rejects leaves the previous state intact.
        var timesteps = ComputeTimesteps(inferenceSteps);
        _timesteps = timesteps;
        InferenceSteps = inferenceSteps;
        StepIndex = 0;
    }

    /// <summary>
    /// Skips the first <paramref name="callIndex"/> model calls (image-to-image starts part-way down the
    /// schedule). Call after <see cref="SetTimesteps"/>.
    /// </summary>
    public virtual void SetBeginIndex(int callIndex)
    {
        if (callIndex < 0 || callIndex > _timesteps.Length)
            throw new ArgumentOutOfRangeException(nameof(callIndex), callIndex, $"{Name}: the begin index must be between 0 and {_timesteps.Length}.");
        StepIndex = callIndex;
    }

    /// <summary>
    /// The index in <see cref="Timesteps"/> of the first model call of inference step <paramref name="step"/>
    /// (0 ≤ step ≤ <see cref="InferenceSteps"/>; step = <see cref="InferenceSteps"/> gives <see cref="CallCount"/>).
    /// Image-to-image that skips the first <paramref name="step"/> steps passes this to <see cref="SetBeginIndex"/>
    /// and to <see cref="AddNoise"/>. One call per step here; second-order schedulers return 2·step (diffusers'
    /// <c>t_start · order</c>) and PNDM steps over its warm-up's extra calls.
    /// </summary>
    /// <exception cref="InvalidOperationException"><see cref="SetTimesteps"/> was not called.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The step is outside 0 … <see cref="InferenceSteps"/>.</exception>
    public int FirstCallOfStep(int step)
    {
        if (_timesteps.Length == 0)
            throw new InvalidOperationException($"{Name}: call SetTimesteps before asking for a step's first call.");
        if (step < 0 || step > InferenceSteps)
            throw new ArgumentOutOfRangeException(nameof(step), step, $"{Name}: the step must be between 0 and {InferenceSteps}.");
        return step == InferenceSteps ? CallCount : FirstCallOfStepCore(step);
    }

    /// <summary>
    /// <see cref="FirstCallOfStep"/> for 0 ≤ <paramref name="step"/> &lt; <see cref="InferenceSteps"/>: the step itself,
    /// for schedulers that call the model once per step.
    /// </summary>
    protected virtual int FirstCallOfStepCore(int step) => step;

    /// <summary>
    /// Subclasses compute the timesteps (and their own tables, such as sigmas) for a step count and reset
    /// their multistep state.
    /// </summary>
    protected abstract float[] ComputeTimesteps(int inferenceSteps);

    /// <summary>
    /// Writes the UNet input for the current call into <paramref name="destination"/>
    /// (σ-parameterised schedulers divide by √(σ² + 1); the others copy). The two spans may be the same.
    /// </summary>
    public virtual void ScaleModelInput(ReadOnlySpan<float> sample, Span<float> destination)
    {
        EnsureStepping();
        if (!sample.Overlaps(destination)) sample.CopyTo(destination);
    }

    /// <summary>
    /// Advances <paramref name="sample"/> in place from the current timestep to the next, given the model's
    /// output for it, and moves <see cref="StepIndex"/> on by one.
    /// </summary>
    /// <param name="modelOutput">The UNet output (after classifier-free guidance) for the current call.</param>
    /// <param name="sample">The latents, updated in place.</param>
    /// <param name="noise">The noise source; required when <see cref="IsStochastic"/> is true.</param>
    public abstract void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null);

    /// <summary>
    /// Noises clean latents to the level the sample has before model call <paramref name="callIndex"/>
    /// (diffusers' <c>add_noise</c> at <c>timesteps[callIndex]</c>): for ᾱ-parameterised schedulers
    /// √ᾱ·x₀ + √(1 − ᾱ)·ε, for σ-parameterised ones x₀ + σ·ε.
    /// </summary>
    public abstract void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination);

    /// <summary>Throws unless <see cref="SetTimesteps"/> was called and calls remain.</summary>
    protected void EnsureStepping()
    {
        if (_timesteps.Length == 0)
            throw new InvalidOperationException($"{Name}: call SetTimesteps before stepping.");
        if (StepIndex >= _timesteps.Length)
            throw new InvalidOperationException($"{Name}: all {_timesteps.Length} model calls have been stepped; call SetTimesteps to start again.");
    }

    /// <summary>Throws when a stochastic step has no noise source.</summary>
    protected INoiseSource RequireNoise(INoiseSource? noise) =>
        noise ?? throw new ArgumentNullException(nameof(noise), $"{Name} draws noise at every step: pass a noise source to Step.");

    /// <summary>Throws when the model output and sample lengths differ.</summary>
    protected void CheckLengths(ReadOnlySpan<float> modelOutput, Span<float> sample)
    {
        if (modelOutput.Length != sample.Length)
            throw new ArgumentException($"{Name}: the model output has {modelOutput.Length} values but the sample has {sample.Length}.", nameof(modelOutput));
    }

    /// <summary>Returns a scratch buffer of exactly <paramref name="length"/> values, reusing <paramref name="buffer"/> when it fits.</summary>
    protected static float[] Scratch(ref float[]? buffer, int length)
    {
        if (buffer is null || buffer.Length != length) buffer = new float[length];
        return buffer;
    }
}

/// <summary>What the UNet was trained to predict (<c>prediction_type</c>).</summary>
public enum PredictionType
{
    /// <summary>The noise ε (<c>epsilon</c>), as in SD 1.x.</summary>
    Epsilon,
    /// <summary>The velocity v = √ᾱ·ε − √(1 − ᾱ)·x₀ (<c>v_prediction</c>), as in SD 2.x at 768 px. Salimans and Ho, 2022.</summary>
    VPrediction,
    /// <summary>The clean sample x₀ (<c>sample</c>).</summary>
    Sample,
}

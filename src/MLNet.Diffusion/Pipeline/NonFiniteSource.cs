using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// Where values checked by <see cref="NonFiniteLatentsException.ThrowIfNonFinite"/> came from: the model that produced
/// them (or whose output a scheduler step used), what it was given, and the scheduler. Nothing is computed from it
/// unless the values are not finite, so passing it costs nothing on the normal path.
/// </summary>
internal readonly ref struct NonFiniteSource
{
    /// <summary>Describes checked values.</summary>
    /// <param name="model">The model that produced them, or whose output they were computed from.</param>
    /// <param name="input">What the model was given (empty when unknown).</param>
    /// <param name="inputIsIds">The model took token ids, which are finite by construction.</param>
    /// <param name="modelOutput">The model's own output, when the values were computed from it by <paramref name="derivedBy"/>.</param>
    /// <param name="derivedBy">The computation that made the values from <paramref name="modelOutput"/> (classifier-free
    /// guidance, the scheduler step); null when the values are the model's output itself.</param>
    /// <param name="scheduler">The scheduler of the denoising loop, or null outside it.</param>
    public NonFiniteSource(OnnxModelComponent model, ReadOnlySpan<float> input = default, bool inputIsIds = false,
        ReadOnlySpan<float> modelOutput = default, string? derivedBy = null, DiffusionScheduler? scheduler = null)
    {
        Model = model;
        Input = input;
        InputIsIds = inputIsIds;
        ModelOutput = modelOutput;
        DerivedBy = derivedBy;
        Scheduler = scheduler;
    }

    /// <summary>The model component involved, or null when unknown.</summary>
    public OnnxModelComponent? Model { get; }

    /// <summary>What the model was given (empty when unknown or when it took token ids).</summary>
    public ReadOnlySpan<float> Input { get; }

    /// <summary>The model took token ids (always finite).</summary>
    public bool InputIsIds { get; }

    /// <summary>The model's own output, when the checked values were computed from it.</summary>
    public ReadOnlySpan<float> ModelOutput { get; }

    /// <summary>The computation that made the checked values from <see cref="ModelOutput"/>; null when they are the model's output.</summary>
    public string? DerivedBy { get; }

    /// <summary>The scheduler of the denoising loop, or null outside it.</summary>
    public DiffusionScheduler? Scheduler { get; }
}

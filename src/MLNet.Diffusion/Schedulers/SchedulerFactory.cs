namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// Creates schedulers by diffusers class name (<c>EulerDiscreteScheduler</c>) or short name (<c>euler</c>),
/// configured from a model's <c>scheduler_config.json</c>. As with diffusers' <c>from_config</c>, overriding the
/// folder's scheduler keeps the folder's noise schedule (betas, training steps, offsets) and lets each class
/// fill the keys it does not find with its own defaults.
/// </summary>
public static class SchedulerFactory
{
    private static readonly (string ClassName, string[] Aliases, Func<SchedulerConfig, DiffusionScheduler> Create)[] Registry =
    [
        ("PNDMScheduler", ["pndm", "plms"], c => new PndmScheduler(c)),
        ("DDIMScheduler", ["ddim"], c => new DdimScheduler(c)),
        ("DDPMScheduler", ["ddpm"], c => new DdpmScheduler(c)),
        ("LMSDiscreteScheduler", ["lms"], c => new LmsDiscreteScheduler(c)),
        ("EulerDiscreteScheduler", ["euler"], c => new EulerDiscreteScheduler(c)),
        ("EulerAncestralDiscreteScheduler", ["euler-a", "euler_a", "euler-ancestral"], c => new EulerAncestralScheduler(c)),
        ("DPMSolverMultistepScheduler", ["dpm++2m", "dpmsolver++", "dpm-solver++"], c => new DpmSolverMultistepScheduler(c)),
        ("HeunDiscreteScheduler", ["heun"], c => new HeunDiscreteScheduler(c)),
        ("KDPM2DiscreteScheduler", ["kdpm2", "dpm2"], c => new KDpm2DiscreteScheduler(c)),
        ("LCMScheduler", ["lcm"], c => new LcmScheduler(c)),
        ("UniPCMultistepScheduler", ["unipc", "uni-pc"], c => new UniPcMultistepScheduler(c)),
        ("DEISMultistepScheduler", ["deis"], c => new DeisMultistepScheduler(c)),
        ("DPMSolverSinglestepScheduler", ["dpm++2s", "dpmsolver-singlestep"], c => new DpmSolverSinglestepScheduler(c)),
    ];

    /// <summary>
    /// Samplers of flow-matching models (SD3, FLUX), whose transformers predict a velocity rather than noise: chosen by a
    /// folder's <c>_class_name</c> or their class name, and kept out of <see cref="Names"/> so that no ε- or
    /// v-prediction model is switched to one.
    /// </summary>
    private static readonly (string ClassName, string Alias, Func<SchedulerConfig, DiffusionScheduler> Create)[] FlowMatching =
    [
        ("FlowMatchEulerDiscreteScheduler", "flow-euler", c => new FlowMatchEulerDiscreteScheduler(c)),
        ("FlowMatchHeunDiscreteScheduler", "flow-heun", c => new FlowMatchHeunDiscreteScheduler(c)),
    ];

    /// <summary>The flow-matching samplers' short names (<c>flow-euler</c>, <c>flow-heun</c>): for SD3 and FLUX.1 only.</summary>
    internal static IReadOnlyList<string> FlowMatchingNames { get; } = [.. FlowMatching.Select(f => f.Alias)];

    /// <summary>
    /// Whether the scheduler <paramref name="name"/> (null: the configuration's class) is a flow-matching sampler, which
    /// steps along a predicted velocity: the one kind a flow-matching transformer can use, and the one kind a noise- or
    /// v-predicting UNet cannot.
    /// </summary>
    internal static bool IsFlowMatching(string? name, SchedulerConfig config)
    {
        string? requested = string.IsNullOrWhiteSpace(name) ? config.ClassName : name.Trim();
        return requested is not null && FlowMatching.Any(f => string.Equals(f.ClassName, requested, StringComparison.OrdinalIgnoreCase)
            || string.Equals(f.Alias, requested, StringComparison.OrdinalIgnoreCase));
    }

    private static readonly (string Key, object? Value) Karras = ("use_karras_sigmas", true);
    private static readonly (string Key, object? Value) SdePlusPlus = ("algorithm_type", "sde-dpmsolver++");

    /// <summary>
    /// Short names for a class with settings on top of the folder's configuration: Karras σ spacing
    /// (<c>dpm++2m-karras</c>), the stochastic DPM-Solver++ (<c>dpm++2m-sde</c>), or both.
    /// </summary>
    private static readonly (string Alias, string ClassName, (string Key, object? Value)[] Settings)[] Variants =
    [
        ("dpm++2m-karras", "DPMSolverMultistepScheduler", [Karras]),
        ("dpm++2m-sde", "DPMSolverMultistepScheduler", [SdePlusPlus]),
        ("dpm++2m-sde-karras", "DPMSolverMultistepScheduler", [SdePlusPlus, Karras]),
        ("euler-karras", "EulerDiscreteScheduler", [Karras]),
        ("lms-karras", "LMSDiscreteScheduler", [Karras]),
        ("heun-karras", "HeunDiscreteScheduler", [Karras]),
        ("kdpm2-karras", "KDPM2DiscreteScheduler", [Karras]),
        ("unipc-karras", "UniPCMultistepScheduler", [Karras]),
        ("deis-karras", "DEISMultistepScheduler", [Karras]),
        ("dpm++2s-karras", "DPMSolverSinglestepScheduler", [Karras]),
    ];

    /// <summary>
    /// The short names, one per scheduler and variant (each class's first alias, then the variants): the list that the
    /// CLI's help and the README show, taken from this table so that they cannot fall behind it.
    /// </summary>
    internal static IReadOnlyList<string> ShortNames { get; } = [.. Registry.Select(r => r.Aliases[0]), .. Variants.Select(k => k.Alias)];

    /// <summary>Every accepted name: the short names, then the diffusers class names.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. ShortNames, .. Registry.Select(r => r.ClassName)];

    /// <summary>
    /// Checks a folder's configuration when it loads: creates its scheduler and sets one step, so that a key read only then
    /// fails at load time (a dynamically shifted flow-matching schedule with the μ of its base image size).
    /// </summary>
    /// <exception cref="InvalidDataException">A key has a value the scheduler rejects.</exception>
    /// <exception cref="NotSupportedException">The configuration asks for an option this implementation lacks.</exception>
    internal static void CheckLoads(SchedulerConfig config)
    {
        var scheduler = Create(null, config);
        if (scheduler is FlowMatchEulerDiscreteScheduler { UsesDynamicShifting: true } flow)
            flow.Mu = flow.ResolutionShift((int)config.GetDouble("base_image_seq_len", 256));
        scheduler.SetTimesteps(1);
    }

    /// <summary>
    /// Creates the scheduler named <paramref name="name"/>, or the one the configuration's <c>_class_name</c>
    /// names when <paramref name="name"/> is null or empty.
    /// </summary>
    /// <exception cref="ArgumentException">The name is not known; the message lists the known names.</exception>
    public static DiffusionScheduler Create(string? name, SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        string? requested = string.IsNullOrWhiteSpace(name) ? config.ClassName : name.Trim();
        if (requested is null)
            throw new ArgumentException($"Scheduler configuration '{config.Source ?? "(text)"}' names no _class_name; choose a scheduler by name: {string.Join(", ", Names)}.", nameof(name));
        foreach (var (alias, className, settings) in Variants)
            if (string.Equals(alias, requested, StringComparison.OrdinalIgnoreCase))
                return Find(className)!(config.With(settings));
        var create = Find(requested)
            ?? throw new ArgumentException($"Unknown scheduler '{requested}'{(name is null ? $" (named by {config.Source ?? "the configuration"})" : "")}. Known: {string.Join(", ", Names)}; " +
                $"for SD3 and FLUX.1: {string.Join(", ", FlowMatchingNames)}.", nameof(name));
        return create(config);
    }

    private static Func<SchedulerConfig, DiffusionScheduler>? Find(string name)
    {
        foreach (var (className, alias, create) in FlowMatching)
            if (string.Equals(className, name, StringComparison.OrdinalIgnoreCase) || string.Equals(alias, name, StringComparison.OrdinalIgnoreCase))
                return create;
        foreach (var (className, aliases, create) in Registry)
            if (string.Equals(className, name, StringComparison.OrdinalIgnoreCase) || aliases.Any(a => string.Equals(a, name, StringComparison.OrdinalIgnoreCase)))
                return create;
        return null;
    }
}

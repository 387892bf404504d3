using System.Globalization;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// What every row of a job shares: the model folder (a path every worker can read, on shared storage) and the generation
/// settings. Workers load the model named here once per silo and device.
/// </summary>
[GenerateSerializer, Immutable]
public sealed class JobSettings
{
    /// <summary>The model folder, as every worker sees it (the same path on every machine).</summary>
    [Id(0)] public string ModelDirectory { get; init; } = "";

    /// <summary>Denoising steps.</summary>
    [Id(1)] public int Steps { get; init; } = 25;

    /// <summary>Classifier-free guidance scale.</summary>
    [Id(2)] public float GuidanceScale { get; init; } = 7.5f;

    /// <summary>Image width in pixels, or null for the model's default.</summary>
    [Id(3)] public int? Width { get; init; }

    /// <summary>Image height in pixels, or null for the model's default.</summary>
    [Id(4)] public int? Height { get; init; }

    /// <summary>The scheduler's name, or null for the model folder's.</summary>
    [Id(5)] public string? Scheduler { get; init; }

    /// <summary>DDIM's η (0: deterministic DDIM).</summary>
    [Id(6)] public float Eta { get; init; }

    /// <summary>Guidance rescale φ, 0 to 1.</summary>
    [Id(7)] public float GuidanceRescale { get; init; }

    /// <summary>The engine's options for these settings.</summary>
    public GenerationOptions ToOptions() => new()
    {
        Steps = Steps, GuidanceScale = GuidanceScale, Width = Width, Height = Height, Scheduler = Scheduler, Eta = Eta, GuidanceRescale = GuidanceRescale,
    };

    /// <summary>
    /// The manifest's settings cell for images made by <paramref name="pipeline"/> with these settings, in the CLI batch's
    /// format (<c>model=NAME size=WxH steps=N guidance=G scheduler=S</c>, then <c>eta=</c> and <c>rescale=</c> when not 0), so a folder a cluster filled reads like one the
    /// CLI filled.
    /// </summary>
    public string Describe(StableDiffusionPipeline pipeline)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        int width = Width ?? pipeline.DefaultSize, height = Height ?? pipeline.DefaultSize;
        var model = Path.GetFileName(ModelDirectory.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        var text = string.Create(CultureInfo.InvariantCulture,
            $"model={model} size={width}x{height} steps={Steps} guidance={GuidanceScale} scheduler={Scheduler ?? pipeline.SchedulerConfig.ClassName}");
        if (Eta != 0) text += string.Create(CultureInfo.InvariantCulture, $" eta={Eta}");
        if (GuidanceRescale != 0) text += string.Create(CultureInfo.InvariantCulture, $" rescale={GuidanceRescale}");
        return text;
    }
}

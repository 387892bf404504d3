namespace MLNet.Diffusion.Transforms;

/// <summary>What <see cref="DiffusionModelSaver"/> writes for one diffusion transformer: its stage, settings and column names.</summary>
internal sealed class SavedTransformer
{
    public string Stage { get; set; } = "";

    public DiffusionOptions Options { get; set; } = new();

    public Dictionary<string, string?> Columns { get; set; } = [];
}

namespace MLNet.Diffusion.Orleans;

/// <summary>One row of a generation job's table: what decides its image, besides the job's settings.</summary>
[GenerateSerializer, Immutable]
public sealed class GenerationRow
{
    /// <summary>The row's index in the table (0-based, header excluded): its image's name and its manifest line's key.</summary>
    [Id(0)] public int Row { get; init; }

    /// <summary>The prompt.</summary>
    [Id(1)] public string Prompt { get; init; } = "";

    /// <summary>The negative prompt ("" for none).</summary>
    [Id(2)] public string NegativePrompt { get; init; } = "";

    /// <summary>The seed of the row's initial noise: with the same settings, the same seed gives the same image bytes wherever it is made.</summary>
    [Id(3)] public long Seed { get; init; }

    /// <summary>This row's guidance scale, or null for the job's.</summary>
    [Id(4)] public float? GuidanceScale { get; init; }
}

namespace MLNet.Diffusion.Pipeline;

/// <summary>One image to generate: its prompt, negative prompt, seed and, optionally, its own guidance scale.</summary>
/// <param name="Prompt">What the image should show.</param>
/// <param name="Seed">The noise seed: the same seed and settings give the same image.</param>
public sealed record ImagePrompt(string Prompt, long Seed = 0)
{
    /// <summary>What the image should not show (the unconditional half of guidance). Default: empty.</summary>
    public string NegativePrompt { get; init; } = "";

    /// <summary>This image's guidance scale, overriding <see cref="GenerationOptions.GuidanceScale"/>.</summary>
    public float? GuidanceScale { get; init; }
}

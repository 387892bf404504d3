namespace MLNet.Diffusion.Tests.Tokenization;

/// <summary>
/// CLIP's vocabulary, merges and reference ids (MIT, kept with their licence under <c>Data/clip/</c>), copied beside
/// the test binaries so that every clone runs the tokenizer checks.
/// </summary>
internal static class ClipTestData
{
    /// <summary>The folder holding vocab.json, merges.txt and reference_ids.jsonl.</summary>
    public static string Directory { get; } = Path.Combine(AppContext.BaseDirectory, "Data", "clip");
}

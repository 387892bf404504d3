namespace MLNet.Diffusion.Tests.Tokenization;

/// <summary>
/// Finds the CLIP vocabulary that the project keeps outside the repository, in <c>shared/data/clip</c> beside an
/// ancestor of the test binaries (the repository's parent holds <c>shared/</c>). Never copied into the repository.
/// </summary>
internal static class SharedClipData
{
    private static readonly Lazy<string?> Folder = new(Find);

    /// <summary>The folder holding vocab.json, merges.txt and reference_ids.jsonl, or null when there is none.</summary>
    public static string? Directory => Folder.Value;

    /// <summary>The folder, or a skipped test that says where it was looked for.</summary>
    public static string Require()
    {
        Skip.If(Directory is null,
            "shared/data/clip (CLIP's vocab.json, merges.txt, reference_ids.jsonl) was not found beside any ancestor of " +
            AppContext.BaseDirectory + "; the reference-tokenizer checks need it.");
        return Directory!;
    }

    private static string? Find()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "shared", "data", "clip");
            if (File.Exists(Path.Combine(candidate, "vocab.json")) && File.Exists(Path.Combine(candidate, "merges.txt")))
            {
                return candidate;
            }
        }

        return null;
    }
}

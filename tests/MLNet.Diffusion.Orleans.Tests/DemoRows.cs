using System.Collections.Concurrent;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary>The demo model, job rows over it, and the single-process reference images the cluster's must equal.</summary>
internal static class DemoRows
{
    private static readonly string[] s_prompts = ["a red circle", "a blue square", "a green triangle", "a yellow star", "a purple circle on white"];
    private static readonly ConcurrentDictionary<(int Row, long Seed, string Prompt), byte[]> s_reference = new();

    /// <summary>The demo model's folder (built on first use into the cache folder).</summary>
    public static string Model { get; } = DemoModel.EnsureBuilt();

    /// <summary>Steps per image: small, so that the suite stays fast.</summary>
    public const int Steps = 4;

    /// <summary>The settings of every test job.</summary>
    public static JobSettings Settings => new() { ModelDirectory = Model, Steps = Steps, GuidanceScale = 7.5f };

    /// <summary>Rows 0..count-1 with prompts in turn and seed 1000 + row.</summary>
    public static GenerationRow[] Make(int count) =>
        [.. Enumerable.Range(0, count).Select(i => new GenerationRow { Row = i, Prompt = s_prompts[i % s_prompts.Length], Seed = 1000 + i })];

    /// <summary>
    /// The PNG bytes of <paramref name="rows"/> made in this process, without Orleans, in engine batches of
    /// <paramref name="batchSize"/> (another split than the cluster's: a row's bytes must not depend on it).
    /// </summary>
    public static IReadOnlyDictionary<int, byte[]> Reference(IReadOnlyList<GenerationRow> rows, int batchSize)
    {
        var missing = rows.Where(r => !s_reference.ContainsKey(Key(r))).ToArray();
        using var pipeline = StableDiffusionPipeline.Load(Model);
        var options = Settings.ToOptions();
        foreach (var batch in missing.Chunk(batchSize))
        {
            var images = pipeline.Generate([.. batch.Select(r => new ImagePrompt(r.Prompt, r.Seed) { NegativePrompt = r.NegativePrompt })], options);
            for (int i = 0; i < batch.Length; i++)
            {
                using var image = images[i];
                s_reference[Key(batch[i])] = PngBytes.Of(image.Image);
            }
        }
        return rows.ToDictionary(r => r.Row, r => s_reference[Key(r)]);
    }

    private static (int, long, string) Key(GenerationRow r) => (r.Row, r.Seed, r.Prompt);
}

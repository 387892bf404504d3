using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion.Tests.Transforms;

/// <summary>A prompt row.</summary>
public sealed class PromptRow
{
    public string Prompt { get; set; } = "";
    public string Id { get; set; } = "";
}

/// <summary>A prompt row with every per-row setting.</summary>
public sealed class FullRow
{
    public string Prompt { get; set; } = "";
    public string Negative { get; set; } = "";
    public long Seed { get; set; }
    public float Guidance { get; set; }
    public int Steps { get; set; }
}

internal static class TransformTestKit
{
    public static readonly string[] Prompts =
        ["a red cat", "blue dog", "the horse", "an astronaut riding a horse", "painting of a cat", "red dog",
         "photo of the blue horse", "cat", "dog", "a painting"];

    /// <summary>Few steps of DDIM (one UNet call per step) at the test model's 64×64 default.</summary>
    public static DiffusionOptions Options(string modelPath, int batchSize = 1) => new()
    {
        ModelPath = modelPath,
        Steps = 3,
        Scheduler = "ddim",
        GuidanceScale = 3,
        BatchSize = batchSize,
        Seed = 100,
        IntraOpThreads = 1, // tests run in parallel on few cores: no spinning ONNX Runtime thread pools
    };

    public static IDataView Table(MLContext ml, int rows) =>
        ml.Data.LoadFromEnumerable(Enumerable.Range(0, rows).Select(i => new PromptRow { Prompt = Prompts[i % Prompts.Length], Id = $"row{i}" }).ToArray());

    public static GenerationOptions Generation(DiffusionOptions o) =>
        new() { Steps = o.Steps, Scheduler = o.Scheduler, GuidanceScale = o.GuidanceScale, Eta = o.Eta };

    /// <summary>Every row's image bytes in the column, read in one cursor pass.</summary>
    public static List<byte[]> ReadImages(IDataView view, string column = "Image")
    {
        var result = new List<byte[]>();
        var col = view.Schema[column];
        using var cursor = view.GetRowCursor([col]);
        var getter = cursor.GetGetter<MLImage>(col);
        MLImage image = null!;
        while (cursor.MoveNext())
        {
            getter(ref image);
            result.Add(image.Pixels.ToArray());
        }
        image?.Dispose();
        return result;
    }

    public static int MaxByteDifference(byte[] a, byte[] b)
    {
        Assert.Equal(a.Length, b.Length);
        int max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }
}

/// <summary>One test model folder for a test class.</summary>
public sealed class TransformModelFixture : IDisposable
{
    private readonly MLNet.Diffusion.Tests.TestModels.TempModelFolder _folder = MLNet.Diffusion.Tests.TestModels.TestModelFactory.CreateTemp();

    public string Path => _folder.Path;

    public void Dispose() => _folder.Dispose();
}

using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.ModelBuilder.Synthetic;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// The model folders the benchmarks run on, built on first use under <c>$MLND_BENCH_MODELS</c> (default: the
/// system temp folder's <c>mlnet-diffusion-bench/</c>) and reused by later runs and by BenchmarkDotNet's child processes.
/// </summary>
public static class ModelFolders
{
    private static readonly object Gate = new();

    /// <summary>Where the folders live.</summary>
    public static string Root =>
        Environment.GetEnvironmentVariable("MLND_BENCH_MODELS") is { Length: > 0 } dir ? dir : Path.Combine(Path.GetTempPath(), "mlnet-diffusion-bench");

    /// <summary>The built-in demo model (DemoDataset.ImageSize square images).</summary>
    public static string Demo
    {
        get
        {
            string dir = Path.Combine(Root, "demo");
            DemoModelBuilder.EnsureBuilt(dir);
            return dir;
        }
    }

    /// <summary>The compute-realistic synthetic UNet with SD 1.5's contract and latent shape (4×64×64, 512×512 images).</summary>
    public static string SyntheticSd15 => Synthetic("synthetic-sd15", SyntheticSd15Options);

    /// <summary>The options of <see cref="SyntheticSd15"/>.</summary>
    public static SyntheticModelOptions SyntheticSd15Options { get; } = new();

    /// <summary>The synthetic UNet with SDXL's contract, widths and latent shape (4×128×128, 1024×1024 images).</summary>
    public static string SyntheticSdxl => Synthetic("synthetic-sdxl", SyntheticSdxlOptions.ToString(), dir => SyntheticXlModelFolder.Write(dir, SyntheticSdxlOptions));

    /// <summary>The options of <see cref="SyntheticSdxl"/>.</summary>
    public static SyntheticXlModelOptions SyntheticSdxlOptions { get; } = new();

    /// <summary>
    /// <see cref="SyntheticSd15"/> with a near-identity UNet of the same contract (out = 0.9·sample + a term of the timestep
    /// and of the mean text embedding): a call costs microseconds, so that the host work around it is not hidden by model time.
    /// </summary>
    public static string TinySd15 => Synthetic("tiny-sd15", "tiny 1 " + SyntheticSd15Options, dir => WriteTiny(SyntheticSd15, dir, xl: false));

    /// <summary><see cref="SyntheticSdxl"/> with a near-identity UNet of SDXL's contract (see <see cref="TinySd15"/>).</summary>
    public static string TinySdxl => Synthetic("tiny-sdxl", "tiny 1 " + SyntheticSdxlOptions, dir => WriteTiny(SyntheticSdxl, dir, xl: true));

    private static void WriteTiny(string source, string dir, bool xl)
    {
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(dir, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
        var g = new OnnxGraphBuilder("tiny_unet");
        int width = xl ? SyntheticSdxlOptions.ContextWidth : SyntheticSd15Options.EmbeddingWidth;
        var sample = g.Input("sample", OnnxElementType.Float, "batch", 4, "height", "width");
        var timestep = g.Input("timestep", OnnxElementType.Float, "batch");
        var context = g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "sequence", width);
        var perRow = g.Add(g.Mul(timestep, g.Scalar(1e-4f)), g.Mul(g.ReduceMean(context, [1, 2], keepDims: false), g.Scalar(0.1f)));
        if (xl)
        {
            var textEmbeds = g.Input("text_embeds", OnnxElementType.Float, "batch", SyntheticSdxlOptions.TextEncoder2Width);
            var timeIds = g.Input("time_ids", OnnxElementType.Float, "batch", SyntheticXlModelFolder.TimeIds);
            perRow = g.Add(perRow, g.Mul(g.Add(g.ReduceMean(textEmbeds, [1], keepDims: false), g.ReduceMean(timeIds, [1], keepDims: false)), g.Scalar(1e-3f)));
        }
        g.NodeNamed("Add", [g.Mul(sample, g.Scalar(0.9f)), g.Unsqueeze(perRow, 1, 2, 3)], "out_sample");
        g.Output("out_sample", OnnxElementType.Float, "batch", 4, "height", "width");
        g.Save(Path.Combine(dir, "unet", "model.onnx"));
    }

    private static string Synthetic(string name, SyntheticModelOptions options) =>
        Synthetic(name, options.ToString(), dir => SyntheticModelFolder.Write(dir, options));

    /// <summary>The folder <paramref name="name"/>, written by <paramref name="write"/> unless its stamp already says <paramref name="expected"/>.</summary>
    internal static string Synthetic(string name, string expected, Action<string> write)
    {
        string dir = Path.Combine(Root, name);
        string stamp = Path.Combine(dir, "synthetic.stamp");
        lock (Gate)
        {
            if (File.Exists(stamp) && File.ReadAllText(stamp) == expected) return dir;
            Directory.CreateDirectory(Root);
            using var fileLock = new FileStream(dir + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            if (File.Exists(stamp) && File.ReadAllText(stamp) == expected) return dir;
            write(dir);
            File.WriteAllText(stamp, expected);
            return dir;
        }
    }
}

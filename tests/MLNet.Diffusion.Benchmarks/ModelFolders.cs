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

    /// <summary>
    /// The synthetic transformer with Stable Diffusion 3's contract and conditioning widths (CLIP-L, CLIP-G, a T5 of width
    /// 4096) and latent shape (16×h×w; sample_size 128).
    /// </summary>
    public static string SyntheticSd3 => Synthetic("synthetic-sd3", "sd3 " + SyntheticFlowOptions, dir => SyntheticFlowModelFolder.WriteSd3(dir, SyntheticFlowOptions));

    /// <summary>The synthetic transformer with FLUX.1-dev's contract (packed tokens, position ids, the guidance input, dynamic shifting).</summary>
    public static string SyntheticFluxDev => Synthetic("synthetic-flux-dev", "flux-dev " + SyntheticFlowOptions, dir => SyntheticFlowModelFolder.WriteFlux(dir, SyntheticFlowOptions, dev: true));

    /// <summary>The options of <see cref="SyntheticSd3"/> and <see cref="SyntheticFluxDev"/>.</summary>
    public static SyntheticFlowModelOptions SyntheticFlowOptions { get; } = new();

    /// <summary><see cref="SyntheticSd3"/> with a near-identity transformer of the same contract (see <see cref="TinySd15"/>).</summary>
    public static string TinySd3 => Synthetic("tiny-sd3", "tiny 1 sd3 " + SyntheticFlowOptions, dir => WriteTinyTransformer(SyntheticSd3, dir, packed: false));

    /// <summary><see cref="SyntheticFluxDev"/> with a near-identity transformer of the same contract (see <see cref="TinySd15"/>).</summary>
    public static string TinyFluxDev => Synthetic("tiny-flux-dev", "tiny 1 flux-dev " + SyntheticFlowOptions, dir => WriteTinyTransformer(SyntheticFluxDev, dir, packed: true));

    /// <summary>Whether <paramref name="folder"/> is one of the flow-matching folders (their own scheduler, not Euler's ε form).</summary>
    public static bool IsFlow(string folder) => File.Exists(Path.Combine(folder, "transformer", "model.onnx"));

    /// <summary>
    /// A copy of <paramref name="source"/> whose transformer is out = 0.9·hidden_states + a term of every other input (the
    /// timestep, the mean context, the mean pooled projection, and for FLUX.1 the position ids and the guidance).
    /// </summary>
    private static void WriteTinyTransformer(string source, string dir, bool packed)
    {
        CopyFolder(source, dir);
        var o = SyntheticFlowOptions;
        var g = new OnnxGraphBuilder("tiny_transformer");
        var hidden = packed
            ? g.Input("hidden_states", OnnxElementType.Float, "batch", "image_tokens", SyntheticFlowModelFolder.PackedTokenWidth)
            : g.Input("hidden_states", OnnxElementType.Float, "batch", SyntheticFlowModelFolder.LatentChannels, "height", "width");
        var context = g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "text_tokens", o.T5Width);
        var pooled = g.Input("pooled_projections", OnnxElementType.Float, "batch", packed ? o.TextEncoderWidth : o.Sd3PooledWidth);
        var timestep = g.Input("timestep", OnnxElementType.Float, "batch");
        var perRow = g.Add(g.Mul(timestep, g.Scalar(packed ? 0.1f : 1e-4f)), g.Mul(g.ReduceMean(context, [1, 2], keepDims: false), g.Scalar(0.1f)));
        perRow = g.Add(perRow, g.Mul(g.ReduceMean(pooled, [1], keepDims: false), g.Scalar(1e-3f)));
        var output = g.Mul(hidden, g.Scalar(0.9f));
        if (packed)
        {
            var imgIds = g.Input("img_ids", OnnxElementType.Float, "image_tokens", 3);
            var txtIds = g.Input("txt_ids", OnnxElementType.Float, "text_tokens", 3);
            var guidance = g.Input("guidance", OnnxElementType.Float, "batch");
            perRow = g.Add(perRow, g.Mul(g.Add(guidance, g.ReduceMean(txtIds, [0, 1], keepDims: false)), g.Scalar(1e-3f)));
            output = g.Add(output, g.Unsqueeze(g.Mul(g.ReduceMean(imgIds, [1], keepDims: true), g.Scalar(1e-4f)), 0)); // [1, N, 1]
            g.NodeNamed("Add", [output, g.Unsqueeze(perRow, 1, 2)], "out_hidden_states");
            g.Output("out_hidden_states", OnnxElementType.Float, "batch", "image_tokens", SyntheticFlowModelFolder.PackedTokenWidth);
        }
        else
        {
            g.NodeNamed("Add", [output, g.Unsqueeze(perRow, 1, 2, 3)], "out_hidden_states");
            g.Output("out_hidden_states", OnnxElementType.Float, "batch", SyntheticFlowModelFolder.LatentChannels, "height", "width");
        }
        g.Save(Path.Combine(dir, "transformer", "model.onnx"));
    }

    private static void CopyFolder(string source, string dir)
    {
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(dir, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
    }

    private static void WriteTiny(string source, string dir, bool xl)
    {
        CopyFolder(source, dir);
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

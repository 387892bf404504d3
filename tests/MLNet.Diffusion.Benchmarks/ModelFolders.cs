using MLNet.Diffusion.ModelBuilder.Demo;
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

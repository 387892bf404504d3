using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.ModelBuilder.Synthetic;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Vae;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// <c>vae-tiling [--sizes 1024,2048,4096] [--channels 32]</c>: the peak working set of one VAE decode, whole
/// (<see cref="VaeTiling.Off"/>) against tiled (<see cref="VaeTiling.On"/>), at each image size, each measured in a
/// fresh child process (Linux <c>VmHWM</c>, else <see cref="Process.PeakWorkingSet64"/>) so that one measurement's
/// arena does not carry into the next. The decoder is built here with a VAE decoder's proportions per pixel in kind:
/// a 1×1 conv 4 → C at latent resolution, nearest ×8, then a 3×3 conv C → C, SiLU and a 3×3 conv C → 3 at full
/// resolution, so that its activations grow with the image's area as a real VAE's do (C·4 bytes per pixel per
/// tensor; SD's decoder has 128 channels at full resolution, so its whole-image figures are several times these,
/// while tiled figures stay bounded by one tile either way).
/// </summary>
public static class VaeTilingMemory
{
    /// <summary>Builds the decoder, runs the children and prints one Markdown table.</summary>
    public static int Run(string[] args)
    {
        int[] sizes = (Option(args, "--sizes") ?? "1024,2048,4096").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        int channels = int.Parse(Option(args, "--channels") ?? "32", CultureInfo.InvariantCulture);
        string dir = Directory.CreateTempSubdirectory("mlnd-vae-tiling-").FullName;
        try
        {
            string model = Path.Combine(dir, "vae_decoder", "model.onnx");
            Decoder(channels).Save(model);
            Console.WriteLine($"Decoder: 1×1 conv 4 → {channels}, nearest ×8, 3×3 conv {channels} → {channels}, SiLU, 3×3 conv {channels} → 3, tanh (float32, CPU); " +
                $"tile {LatentTiles.DefaultTile} latents ({LatentTiles.DefaultTile * 8} pixels), overlap {(int)(LatentTiles.DefaultTile * LatentTiles.OverlapFactor)} latents.");
            Console.WriteLine();
            Console.WriteLine("| image | tiling | tiles | output buffer | working set before | peak working set | peak − before | decode |");
            Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- |");
            foreach (int size in sizes)
                foreach (var tiling in new[] { VaeTiling.On, VaeTiling.Off })
                    Measure(model, size, tiling);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
        return 0;
    }

    /// <summary>The benchmark decoder with <paramref name="channels"/> feature channels at full resolution.</summary>
    public static OnnxGraphBuilder Decoder(int channels)
    {
        var random = new WeightRandom(7);
        var g = new OnnxGraphBuilder("vae_tiling_decoder");
        var latent = g.Input("latent_sample", OnnxElementType.Float, "batch", 4, "height", "width");
        var features = g.Conv(latent, g.Initializer("lift", random.Uniform(channels * 4, MathF.Sqrt(3f / 4)), channels, 4, 1, 1), g.Initializer("lift_b", new float[channels], channels));
        var up = g.Node("Resize", [features, "", g.Initializer("scales", [1f, 1f, 8f, 8f], 4)],
            ("mode", "nearest"), ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor"));
        var hidden = g.Silu(g.Conv(up, g.Initializer("conv", random.Uniform(channels * channels * 9, MathF.Sqrt(3f / (channels * 9))), channels, channels, 3, 3),
            g.Initializer("conv_b", new float[channels], channels), pads: [1, 1, 1, 1]));
        var rgb = g.Conv(hidden, g.Initializer("out", random.Uniform(3 * channels * 9, MathF.Sqrt(3f / (channels * 9))), 3, channels, 3, 3),
            g.Initializer("out_b", new float[3], 3), pads: [1, 1, 1, 1]);
        g.NodeNamed("Tanh", [rgb], "sample");
        g.Output("sample", OnnxElementType.Float, "batch", 3, "image_height", "image_width");
        return g;
    }

    private static void Measure(string model, int size, VaeTiling tiling)
    {
        string dll = typeof(VaeTilingMemory).Assembly.Location;
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Environment.ProcessPath!.EndsWith("dotnet", StringComparison.Ordinal)) start.ArgumentList.Add(dll);
        foreach (var a in new[] { "vae-tiling-child", model, size.ToString(CultureInfo.InvariantCulture), tiling.ToString() })
            start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        var error = child.StandardError.ReadToEndAsync();
        string output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        var parts = output.Trim().Split(' ');
        long image = 3L * size * size * sizeof(float);
        if (child.ExitCode != 0 || parts.Length != 4)
        {
            string reason = string.Join(' ', (output + " " + error.Result).Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries)).Trim();
            Console.WriteLine($"| {size}² | {tiling} | | {Mb(image)} | | | | child failed (exit {child.ExitCode}): {(reason.Length > 200 ? reason[..200] : reason)} |");
            return;
        }
        long before = long.Parse(parts[0], CultureInfo.InvariantCulture), peak = long.Parse(parts[1], CultureInfo.InvariantCulture);
        int tiles = int.Parse(parts[2], CultureInfo.InvariantCulture);
        double seconds = double.Parse(parts[3], CultureInfo.InvariantCulture);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {size}² | {tiling} | {(tiles == 0 ? "whole" : tiles.ToString(CultureInfo.InvariantCulture))} | {Mb(image)} | {Mb(before)} | {Mb(peak)} | {Mb(peak - before)} | {seconds:F1} s |"));
    }

    /// <summary>The child: loads the decoder, decodes one <c>size</c>² image and prints "bytes-before bytes-peak tiles seconds".</summary>
    public static int RunChild(string[] args)
    {
        string model = args[0];
        int size = int.Parse(args[1], CultureInfo.InvariantCulture);
        var tiling = Enum.Parse<VaeTiling>(args[2]);
        _ = OrtEnv.Instance(); // load the native runtime before the baseline reading
        GC.Collect();
        long before = PeakMemory.Current("VmRSS");
        using var decoder = new VaeDecoder(model, new OnnxSessionFactory(new DiffusionRuntimeOptions()), 0.18215f);
        int latent = size / 8, tiles = 0;
        var latents = new float[4 * latent * latent];
        new GaussianNoise(1).Fill(latents);
        var clock = Stopwatch.StartNew();
        var pixels = decoder.Decode(latents, latent, latent, out _, out _, default, tiling, (_, total) => tiles = total);
        double seconds = clock.Elapsed.TotalSeconds;
        GC.KeepAlive(pixels);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{before} {PeakMemory.Current("VmHWM")} {tiles} {seconds:F2}"));
        return 0;
    }

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static string Mb(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:F0} MiB");
}

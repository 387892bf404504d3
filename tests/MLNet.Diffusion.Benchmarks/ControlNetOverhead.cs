using System.Diagnostics;
using System.Globalization;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// <c>controlnet [--quick] [--cuda]</c>: what a ControlNet adds to a denoising step outside ONNX Runtime, and the managed
/// bytes per step, at SD 1.5's shapes (512×512, UNet batch 2 with guidance; residuals of 320, 640 and 1280 channels at
/// 64², 32², 16² and 8²: 13.4 M values per step). The models are the tests' closed-form ControlNet and ControlNet-ready
/// UNet at SD 1.5's channel counts, so that ONNX Runtime's share is small and the host share shows; the host time is set
/// against the step time of the compute-realistic synthetic SD 1.5-shaped UNet measured in the same process (a real
/// ControlNet adds roughly half a UNet to it).
/// </summary>
/// <remarks>
/// A step's host time is the wall time between two progress reports less the UNet's and the ControlNets' time inside
/// ONNX Runtime's run calls (their <c>RunTime</c> counters); its ControlNet overhead is that host time less the host time
/// of the same step without ControlNets (the same ControlNet-ready UNet, residuals left at zero). Configurations run in
/// interleaved rounds; medians over steps 2 … n of every run.
/// </remarks>
public static class ControlNetOverhead
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private const int Size = 512, Steps = 10;

    private sealed record Config(string Name, int ControlNets, bool GuessMode)
    {
        public List<double> Host { get; } = [];
        public List<double> Inside { get; } = [];
        public List<long> Bytes { get; } = [];
    }

    /// <summary>Runs the table.</summary>
    public static int Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        var runtime = new DiffusionRuntimeOptions { Device = args.Contains("--cuda") ? ExecutionDevice.Cuda : ExecutionDevice.Cpu };
        int rounds = quick ? 2 : 5;
        string root = Models();
        using var image = Solid(Size, 120);
        var configs = new[]
        {
            new Config("no ControlNet (residuals zero)", 0, false),
            new Config("1 ControlNet", 1, false),
            new Config("2 ControlNets (summed)", 2, false),
            new Config("1 ControlNet, guess mode", 1, true),
        };
        double unetCall;
        using (var pipeline = StableDiffusionPipeline.Load(Path.Combine(root, "model"), runtime))
        {
            var prompt = pipeline.EncodeTexts(["a red circle"], null, CancellationToken.None)[0];
            var negative = pipeline.UnconditionalEmbedding;
            PromptEmbedding[] embeddings = [new(prompt.Hidden, negative.Hidden)];
            foreach (var c in configs) Generate(pipeline, embeddings, c, root, image, record: false); // warm-up: loads the ControlNets, keeps the bindings
            for (int round = 0; round < rounds; round++)
                foreach (var c in round % 2 == 0 ? configs : configs.Reverse())
                    Generate(pipeline, embeddings, c, root, image, record: true);
            Console.WriteLine($"ControlNet step overhead [{pipeline.Device}, {pipeline.UNet.RunPath}], 512×512, UNet batch 2, {Steps} Euler steps, {rounds} interleaved rounds (median, min–max):");
        }
        unetCall = SyntheticUNetCall(runtime, quick);
        double baseline = Median(configs[0].Host);
        Console.WriteLine();
        Console.WriteLine("| configuration | ORT time per step (closed-form models) | host per step outside ORT | above no ControlNet | managed bytes per step | overhead / (synthetic SD 1.5 UNet call × 1.5) |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
        foreach (var c in configs)
        {
            double above = Median(c.Host) - baseline;
            string share = c.ControlNets == 0 ? "–" : string.Create(Inv, $"{Math.Max(above, 0) / 1000 / (unetCall * 1.5) * 100:F3} %");
            string bytes = c.Bytes.Min() == c.Bytes.Max() ? c.Bytes[0].ToString(Inv) : $"{c.Bytes.Min()}–{c.Bytes.Max()}";
            Console.WriteLine(string.Create(Inv, $"| {c.Name} | {Spread(c.Inside)} | {Spread(c.Host)} | {(c.ControlNets == 0 ? "–" : Format(above))} | {bytes} | {share} |"));
        }
        Console.WriteLine();
        Console.WriteLine(string.Create(Inv, $"Synthetic SD 1.5-shaped UNet: {unetCall:F1} ms per call (batch 2, 64×64) on this machine."));
        return 0;
    }

    /// <summary>The model folder (ControlNet-ready UNet as unet/) and two ControlNets, built once under <see cref="ModelFolders.Root"/>.</summary>
    private static string Models()
    {
        string root = Path.Combine(ModelFolders.Root, "controlnet-sd15-v1");
        string done = Path.Combine(root, "complete");
        if (File.Exists(done)) return root;
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        var model = new TestModelOptions { SampleSize = Size / 8 };
        var residuals = new ControlNetTestOptions { LevelChannels = [320, 640, 1280, 1280] };
        ControlNetTestModelFactory.CreateModel(Path.Combine(root, "model"), model, ControlUNetPlace.InUnet, residuals);
        ControlNetTestModelFactory.CreateControlNet(Path.Combine(root, "cn0"), model, residuals);
        ControlNetTestModelFactory.CreateControlNet(Path.Combine(root, "cn1"), model, residuals);
        File.WriteAllText(done, "");
        return root;
    }

    private static void Generate(StableDiffusionPipeline pipeline, PromptEmbedding[] embeddings, Config c, string root, Microsoft.ML.Data.MLImage image, bool record)
    {
        var options = new GenerationOptions { Steps = Steps, Scheduler = "euler", GuidanceScale = 7.5f, Width = Size, Height = Size, ControlGuessMode = c.GuessMode };
        for (int k = 0; k < c.ControlNets; k++) options.ControlNets.Add(new ControlNetInput(Path.Combine(root, $"cn{k}"), image));
        var probe = new Probe(pipeline, [.. pipeline.Model.LoadedControlNets]);
        pipeline.Denoise([new ImagePrompt("", 2) { GuidanceScale = 7.5f }], embeddings, options, probe, CancellationToken.None);
        if (!record) return;
        for (int i = 2; i < probe.Ticks.Count; i++)
        {
            var inside = probe.Inside[i] - probe.Inside[i - 1];
            c.Inside.Add(inside.TotalMicroseconds);
            c.Host.Add((Stopwatch.GetElapsedTime(probe.Ticks[i - 1], probe.Ticks[i]) - inside).TotalMicroseconds);
            c.Bytes.Add(probe.Bytes[i] - probe.Bytes[i - 1]);
        }
    }

    /// <summary>The synthetic SD 1.5-shaped UNet's time per call (batch 2, 64×64), from its run counter.</summary>
    private static double SyntheticUNetCall(DiffusionRuntimeOptions runtime, bool quick)
    {
        using var pipeline = StableDiffusionPipeline.Load(ModelFolders.SyntheticSd15, runtime);
        var options = new GenerationOptions { Steps = quick ? 2 : 3, Scheduler = "euler", GuidanceScale = 7.5f, Width = Size, Height = Size };
        pipeline.Generate("a photo", 1, new GenerationOptions { Steps = 1, Scheduler = "euler", GuidanceScale = 7.5f, Width = Size, Height = Size }).Image.Dispose();
        var before = pipeline.UNet.RunTime;
        long calls = pipeline.UNet.RunCount;
        pipeline.Generate("a photo", 2, options).Image.Dispose();
        return (pipeline.UNet.RunTime - before).TotalMilliseconds / (pipeline.UNet.RunCount - calls);
    }

    private static Microsoft.ML.Data.MLImage Solid(int size, byte grey)
    {
        var rgba = new byte[size * size * 4];
        Array.Fill(rgba, grey);
        return Microsoft.ML.Data.MLImage.CreateFromPixels(size, size, Microsoft.ML.Data.MLPixelFormat.Rgba32, rgba);
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

    private static string Spread(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return string.Create(Inv, $"{Format(sorted[sorted.Length / 2])} ({Format(sorted[0])}–{Format(sorted[^1])})");
    }

    private static string Format(double microseconds) =>
        Math.Abs(microseconds) >= 1000 ? string.Create(Inv, $"{microseconds / 1000:F2} ms") : string.Create(Inv, $"{microseconds:F0} µs");

    /// <summary>At each denoising report: the tick, the UNet's and ControlNets' time inside ONNX Runtime, the managed bytes allocated.</summary>
    private sealed class Probe(StableDiffusionPipeline pipeline, Control.ControlNet[] nets) : IProgress<DiffusionProgress>
    {
        public List<long> Ticks { get; } = new(64);
        public List<TimeSpan> Inside { get; } = new(64);
        public List<long> Bytes { get; } = new(64);

        public void Report(DiffusionProgress value)
        {
            if (value.Stage != DiffusionStage.Denoising) return;
            long tick = Stopwatch.GetTimestamp();
            var inside = pipeline.UNet.RunTime;
            foreach (var net in nets) inside += net.RunTime;
            Ticks.Add(tick);
            Inside.Add(inside);
            Bytes.Add(GC.GetAllocatedBytesForCurrentThread());
        }
    }
}

using MLNet.Diffusion.ModelBuilder.Demo;
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// The measurements BenchmarkDotNet does not make, printed as Markdown tables: the denoising loop's wall time
/// against the time inside ONNX Runtime's run (<see cref="Denoising.UNet.RunTime"/>), the managed bytes allocated
/// per step after warm-up, naive against fast end to end, and the peak working set of one SD-shaped generation.
/// </summary>
public static class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static DiffusionRuntimeOptions s_runtime = new();

    /// <summary>
    /// <c>report [--quick] [--only overhead] [--cuda [--cuda-graph]]</c> (CUDA needs <c>-p:Ort=gpu</c> at build time);
    /// <c>--only overhead</c> prints the first table alone (overhead outside ONNX Runtime and bytes per step).
    /// </summary>
    public static int Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        bool overheadOnly = args.SkipWhile(a => a != "--only").Skip(1).FirstOrDefault() == "overhead";
        s_runtime = new DiffusionRuntimeOptions
        {
            Device = args.Contains("--cuda") ? ExecutionDevice.Cuda : ExecutionDevice.Cpu,
            EnableCudaGraph = args.Contains("--cuda-graph"),
            FallbackToCpu = false,
        };
        Console.WriteLine($"Machine: {Environment.ProcessorCount} logical CPUs, {RuntimeInformationText()}; ONNX Runtime intra-op threads: {ThreadsText(new OnnxSessionFactory(new DiffusionRuntimeOptions()))}");
        Console.WriteLine();
        Console.WriteLine("| model | UNet batch | latent | steps (calls) | denoise wall | inside ORT Run | overhead | of which set-up; median step | per call | bytes/step after warm-up |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        Overhead("synthetic SD 1.5-shaped", ModelFolders.SyntheticSd15, 512, quick ? 3 : 8, useIoBinding: true);
        Overhead("synthetic SD 1.5-shaped, UseIoBinding = false", ModelFolders.SyntheticSd15, 512, quick ? 3 : 8, useIoBinding: false);
        Overhead("synthetic SDXL-shaped", ModelFolders.SyntheticSdxl, 1024, quick ? 2 : 4, useIoBinding: true);
        Overhead("synthetic SDXL-shaped", ModelFolders.SyntheticSdxl, 1024, quick ? 2 : 20, useIoBinding: true);
        Overhead("synthetic SDXL-shaped", ModelFolders.SyntheticSdxl, 512, quick ? 3 : 8, useIoBinding: true);
        // 28 steps: the default of diffusers' SD3 and FLUX.1-dev pipelines.
        Overhead("synthetic SD3-shaped (T5 256 tokens)", ModelFolders.SyntheticSd3, 512, quick ? 3 : 28, useIoBinding: true);
        Overhead("synthetic FLUX.1-dev-shaped (T5 512 tokens, no CFG)", ModelFolders.SyntheticFluxDev, 512, quick ? 3 : 28, useIoBinding: true);
        Overhead("demo", ModelFolders.Demo, DemoDataset.ImageSize, 25, useIoBinding: true);
        Overhead("demo, UseIoBinding = false", ModelFolders.Demo, DemoDataset.ImageSize, 25, useIoBinding: false);
        Console.WriteLine();
        OverheadSplit.Run(quick ? 1 : 3, s_runtime, quick);
        if (overheadOnly) return 0;

        Console.WriteLine("| model | path | text → image (median of runs) | vs naive |");
        Console.WriteLine("| --- | --- | --- | --- |");
        EndToEnd("demo", ModelFolders.Demo, DemoDataset.ImageSize, 25, quick ? 3 : 21);
        EndToEnd("synthetic SD 1.5-shaped", ModelFolders.SyntheticSd15, 512, quick ? 2 : 4, quick ? 1 : 3);
        Console.WriteLine();

        Console.WriteLine("| images per call (UNet batch) | median per call | images/s |");
        Console.WriteLine("| --- | --- | --- |");
        Throughput(quick ? [1, 4] : [1, 2, 4, 8, 16], quick ? 3 : 15);
        Console.WriteLine();

        Console.WriteLine("| ML.NET `GenerateImages` over a 48-row table, `BatchSize` | one pass over the image column | images/s |");
        Console.WriteLine("| --- | --- | --- |");
        TableThroughput(quick ? [1, 8] : [1, 2, 4, 8, 16], 48, quick ? 1 : 3);
        Console.WriteLine();

        Console.WriteLine("| model | model files | working set before load | peak working set | peak − before − model |");
        Console.WriteLine("| --- | --- | --- | --- | --- |");
        PeakMemory.Measure("synthetic SD 1.5-shaped (1 image, 512×512, CFG, 4 Euler steps)", ModelFolders.SyntheticSd15, 512, 4);
        PeakMemory.Measure($"demo (1 image, {DemoDataset.ImageSize}×{DemoDataset.ImageSize}, CFG, 25 Euler steps)", ModelFolders.Demo, DemoDataset.ImageSize, 25);
        PeakMemory.Measure("synthetic SD3-shaped with T5 (1 image, 512×512, CFG, 4 flow-matching Euler steps)", ModelFolders.SyntheticSd3, 512, 4);
        PeakMemory.Measure("synthetic SD3-shaped without T5 (DiffusionRuntimeOptions.WithoutT5)", ModelFolders.SyntheticSd3, 512, 4, "no-t5");
        PeakMemory.Measure("synthetic SD3-shaped with T5, DiffusionRuntimeOptions.LowMemory", ModelFolders.SyntheticSd3, 512, 4, "low-memory");
        PeakMemory.Measure("synthetic FLUX.1-dev-shaped (1 image, 512×512, 4 steps)", ModelFolders.SyntheticFluxDev, 512, 4);
        return 0;
    }

    /// <summary>
    /// <c>threads</c>: the demo model's text → image time under three thread-pool settings, in interleaved rounds (so a
    /// change in the machine's load hits all three): one thread; the physical-core count set explicitly (an unpinned
    /// pool); and the default (on an unrestricted machine ONNX Runtime's own pool of the same size, pinned).
    /// </summary>
    public static int Threads(int rounds = 4, int runsPerRound = 15)
    {
        var automatic = new OnnxSessionFactory(new DiffusionRuntimeOptions());
        var settings = new (string Name, int Threads)[]
        {
            ("IntraOpThreads = 1", 1),
            ($"IntraOpThreads = {automatic.IntraOpThreads} (explicit, unpinned)", automatic.IntraOpThreads),
            ($"IntraOpThreads = 0 (default: {ThreadsText(automatic)})", 0),
        };
        var options = new GenerationOptions { Steps = 25, Scheduler = "euler", GuidanceScale = 7.5f };
        var pipelines = settings.Select(s => StableDiffusionPipeline.Load(ModelFolders.Demo, new DiffusionRuntimeOptions { IntraOpThreads = s.Threads })).ToArray();
        try
        {
            var times = settings.Select(_ => new List<double>()).ToArray();
            var calls = settings.Select(_ => new List<double>()).ToArray();
            foreach (var p in pipelines)
                for (int i = 0; i < 5; i++) p.Generate("a red circle", i, options).Image.Dispose(); // warm-up
            for (int round = 0; round < rounds; round++)
                for (int k = 0; k < pipelines.Length; k++)
                    for (int i = 0; i < runsPerRound; i++)
                    {
                        var inside = pipelines[k].UNet.RunTime;
                        long runs = pipelines[k].UNet.RunCount;
                        times[k].Add(Time(() => pipelines[k].Generate("a red circle", i, options).Image.Dispose()));
                        calls[k].Add((pipelines[k].UNet.RunTime - inside).TotalMilliseconds / (pipelines[k].UNet.RunCount - runs));
                    }
            Console.WriteLine($"Demo model, text → image, 25 Euler steps, CFG; {rounds} interleaved rounds of {runsPerRound} images per setting.");
            Console.WriteLine();
            Console.WriteLine("| thread pool | median per image | 10th–90th percentile | median per UNet call |");
            Console.WriteLine("| --- | --- | --- | --- |");
            for (int k = 0; k < settings.Length; k++)
            {
                var t = times[k].Order().ToArray();
                var c = calls[k].Order().ToArray();
                Console.WriteLine(string.Create(Inv,
                    $"| {settings[k].Name} | {t[t.Length / 2]:F1} ms | {t[t.Length / 10]:F1}–{t[t.Length * 9 / 10]:F1} ms | {c[c.Length / 2]:F2} ms |"));
            }
        }
        finally
        {
            foreach (var p in pipelines) p.Dispose();
        }
        return 0;
    }

    /// <summary>Times the synthetic UNet alone, and the demo model's stages.</summary>
    public static int Probe()
    {
        using (var demo = StableDiffusionPipeline.Load(ModelFolders.Demo))
        {
            var o = new GenerationOptions { Steps = 25, Scheduler = "euler", GuidanceScale = 7.5f, Width = DemoDataset.ImageSize, Height = DemoDataset.ImageSize };
            for (int round = 0; round < 3; round++)
            {
                long t0 = Stopwatch.GetTimestamp();
                var c = demo.EncodeText(["a red circle"]);
                var u = demo.EncodeText([""]);
                long t1 = Stopwatch.GetTimestamp();
                var lat = demo.Denoise(c, u, [1], [7.5f], o);
                long t2 = Stopwatch.GetTimestamp();
                foreach (var im in demo.Decode(lat, 1, DemoDataset.ImageSize / 8, DemoDataset.ImageSize / 8)) im.Dispose();
                long t3 = Stopwatch.GetTimestamp();
                Console.WriteLine($"demo: encode {Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds:F1} ms, denoise {Stopwatch.GetElapsedTime(t1, t2).TotalMilliseconds:F1} ms, decode {Stopwatch.GetElapsedTime(t2, t3).TotalMilliseconds:F1} ms");
            }
        }
        using var pipeline = StableDiffusionPipeline.Load(ModelFolders.SyntheticSd15);
        var options = new GenerationOptions { Steps = 3, Scheduler = "euler", Width = 512, Height = 512 };
        pipeline.Generate("warm up", 1, options).Image.Dispose();
        var before = pipeline.UNet.RunTime;
        long calls = pipeline.UNet.RunCount;
        var clock = Stopwatch.StartNew();
        pipeline.Generate("a photo", 2, options).Image.Dispose();
        clock.Stop();
        Console.WriteLine($"{(pipeline.UNet.RunTime - before).TotalMilliseconds / (pipeline.UNet.RunCount - calls):F1} ms per UNet call (batch 2, 64×64); whole generation {clock.ElapsedMilliseconds} ms; {ModelFolders.SyntheticSd15Options.Flops(2, 64, 64) / 1e9:F2} GFLOP per call");
        return 0;
    }

    private static void Overhead(string name, string folder, int size, int stepCount, bool useIoBinding)
    {
        var runtime = s_runtime.Clone();
        runtime.UseIoBinding = useIoBinding;
        runtime.EnableCudaGraph &= useIoBinding;
        using var pipeline = StableDiffusionPipeline.Load(folder, runtime);
        var options = new GenerationOptions { Steps = stepCount, Scheduler = SchedulerFor(folder), GuidanceScale = 7.5f, Width = size, Height = size };
        // The prompt's embeddings and the model's default negative ones (the empty prompt's, or SDXL's zeros), with the
        // pooled embeddings where the UNet takes them: the loop as Generate runs it, without the text encoder and the VAE.
        var prompt = pipeline.EncodeTexts(["a red circle"], null, CancellationToken.None)[0];
        var negative = pipeline.UnconditionalEmbedding;
        PromptEmbedding[] embeddings = [new(prompt.Hidden, negative.Hidden) { ConditionalPooled = prompt.Pooled, UnconditionalPooled = negative.Pooled }];
        pipeline.Denoise([new ImagePrompt("", 1) { GuidanceScale = 7.5f }], embeddings, options, null, CancellationToken.None); // warm-up
        var probe = new StepProbe(pipeline);
        var runBefore = pipeline.UNet.RunTime;
        long callsBefore = pipeline.UNet.RunCount, rowsBefore = pipeline.UNet.RowCount;
        long start = Stopwatch.GetTimestamp();
        pipeline.Denoise([new ImagePrompt("", 2) { GuidanceScale = 7.5f }], embeddings, options, probe, CancellationToken.None);
        long stop = Stopwatch.GetTimestamp();
        var wall = Stopwatch.GetElapsedTime(start, stop);
        var inside = pipeline.UNet.RunTime - runBefore;
        long calls = pipeline.UNet.RunCount - callsBefore, rows = (pipeline.UNet.RowCount - rowsBefore) / Math.Max(calls, 1);
        var perStep = probe.Deltas.Skip(1).ToArray();
        string bytes = perStep.Length == 0 ? "–" : perStep.Min() == perStep.Max() ? perStep[0].ToString(Inv) : $"{perStep.Min()}–{perStep.Max()}";
        name += $" [{pipeline.Device}, {pipeline.UNet.RunPath}{(pipeline.UNet.CudaGraph ? ", CUDA graph" : "")}]";
        // Where the host time goes: before the first step's report and after the last (the per-batch set-up: binding,
        // noise, embeddings, and the hand-back), against the median step's time outside Run.
        var setUp = Stopwatch.GetElapsedTime(start, probe.Times[0]) - (probe.Runs[0] - runBefore) + Stopwatch.GetElapsedTime(probe.Times[^1], stop);
        var steps = Enumerable.Range(1, probe.Times.Count - 1)
            .Select(i => (Stopwatch.GetElapsedTime(probe.Times[i - 1], probe.Times[i]) - (probe.Runs[i] - probe.Runs[i - 1])).TotalMilliseconds).Order().ToArray();
        string split = string.Create(Inv, $"{setUp.TotalMilliseconds:F2} ms; {(steps.Length == 0 ? 0 : steps[steps.Length / 2]):F2} ms");
        Console.WriteLine(string.Create(Inv,
            $"| {name} | {rows} | {pipeline.UNet.LatentChannels}×{size / 8}×{size / 8} | {stepCount} ({calls}) | {wall.TotalMilliseconds:F1} ms | {inside.TotalMilliseconds:F1} ms | {(wall - inside).TotalMilliseconds:F2} ms ({(wall - inside) / wall * 100:F2} %) | {split} | {wall.TotalMilliseconds / calls:F2} ms | {bytes} |"));
    }

    private static void EndToEnd(string name, string folder, int size, int steps, int runs)
    {
        var options = new GenerationOptions { Steps = steps, Scheduler = "euler", GuidanceScale = 7.5f, Width = size, Height = size };
        using var pipeline = StableDiffusionPipeline.Load(folder, s_runtime);
        using var baseline = new NaiveStableDiffusion(folder);
        byte[] fastPixels = Once(() => { using var r = pipeline.Generate("a red circle", 3, options).Image; return r.Pixels.ToArray(); });
        byte[] naivePixels = baseline.Generate("a red circle", 3, steps, 7.5f, size, size);
        // Alternate the two so that a change in the machine's load hits both alike.
        var fast = new double[runs];
        var naive = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            naive[i] = Time(() => baseline.Generate("a red circle", 3, steps, 7.5f, size, size));
            fast[i] = Time(() => pipeline.Generate("a red circle", 3, options).Image.Dispose());
        }
        Array.Sort(fast);
        Array.Sort(naive);
        double f = fast[runs / 2], n = naive[runs / 2];
        int maxDiff = 0;
        for (int i = 0; i < Math.Min(fastPixels.Length, naivePixels.Length); i++) maxDiff = Math.Max(maxDiff, Math.Abs(fastPixels[i] - naivePixels[i]));
        Console.WriteLine(string.Create(Inv, $"| {name} ({steps} Euler steps, CFG) | naive (DenseTensor/NamedOnnxValue, scalar) | {n:F1} ms | 1× |"));
        Console.WriteLine(string.Create(Inv, $"| {name} ({steps} Euler steps, CFG) | MLNet.Diffusion | {f:F1} ms | {n / f:F2}× (largest pixel difference {maxDiff}/255) |"));
    }

    /// <summary>Images per second on the demo model by batch size: one <c>Generate</c> call of k prompts (UNet batch 2k with CFG).</summary>
    private static void Throughput(int[] batches, int runs)
    {
        using var pipeline = StableDiffusionPipeline.Load(ModelFolders.Demo, s_runtime);
        var options = new GenerationOptions { Steps = 25, Scheduler = "euler", GuidanceScale = 7.5f };
        string[] words = ["red", "yellow", "green", "blue", "purple"];
        var calls = batches.Select(batch =>
        {
            var prompts = Enumerable.Range(0, batch).Select(i => new ImagePrompt($"a {words[i % words.Length]} star", i)).ToArray();
            return (Action)(() => { foreach (var image in pipeline.Generate(prompts, options)) image.Image.Dispose(); });
        }).ToArray();
        foreach (var call in calls) call(); // warm-up at each shape
        // Rounds over all batch sizes, so that a change in the machine's load hits every size alike.
        var times = batches.Select(_ => new List<double>()).ToArray();
        for (int round = 0; round < runs; round++)
            for (int k = 0; k < batches.Length; k++) times[k].Add(Time(calls[k]));
        for (int k = 0; k < batches.Length; k++)
        {
            double median = times[k].Order().ElementAt(runs / 2);
            Console.WriteLine(string.Create(Inv, $"| {batches[k]} ({2 * batches[k]}) | {median:F1} ms | {batches[k] / median * 1000:F1} |"));
        }
    }

    /// <summary>
    /// Images/s through the ML.NET transform: one cursor pass over the image column of <c>GenerateImages</c> on a table
    /// of <paramref name="rows"/> prompts, per <see cref="DiffusionOptions.BatchSize"/> (median of <paramref name="runs"/>
    /// passes, rounds interleaved across batch sizes). Every transformer shares one loaded model (one MLContext).
    /// </summary>
    private static void TableThroughput(int[] batchSizes, int rows, int runs)
    {
        var ml = new MLContext(seed: 1);
        string[] words = ["red", "yellow", "green", "blue", "purple"];
        var table = ml.Data.LoadFromEnumerable(Enumerable.Range(0, rows).Select(i => new TableRow { Prompt = $"a {words[i % words.Length]} star" }).ToArray());
        var transformers = batchSizes.Select(b => ml.Transforms.GenerateImages(new DiffusionOptions
        {
            ModelPath = ModelFolders.Demo, Steps = 25, Scheduler = "euler", GuidanceScale = 7.5f, BatchSize = b,
            GpuDeviceId = s_runtime.Device == ExecutionDevice.Cuda ? s_runtime.DeviceId : null, FallbackToCpu = false,
        }).Fit(table)).ToArray();
        try
        {
            void Pass(ITransformer transformer)
            {
                var view = transformer.Transform(table);
                var column = view.Schema["Image"];
                using var cursor = view.GetRowCursor([column]);
                var getter = cursor.GetGetter<MLImage>(column);
                MLImage image = null!;
                int count = 0;
                while (cursor.MoveNext()) { getter(ref image); count++; }
                image?.Dispose();
                if (count != rows) throw new InvalidOperationException($"{count} images for {rows} rows");
            }
            foreach (var t in transformers) Pass(t); // warm-up at each batch size
            var times = batchSizes.Select(_ => new List<double>()).ToArray();
            for (int round = 0; round < runs; round++)
                for (int k = 0; k < transformers.Length; k++) times[k].Add(Time(() => Pass(transformers[k])));
            for (int k = 0; k < batchSizes.Length; k++)
            {
                double median = times[k].Order().ElementAt(runs / 2);
                Console.WriteLine(string.Create(Inv, $"| {batchSizes[k]} | {median:F0} ms | {rows / median * 1000:F1} |"));
            }
        }
        finally
        {
            foreach (var t in transformers) t.Dispose();
        }
    }

    /// <summary>A row of the table <see cref="TableThroughput"/> generates from.</summary>
    private sealed class TableRow
    {
        public string Prompt { get; set; } = "";
    }

    /// <summary>The scheduler the measurements use: Euler, or the folder's own flow-matching one for SD3 and FLUX.1.</summary>
    internal static string? SchedulerFor(string folder) => ModelFolders.IsFlow(folder) ? null : "euler";

    private static double Time(Action action)
    {
        long start = Stopwatch.GetTimestamp();
        action();
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    private static T Once<T>(Func<T> f) => f();

    private static string ThreadsText(OnnxSessionFactory factory) =>
        factory.PinnedByOnnxRuntime ? $"{factory.IntraOpThreads} (ONNX Runtime's default pool, pinned)" : $"{factory.IntraOpThreads} (unpinned)";

    private static string RuntimeInformationText() =>
        $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription.Trim()}, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}";

    /// <summary>Managed bytes allocated on this thread between consecutive progress reports (one step each).</summary>
    private sealed class StepProbe(StableDiffusionPipeline pipeline) : IProgress<DiffusionProgress>
    {
        private long _last = -1;
        public List<long> Deltas { get; } = new(256);
        public List<long> Times { get; } = new(256);
        public List<TimeSpan> Runs { get; } = new(256);

        public void Report(DiffusionProgress value)
        {
            Times.Add(Stopwatch.GetTimestamp());
            Runs.Add(pipeline.UNet.RunTime);
            long now = GC.GetAllocatedBytesForCurrentThread();
            if (_last >= 0) Deltas.Add(now - _last);
            _last = GC.GetAllocatedBytesForCurrentThread();
        }
    }
}

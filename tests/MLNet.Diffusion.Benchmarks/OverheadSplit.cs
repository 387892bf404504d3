using System.Diagnostics;
using System.Globalization;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// The host work of the denoising loop, split: the one-off set-up per generation before the first UNet call (plan,
/// scheduler, bindings, embeddings, noise), the host cost per step (everything between two UNet calls: scaling the model
/// input, writing it into the binding, guidance, the non-finite checks, the scheduler step and the progress report) and
/// the hand-out after the last call (each image's final latents into an array of its own), in microseconds, by model,
/// latent size and run path, against the budget: ≤ 50 µs per step at 4×64×64 and ≤ 150 µs at 4×128×128 (UNet batch 2),
/// ≤ 2 ms set-up, and the IO-binding path never slower than plain <c>Run</c>: slower means slower in more of the paired
/// generations than chance explains (a one-sided sign test per row, <see cref="PairedComparison.SignTest"/>, at 5 % over all the rows
/// together by Holm's method, <see cref="PairedComparison.HolmRejects"/>).
/// </summary>
/// <remarks>
/// Each configuration runs <see cref="PerRound"/> generations (one image, classifier-free guidance: UNet batch 2) per
/// round, the rounds interleaved over all configurations so that a change in the machine's load hits every one alike, and
/// the IO-binding and plain-Run configurations of one model back to back, generation by generation, so that they pair.
/// Times come from <see cref="Stopwatch"/> ticks at each progress report and from <c>UNet.RunTime</c> (the time inside
/// ONNX Runtime's run): a step's host cost is the time between two reports less the run between them; the set-up is the
/// time to the first report less the first run and the first step's host work (counted at the median step's cost); the
/// hand-out is the time from the last report to the return. Both run paths of a model run on one loaded pipeline, whose
/// UNet switches path between their generations (<c>UNet.RunPath</c>): the comparison then differs in the run path alone,
/// not also in two sessions' memory placement and threads.
/// The figures are the steady state of a loaded model: each pipeline first runs 64 small steps, so that the runtime has
/// compiled the loop's methods fully (the first generations of a process run them less optimised), and one generation of
/// each shape (the UNet then keeps its bindings for the next).
/// </remarks>
public static class OverheadSplit
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Generations per configuration and round.</summary>
    public const int PerRound = 3;

    private sealed record Config(string Model, string Folder, int Size, int Steps, bool IoBinding, int Channels = 4)
    {
        public int Latent => Size / 8;
        /// <summary>By latent values: 4×64×64 (SD 1.5 at 512²) ≤ 50 µs; up to 4×128×128 (SDXL at 1024², or SD3's and FLUX's 16×64×64 at 512²) ≤ 150 µs.</summary>
        public double StepBudgetMicroseconds => Channels * Latent * Latent <= 4 * 64 * 64 ? 50 : 150;
        public List<double> SetUp { get; } = [];
        public List<double> HandOut { get; } = [];
        public List<double> Step { get; } = [];
        public List<double> Overhead { get; } = [];
        public List<double> Wall { get; } = [];
        public List<double> StepWall { get; } = [];
        public int Gen2Collections { get; set; }
    }

    /// <summary>Prints the split table for <paramref name="rounds"/> interleaved rounds.</summary>
    public static void Run(int rounds, DiffusionRuntimeOptions runtime, bool quick)
    {
        var configs = new List<Config>();
        foreach (bool io in new[] { true, false })
        {
            configs.Add(new("tiny UNet, SD 1.5 contract", ModelFolders.TinySd15, 512, 20, io));
            configs.Add(new("tiny UNet, SDXL contract", ModelFolders.TinySdxl, 512, 20, io));
            configs.Add(new("tiny UNet, SDXL contract", ModelFolders.TinySdxl, 1024, 20, io));
            configs.Add(new("synthetic SD 1.5-shaped", ModelFolders.SyntheticSd15, 512, quick ? 3 : 6, io));
            configs.Add(new("synthetic SDXL-shaped", ModelFolders.SyntheticSdxl, 512, quick ? 3 : 6, io));
            configs.Add(new("synthetic SDXL-shaped", ModelFolders.SyntheticSdxl, 1024, quick ? 2 : 4, io));
            configs.Add(new("tiny transformer, SD3 contract", ModelFolders.TinySd3, 512, 20, io, 16));
            configs.Add(new("tiny transformer, FLUX.1-dev contract (no CFG)", ModelFolders.TinyFluxDev, 512, 20, io, 16));
            configs.Add(new("synthetic SD3-shaped", ModelFolders.SyntheticSd3, 512, quick ? 2 : 4, io, 16));
            configs.Add(new("synthetic FLUX.1-dev-shaped (no CFG)", ModelFolders.SyntheticFluxDev, 512, quick ? 2 : 4, io, 16));
        }
        // One pipeline per model, both paths on its session; with CUDA graphs (fixed device buffers, which cannot be switched)
        // the plain-Run configuration loads a pipeline of its own.
        var pipelines = new Dictionary<(string, bool), StableDiffusionPipeline>();
        (string, bool) KeyOf(string folder, bool io) => (folder, !io && runtime.EnableCudaGraph);
        try
        {
            foreach (var c in configs)
                if (!pipelines.ContainsKey(KeyOf(c.Folder, c.IoBinding)))
                {
                    var options = runtime.Clone();
                    options.UseIoBinding = true;
                    options.EnableCudaGraph &= c.IoBinding;
                    pipelines[KeyOf(c.Folder, c.IoBinding)] = StableDiffusionPipeline.Load(c.Folder, options);
                }
            var embeddings = pipelines.ToDictionary(p => p.Key, p => Embeddings(p.Value));
            // Steady state: enough small steps on each pipeline for the runtime to compile the loop's methods fully
            // (tiered compilation promotes a method after 30 calls, in the background), then one generation per shape.
            foreach (var (key, pipeline) in pipelines)
                Generate(pipeline, embeddings[key], new Config("warm-up", key.Item1, 128, 64, key.Item2), record: false);
            Thread.Sleep(500);
            foreach (var c in configs) Generate(pipelines[KeyOf(c.Folder, c.IoBinding)], embeddings[KeyOf(c.Folder, c.IoBinding)], c, record: false); // warm-up
            // The two run paths of one model and size run back to back, alternating which goes first, so that each IO-binding
            // generation has a plain-Run twin made moments apart (the pairs of the sign test below); the models take turns
            // by round, forwards then backwards, so that a change in the machine's load hits every model alike.
            var pairs = configs.Where(c => c.IoBinding).Select(io => (Io: io, Plain: configs.Single(c => !c.IoBinding && c.Folder == io.Folder && c.Size == io.Size))).ToArray();
            for (int round = 0; round < rounds; round++)
                foreach (var (io, plain) in round % 2 == 0 ? pairs : pairs.AsEnumerable().Reverse())
                    for (int i = 0; i < PerRound; i++)
                        foreach (var c in (i + round) % 2 == 0 ? [io, plain] : new[] { plain, io })
                            Generate(pipelines[KeyOf(c.Folder, c.IoBinding)], embeddings[KeyOf(c.Folder, c.IoBinding)], c, record: true);
        }
        finally
        {
            foreach (var p in pipelines.Values) p.Dispose();
        }

        Console.WriteLine($"Host work per generation, split ({rounds} interleaved rounds × {PerRound} generations per row; median, and min–max in brackets; 1 image with guidance: UNet batch 2, FLUX.1 batch 1; SD3 and FLUX.1 with their folders' flow-matching Euler scheduler):");
        Console.WriteLine();
        Console.WriteLine("| model | latent | path | steps | set-up per generation | host per step | hand-out | overhead per generation | wall per generation | gen-2 GCs | budget (step; set-up ≤ 2 ms) |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var c in configs)
        {
            double step = Median(c.Step), setUp = Median(c.SetUp);
            // The set-up budget is the issue's, for the UNet contracts' shapes; SD3's and FLUX.1's set-up is shown against none:
            // it copies their T5-wide conditioning (SD3: [2, 77 + 256, 4096] floats, 11 MB) into the binding.
            string setUpMet = c.Channels != 4 ? "— (flow; no set-up budget)" : setUp <= 2000 ? "met" : "not met";
            string met = $"{(step <= c.StepBudgetMicroseconds ? "met" : "not met")} (≤ {c.StepBudgetMicroseconds:F0} µs); {setUpMet}";
            Console.WriteLine(string.Create(Inv,
                $"| {c.Model} | {c.Channels}×{c.Latent}×{c.Latent} | {(c.IoBinding ? "IoBinding" : "SessionRun (UseIoBinding = false)")} | {c.Steps} | {Spread(c.SetUp)} | {Spread(c.Step)} | {Spread(c.HandOut)} | {Spread(c.Overhead)} | {Spread(c.Wall)} | {c.Gen2Collections} | {met} |"));
        }
        Console.WriteLine();
        // A step's wall time (host work and the run, ONNX Runtime's own per-call cost included) compares the paths whole;
        // with the tiny UNet it is nearly all overhead, with the synthetic UNets mostly the model's time (and its noise).
        // "Never slower" is judged on the pairs the interleaving makes (generation k of each path ran moments apart): a
        // one-sided sign test per row, and Holm's method over the rows, so that the chance of calling any row slower when no
        // path is slower stays at 5 % however many rows the table has.
        var compared = configs.Where(c => c.IoBinding)
            .Select(io => (Io: io, Plain: configs.Single(c => !c.IoBinding && c.Folder == io.Folder && c.Size == io.Size)))
            .Select(r => (r.Io, r.Plain, Test: PairedComparison.SignTest(r.Io.StepWall, r.Plain.StepWall))).ToArray();
        var rejected = PairedComparison.HolmRejects([.. compared.Select(r => r.Test.P)], 0.05);
        for (int row = 0; row < compared.Length; row++)
        {
            var (io, plain, (slower, pairs, p)) = compared[row];
            double a = Median(io.Overhead), b = Median(plain.Overhead), sa = Median(io.StepWall), sb = Median(plain.StepWall);
            string verdict = rejected[row] ? "slower (not met)" : sa <= sb ? "not slower (met)" : "not slower beyond noise (met)";
            Console.WriteLine(string.Create(Inv,
                $"- {io.Model} {io.Channels}×{io.Latent}×{io.Latent}: IO binding against plain Run, medians: step wall {Spread(io.StepWall)} vs {Spread(plain.StepWall)}; outside ORT per generation {Format(a)} vs {Format(b)}; slower in {slower} of {pairs} paired generations (sign test p = {p:F3}; Holm over {compared.Length} rows at 5 %): {verdict}"));
        }
        Console.WriteLine();
    }

    private static PromptEmbedding[] Embeddings(StableDiffusionPipeline pipeline)
    {
        var prompt = pipeline.EncodeTexts(["a red circle"], null, CancellationToken.None)[0];
        var negative = pipeline.UnconditionalEmbedding;
        return [new(prompt.Hidden, negative.Hidden) { ConditionalPooled = prompt.Pooled, UnconditionalPooled = negative.Pooled }];
    }

    /// <summary>One generation of <paramref name="c"/>, on the run path it names.</summary>
    private static void Generate(StableDiffusionPipeline pipeline, PromptEmbedding[] embeddings, Config c, bool record)
    {
        var unet = pipeline.UNet;
        var loadedPath = unet.RunPath;
        if (!c.IoBinding && loadedPath != UNetRunPath.SessionRun) unet.RunPath = UNetRunPath.SessionRun;
        try
        {
            Generate(pipeline, embeddings, c, record, new Probe(pipeline, c.Steps));
        }
        finally
        {
            unet.RunPath = loadedPath;
        }
    }

    private static void Generate(StableDiffusionPipeline pipeline, PromptEmbedding[] embeddings, Config c, bool record, Probe probe)
    {
        var options = new GenerationOptions { Steps = c.Steps, Scheduler = Report.SchedulerFor(c.Folder), GuidanceScale = 7.5f, Width = c.Size, Height = c.Size };
        var runBefore = pipeline.UNet.RunTime;
        int gen2 = GC.CollectionCount(2);
        long start = Stopwatch.GetTimestamp();
        probe.Start(start, runBefore);
        pipeline.Denoise([new ImagePrompt("", 2) { GuidanceScale = 7.5f }], embeddings, options, probe, CancellationToken.None);
        long stop = Stopwatch.GetTimestamp();
        if (!record) return;
        c.Gen2Collections += GC.CollectionCount(2) - gen2;
        double overhead = (Stopwatch.GetElapsedTime(start, stop) - (pipeline.UNet.RunTime - runBefore)).TotalMicroseconds;
        var steps = probe.StepMicroseconds().Order().ToArray();
        double median = steps[steps.Length / 2];
        c.Step.Add(median);
        var walls = probe.StepWallMicroseconds().Order().ToArray();
        c.StepWall.Add(walls[walls.Length / 2]);
        c.SetUp.Add(probe.BeforeFirstRunMicroseconds() - median); // the first step's host work at the median step's cost
        c.HandOut.Add(Stopwatch.GetElapsedTime(probe.LastTick, stop).TotalMicroseconds);
        c.Overhead.Add(overhead);
        c.Wall.Add(Stopwatch.GetElapsedTime(start, stop).TotalMicroseconds);
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

    private static string Spread(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return string.Create(Inv, $"{Format(sorted[sorted.Length / 2])} ({Format(sorted[0])}–{Format(sorted[^1])})");
    }

    private static string Format(double microseconds) =>
        microseconds >= 1000 ? string.Create(Inv, $"{microseconds / 1000:F2} ms") : string.Create(Inv, $"{microseconds:F0} µs");

    /// <summary>The tick and the UNet run time at each progress report (one per UNet call).</summary>
    private sealed class Probe(StableDiffusionPipeline pipeline, int capacity) : IProgress<DiffusionProgress>
    {
        private readonly long[] _ticks = new long[capacity + 1];
        private readonly TimeSpan[] _runs = new TimeSpan[capacity + 1];
        private int _count;

        public void Start(long tick, TimeSpan run)
        {
            _ticks[0] = tick;
            _runs[0] = run;
            _count = 1;
        }

        public void Report(DiffusionProgress value)
        {
            if (_count == _ticks.Length) return;
            _ticks[_count] = Stopwatch.GetTimestamp();
            _runs[_count++] = pipeline.UNet.RunTime;
        }

        /// <summary>The time from the start to the first report, less the first run.</summary>
        public double BeforeFirstRunMicroseconds() => (Stopwatch.GetElapsedTime(_ticks[0], _ticks[1]) - (_runs[1] - _runs[0])).TotalMicroseconds;

        /// <summary>The tick of the last report.</summary>
        public long LastTick => _ticks[_count - 1];

        /// <summary>The wall time of steps 2…n: between consecutive reports, the run included.</summary>
        public IEnumerable<double> StepWallMicroseconds()
        {
            for (int i = 2; i < _count; i++) yield return Stopwatch.GetElapsedTime(_ticks[i - 1], _ticks[i]).TotalMicroseconds;
        }

        /// <summary>The host time of steps 2…n: between consecutive reports, less the run between them.</summary>
        public IEnumerable<double> StepMicroseconds()
        {
            for (int i = 2; i < _count; i++)
                yield return (Stopwatch.GetElapsedTime(_ticks[i - 1], _ticks[i]) - (_runs[i] - _runs[i - 1])).TotalMicroseconds;
        }
    }
}

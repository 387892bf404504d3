using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.ModelBuilder.Synthetic;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// <c>gpu-check [--device N] [--steps N] [--runs N] [--quick] [--cpu]</c> (<c>eng/gpu-check.sh</c> builds with the GPU package and runs
/// it): the synthetic SD 1.5-shaped (4×64×64) and SDXL-shaped (4×128×128) models with float16 UNets on CUDA, printed as
/// Markdown tables: the host cost of a step (the time between two UNet calls outside ONNX Runtime's run: median and
/// 10th–90th percentile over the steps of interleaved runs) and the one-off set-up per generation, the UNet time per call,
/// and the host ↔ device copies per step on each run path (plain <c>Run</c>, IO binding, fixed buffers with a CUDA graph);
/// then images/s by batch size (1, 2, 4 images, classifier-free guidance). Where no GPU or CUDA runtime can be used it
/// prints what is missing and how to fix it and exits with <see cref="ExitNoCuda"/>. <c>--cpu</c> is a dry run of the check's
/// own code on the CPU at a quarter of the image sizes (no CUDA graph there); its figures are not GPU figures.
/// </summary>
/// <remarks>
/// The copies counted are those the bindings cause (<see cref="Denoising.UNet.HostToDeviceCopies"/>): a host buffer bound
/// to the session or written into a device buffer, and the prediction read back. The schedulers run on the host, so two
/// latent-sized copies per step are inherent (the sample in, the prediction out), plus the timestep's few bytes. Copies
/// ONNX Runtime adds inside the graph (Memcpy nodes around nodes it places on the CPU) are reported from its own log.
/// </remarks>
public static class GpuCheck
{
    /// <summary>The exit code when CUDA cannot be used (no GPU, driver, CUDA/cuDNN libraries, or a CPU-only ONNX Runtime).</summary>
    public const int ExitNoCuda = 3;

    /// <summary>The exit code for arguments the check does not take.</summary>
    public const int ExitUsage = 2;

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Runs the check, printing to standard output; returns the exit code.</summary>
    public static int Run(string[] args) => Run(args, Console.Out);

    /// <summary>Runs the check, printing to <paramref name="output"/>; returns the exit code (0, <see cref="ExitUsage"/> or <see cref="ExitNoCuda"/>).</summary>
    public static int Run(string[] args, TextWriter output)
    {
        int device = 0, steps = 20, runs = 5;
        bool quick = false, cpu = false;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quick": quick = true; steps = 4; runs = 2; break;
                case "--cpu": cpu = true; break;
                case "--device" when i + 1 < args.Length && int.TryParse(args[i + 1], Inv, out device) && device >= 0: i++; break;
                case "--steps" when i + 1 < args.Length && int.TryParse(args[i + 1], Inv, out steps) && steps >= 2: i++; break;
                case "--runs" when i + 1 < args.Length && int.TryParse(args[i + 1], Inv, out runs) && runs >= 1: i++; break;
                default:
                    output.WriteLine($"gpu-check: '{args[i]}' is not an option or lacks a valid value. Usage: gpu-check [--device N (≥ 0)] [--steps N (≥ 2, default 20)] [--runs N (≥ 1, default 5)] [--quick] [--cpu (a dry run on the CPU)]");
                    return ExitUsage;
            }
        }

        var log = new RecordingLogger();
        if (!cpu && Preflight(device, log) is { } problem)
        {
            output.WriteLine(problem);
            return ExitNoCuda;
        }

        var target = cpu ? new Target(ExecutionDevice.Cpu, 0, 4) : new Target(ExecutionDevice.Cuda, device, 1);
        output.WriteLine($"gpu-check: {(cpu ? "DRY RUN on the CPU at a quarter of the image sizes (not GPU figures)" : $"CUDA device {device}")}; ONNX Runtime {OrtEnv.Instance().GetVersionString()}; {System.Runtime.InteropServices.RuntimeInformation.OSDescription.Trim()}, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}");
        output.WriteLine($"Float16 UNets, Euler, classifier-free guidance 7.5, {steps} steps, {runs} interleaved runs per row.");
        var models = new (string Name, string Folder, int Size)[]
        {
            ("synthetic SD 1.5-shaped, fp16", Sd15Fp16, 512 / target.SizeDivisor),
            ("synthetic SDXL-shaped, fp16", SdxlFp16, 1024 / target.SizeDivisor),
        };
        output.WriteLine();
        output.WriteLine("| model | path | per-step host cost, median (10th–90th) | set-up per generation | UNet per call (batch 2) | copies per step: host → device | device → host | Memcpy nodes in the graph |");
        output.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var model in models) StepCosts(output, log, target, model.Name, model.Folder, model.Size, steps, runs);
        output.WriteLine();
        output.WriteLine("| model | images per call (UNet batch) | text → image, median | UNet per call | images/s |");
        output.WriteLine("| --- | --- | --- | --- | --- |");
        foreach (var model in models) Throughput(output, log, target, model.Name, model.Folder, model.Size, steps, quick ? [1, 2] : [1, 2, 4], runs);
        output.WriteLine();
        output.WriteLine("Copies per step are those the bindings cause (host buffers bound to the session or written to device buffers, the prediction read back). " +
            "The schedulers run on the host, so the sample in and the prediction out cross at every step on every path (inherent), and the timestep's few bytes with them; " +
            "plain Run also sends the text embeddings at every step.");
        return 0;
    }

    /// <summary>
    /// Opens a one-node model on CUDA as the library does, with <see cref="DiffusionRuntimeOptions.FallbackToCpu"/> off:
    /// null when that works, else the message to print (what failed, what this build's ONNX Runtime offers, how to fix it).
    /// </summary>
    internal static string? Preflight(int device, ILogger? logger = null)
    {
        string probe = Path.Combine(Path.GetTempPath(), $"mlnd-gpu-check-{Environment.ProcessId}.onnx");
        try
        {
            var g = new OnnxGraphBuilder("gpu_check_probe");
            var x = g.Input("x", OnnxElementType.Float, "n");
            g.NodeNamed("Add", [x, x], "y");
            g.Output("y", OnnxElementType.Float, "n");
            g.Save(probe);
            var factory = new OnnxSessionFactory(new DiffusionRuntimeOptions { Device = ExecutionDevice.Cuda, DeviceId = device, FallbackToCpu = false, Logger = logger });
            try
            {
                using var session = factory.Create(probe);
                return null;
            }
            catch (InvalidOperationException e)
            {
                return NoCudaMessage(e.Message, OrtEnv.Instance().GetAvailableProviders());
            }
        }
        finally
        {
            File.Delete(probe);
        }
    }

    /// <summary>The message printed when CUDA cannot be used: <paramref name="reason"/> and the fix for this build's <paramref name="providers"/>.</summary>
    internal static string NoCudaMessage(string reason, IReadOnlyCollection<string> providers)
    {
        bool cudaBuilt = providers.Contains("CUDAExecutionProvider");
        string fix = cudaBuilt
            ? $"  This build has ONNX Runtime's CUDA provider (ONNX Runtime {OrtEnv.Instance().GetVersionString()}), but it could not start. It needs an NVIDIA GPU\n" +
              "  with its driver (`nvidia-smi` lists the GPU), and the CUDA and cuDNN runtime libraries this ONNX Runtime release was built for, where the\n" +
              "  loader finds them (LD_LIBRARY_PATH on Linux, PATH on Windows): for 1.32, CUDA 13 (libcudart.so.13, libcublas.so.13, libcublasLt.so.13,\n" +
              "  libcurand.so.10) and cuDNN 9 (libcudnn.so.9). The library named under 'What failed' is the first one missing.\n" +
              "  With --device N, N must be a GPU that `nvidia-smi` lists."
            : "  This build carries ONNX Runtime's CPU package (Microsoft.ML.OnnxRuntime), which has no CUDA provider. Build with the GPU package:\n" +
              "  eng/gpu-check.sh (it builds with -p:Ort=gpu and runs this check), or\n" +
              "  dotnet build -c Release -p:Ort=gpu tests/MLNet.Diffusion.Benchmarks and run its gpu-check mode.";
        return "gpu-check: CUDA cannot be used, so nothing was measured.\n" +
               $"  What failed: {reason}\n" +
               $"  ONNX Runtime's execution providers in this build: {string.Join(", ", providers)}.\n" +
               fix;
    }

    /// <summary>The synthetic SD 1.5-shaped folder with a float16 UNet.</summary>
    private static string Sd15Fp16 => Fp16Folder("synthetic-sd15-fp16", ModelFolders.SyntheticSd15Options with { Float16 = true });

    /// <summary>The synthetic SDXL-shaped folder with a float16 UNet.</summary>
    private static string SdxlFp16 => Fp16Folder("synthetic-sdxl-fp16", ModelFolders.SyntheticSdxlOptions with { Float16 = true });

    private static string Fp16Folder(string name, SyntheticModelOptions options) =>
        ModelFolders.Synthetic(name, options.ToString(), dir => SyntheticModelFolder.Write(dir, options));

    private static string Fp16Folder(string name, SyntheticXlModelOptions options) =>
        ModelFolders.Synthetic(name, options.ToString(), dir => SyntheticXlModelFolder.Write(dir, options));

    /// <summary>Per run path: host cost per step and per generation, UNet time per call, copies per step, Memcpy nodes.</summary>
    private static void StepCosts(TextWriter output, RecordingLogger log, Target target, string name, string folder, int size, int steps, int runs)
    {
        var paths = new (string Name, bool IoBinding, bool Graph)[] { ("Run", false, false), ("IO binding", true, false), ("fixed buffers, CUDA graph asked for", true, true) };
        var pipelines = new StableDiffusionPipeline?[paths.Length];
        var failures = new string?[paths.Length];
        var memcpy = new string[paths.Length];
        try
        {
            var options = new GenerationOptions { Steps = steps, Scheduler = "euler", GuidanceScale = 7.5f, Width = size, Height = size };
            PromptEmbedding[]? embeddings = null;
            for (int k = 0; k < paths.Length; k++)
            {
                int before = log.Count;
                try
                {
                    var p = StableDiffusionPipeline.Load(folder, Runtime(target, log, paths[k].IoBinding, paths[k].Graph));
                    embeddings ??= Embeddings(p);
                    p.Denoise([new ImagePrompt("", 1) { GuidanceScale = 7.5f }], embeddings, options, null, CancellationToken.None); // warm-up (and graph capture)
                    p.Denoise([new ImagePrompt("", 1) { GuidanceScale = 7.5f }], embeddings, options, null, CancellationToken.None);
                    pipelines[k] = p;
                }
                catch (Exception e) when (e is OnnxRuntimeException or InvalidOperationException) // ModelRunException included
                {
                    failures[k] = e.Message.ReplaceLineEndings(" ");
                }
                memcpy[k] = log.Since(before, "Memcpy") is { } m ? m : "none logged";
            }
            var samples = paths.Select(_ => new StepSamples()).ToArray();
            for (int round = 0; round < runs; round++) // interleaved, so that a change in the machine's load hits every path
                for (int k = 0; k < paths.Length; k++)
                {
                    if (pipelines[k] is not { } p) continue;
                    var probe = new StepProbe(p);
                    long start = Stopwatch.GetTimestamp();
                    var runBefore = p.UNet.RunTime;
                    p.Denoise([new ImagePrompt("", round + 2) { GuidanceScale = 7.5f }], embeddings!, options, probe, CancellationToken.None);
                    long stop = Stopwatch.GetTimestamp();
                    samples[k].Add(probe, start, stop, runBefore);
                }
            for (int k = 0; k < paths.Length; k++)
            {
                string path = pipelines[k] is { } p ? $"{paths[k].Name} [{p.Device}, {p.UNet.RunPath}{(p.UNet.CudaGraph ? ", CUDA graph" : "")}]" : paths[k].Name;
                if (failures[k] is { } failure)
                {
                    output.WriteLine($"| {name} | {path} | failed: {failure} | | | | | {memcpy[k]} |");
                    continue;
                }
                var s = samples[k];
                output.WriteLine(string.Create(Inv,
                    $"| {name} | {path} | {Median(s.HostMicroseconds):F1} µs ({Percentile(s.HostMicroseconds, 0.1):F1}–{Percentile(s.HostMicroseconds, 0.9):F1}) | {Median(s.SetUpMilliseconds):F2} ms | {Median(s.RunMilliseconds):F2} ms | {s.PerStep.ToDevice} ({Bytes(s.PerStep.ToDeviceBytes)}) | {s.PerStep.ToHost} ({Bytes(s.PerStep.ToHostBytes)}) | {memcpy[k]} |"));
            }
        }
        finally
        {
            foreach (var p in pipelines) p?.Dispose();
        }
    }

    /// <summary>Images/s by images per call: whole text → image generations (encoders, UNet, VAE) on the default path, rounds interleaved over batch sizes.</summary>
    private static void Throughput(TextWriter output, RecordingLogger log, Target target, string name, string folder, int size, int steps, int[] batches, int runs)
    {
        using var pipeline = StableDiffusionPipeline.Load(folder, Runtime(target, log, ioBinding: true, graph: false));
        var options = new GenerationOptions { Steps = steps, Scheduler = "euler", GuidanceScale = 7.5f, Width = size, Height = size };
        var calls = batches.Select(batch =>
        {
            var prompts = Enumerable.Range(0, batch).Select(i => new ImagePrompt($"a photo of a cat number {i}", i)).ToArray();
            return (Action)(() => { foreach (var image in pipeline.Generate(prompts, options)) image.Image.Dispose(); });
        }).ToArray();
        foreach (var call in calls) call(); // warm-up at each shape
        var times = batches.Select(_ => new List<double>()).ToArray();
        var perCall = batches.Select(_ => new List<double>()).ToArray();
        for (int round = 0; round < runs; round++)
            for (int k = 0; k < batches.Length; k++)
            {
                var inside = pipeline.UNet.RunTime;
                long count = pipeline.UNet.RunCount;
                long start = Stopwatch.GetTimestamp();
                calls[k]();
                times[k].Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                perCall[k].Add((pipeline.UNet.RunTime - inside).TotalMilliseconds / (pipeline.UNet.RunCount - count));
            }
        for (int k = 0; k < batches.Length; k++)
        {
            double median = Median(times[k]);
            output.WriteLine(string.Create(Inv, $"| {name} | {batches[k]} ({2 * batches[k]}) | {median:F1} ms | {Median(perCall[k]):F2} ms | {batches[k] / median * 1000:F2} |"));
        }
    }

    /// <summary>Where the check runs: CUDA, or the CPU for a dry run at 1/<paramref name="SizeDivisor"/> of the image sizes.</summary>
    private sealed record Target(ExecutionDevice Device, int DeviceId, int SizeDivisor);

    private static DiffusionRuntimeOptions Runtime(Target target, ILogger logger, bool ioBinding, bool graph) => new()
    {
        Device = target.Device,
        DeviceId = target.DeviceId,
        ForceFixedBuffers = graph, // on the CPU (dry run) the fixed-buffer path runs without a graph
        FallbackToCpu = false,
        UseIoBinding = ioBinding,
        EnableCudaGraph = graph,
        Logger = logger,
    };

    /// <summary>The prompt's embeddings and the model's default negative ones, with pooled embeddings where the UNet takes them.</summary>
    private static PromptEmbedding[] Embeddings(StableDiffusionPipeline pipeline)
    {
        var prompt = pipeline.EncodeTexts(["a photo of a cat"], null, CancellationToken.None)[0];
        var negative = pipeline.UnconditionalEmbedding;
        return [new(prompt.Hidden, negative.Hidden) { ConditionalPooled = prompt.Pooled, UnconditionalPooled = negative.Pooled }];
    }

    private static double Median(List<double> values) => Percentile(values, 0.5);

    private static double Percentile(List<double> values, double q)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        return sorted[(int)Math.Min(sorted.Length - 1, Math.Round(q * (sorted.Length - 1)))];
    }

    private static string Bytes(double bytes) =>
        bytes >= 1024 ? string.Create(Inv, $"{bytes / 1024:F1} KiB") : string.Create(Inv, $"{bytes:F0} B");

    /// <summary>The UNet's copy counters at one moment.</summary>
    private readonly record struct Copies(long ToDevice, long ToDeviceBytes, long ToHost, long ToHostBytes)
    {
        public static Copies Of(StableDiffusionPipeline p) =>
            new(p.UNet.HostToDeviceCopies, p.UNet.HostToDeviceBytes, p.UNet.DeviceToHostCopies, p.UNet.DeviceToHostBytes);
    }

    /// <summary>Copies per step, averaged.</summary>
    private readonly record struct CopyRate(double ToDevice, double ToDeviceBytes, double ToHost, double ToHostBytes);

    /// <summary>The samples of one run path over all its runs.</summary>
    private sealed class StepSamples
    {
        private double _steps, _toDevice, _toDeviceBytes, _toHost, _toHostBytes;

        public List<double> HostMicroseconds { get; } = [];
        public List<double> RunMilliseconds { get; } = [];
        public List<double> SetUpMilliseconds { get; } = [];
        public CopyRate PerStep => _steps == 0 ? default : new(_toDevice / _steps, _toDeviceBytes / _steps, _toHost / _steps, _toHostBytes / _steps);

        /// <summary>
        /// One run: a step is the time between two progress reports (one per UNet call) less the time inside ONNX Runtime's run
        /// in between; the set-up is the time before the first report and after the last, less the first call's run time.
        /// </summary>
        public void Add(StepProbe probe, long start, long stop, TimeSpan runBefore)
        {
            var times = probe.Times;
            var inside = probe.Runs;
            for (int i = 1; i < times.Count; i++)
            {
                var run = inside[i] - inside[i - 1];
                HostMicroseconds.Add((Stopwatch.GetElapsedTime(times[i - 1], times[i]) - run).TotalMicroseconds);
                RunMilliseconds.Add(run.TotalMilliseconds);
            }
            SetUpMilliseconds.Add((Stopwatch.GetElapsedTime(start, times[0]) - (inside[0] - runBefore) + Stopwatch.GetElapsedTime(times[^1], stop)).TotalMilliseconds);
            // Copies between the first report and the last: whole steps only (the set-up's one-off copies fall before).
            var first = probe.CopiesAt[0];
            var last = probe.CopiesAt[^1];
            _steps += times.Count - 1;
            _toDevice += last.ToDevice - first.ToDevice;
            _toDeviceBytes += last.ToDeviceBytes - first.ToDeviceBytes;
            _toHost += last.ToHost - first.ToHost;
            _toHostBytes += last.ToHostBytes - first.ToHostBytes;
        }
    }

    /// <summary>Records, at each progress report (one per UNet call), the time, the UNet's time inside Run and its copy counters.</summary>
    private sealed class StepProbe(StableDiffusionPipeline pipeline) : IProgress<DiffusionProgress>
    {
        public List<long> Times { get; } = new(256);
        public List<TimeSpan> Runs { get; } = new(256);
        public List<Copies> CopiesAt { get; } = new(256);

        public void Report(DiffusionProgress value)
        {
            if (value.Stage != DiffusionStage.Denoising) return;
            Times.Add(Stopwatch.GetTimestamp());
            Runs.Add(pipeline.UNet.RunTime);
            CopiesAt.Add(Copies.Of(pipeline));
        }
    }

    /// <summary>Keeps ONNX Runtime's log messages (warnings and above, as the library forwards them) so that the check can report Memcpy nodes.</summary>
    private sealed class RecordingLogger : ILogger
    {
        private readonly List<string> _messages = [];

        public int Count
        {
            get { lock (_messages) return _messages.Count; }
        }

        /// <summary>The messages from index <paramref name="from"/> on that contain <paramref name="word"/>, joined; null if none.</summary>
        public string? Since(int from, string word)
        {
            lock (_messages)
            {
                var hits = _messages.Skip(from).Where(m => m.Contains(word, StringComparison.Ordinal)).Select(m => m.ReplaceLineEndings(" ")).Distinct().ToArray();
                return hits.Length == 0 ? null : string.Join("; ", hits);
            }
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_messages) _messages.Add(formatter(state, exception));
        }
    }
}

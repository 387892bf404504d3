using System.Collections.Concurrent;
using System.Diagnostics;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.ImageToImage;
using MLNet.Diffusion.Tests.TestModels;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>The shared pipeline, the request mix and its serial reference bytes, computed once for the class.</summary>
public sealed class ConcurrencyFixture : IDisposable
{
    public const int Threads = 4, PerThread = 25, Count = Threads * PerThread;
    private static readonly string[] s_prompts = ["a photo of a red cat", "blue dog", "the horse in a field", "", "a bowl of fruit"];
    private static readonly string[] s_schedulers = ["euler-a", "ddim", "dpm++2m", "pndm", "heun"];

    private readonly TempModelFolder _folder;
    private readonly Microsoft.ML.Data.MLImage _init, _mask;
    private readonly Dictionary<UNetRunPath, StableDiffusionPipeline> _pipelines = [];

    public ConcurrencyFixture()
    {
        _folder = TestModelFactory.CreateTemp();
        _init = ImageToImageTestKit.BlockImage(64, 64);
        _mask = ImageToImageTestKit.MaskImage(64, 64, (x, y) => x + y < 64);
        var clock = Stopwatch.StartNew();
        Serial = Enumerable.Range(0, Count).Select(i => Run(UNetRunPath.IoBinding, i, CancellationToken.None, null)!).ToArray();
        SerialTime = clock.Elapsed;
    }

    /// <summary>The shared pipeline whose UNet passes its buffers the given way (the three paths give the same bytes).</summary>
    internal StableDiffusionPipeline Pipeline(UNetRunPath path)
    {
        lock (_pipelines)
        {
            if (!_pipelines.TryGetValue(path, out var pipeline))
            {
                pipeline = StableDiffusionPipeline.Load(_folder.Path, new DiffusionRuntimeOptions
                {
                    UseIoBinding = path != UNetRunPath.SessionRun,
                    ForceFixedBuffers = path == UNetRunPath.FixedBuffers,
                });
                Assert.Equal(path, pipeline.UNet.RunPath);
                _pipelines.Add(path, pipeline);
            }
            return pipeline;
        }
    }

    /// <summary>Each request's image and latent bytes from a serial run.</summary>
    public byte[][] Serial { get; }

    public TimeSpan SerialTime { get; }

    /// <summary>Request <paramref name="i"/> of the mix: text-to-image, image-to-image and inpainting, several
    /// schedulers (stochastic ones included), guidance on and off, batches of one and two.</summary>
    internal byte[]? Run(UNetRunPath path, int i, CancellationToken token, IProgress<DiffusionProgress>? progress)
    {
        var options = new GenerationOptions { Steps = 2 + i % 3, Scheduler = s_schedulers[i % s_schedulers.Length], GuidanceScale = i % 4 == 3 ? 1 : 5 };
        var prompt = new ImagePrompt(s_prompts[i % s_prompts.Length], 1000 + i) { NegativePrompt = i % 2 == 0 ? "" : "blurry" };
        ImagePrompt[] requests = (i % 6) switch
        {
            4 => [prompt with { InitImage = _init, Strength = 0.7f }],
            5 => [prompt with { InitImage = _init, Mask = _mask }, new ImagePrompt("grass", 7 * i)],
            _ => [prompt],
        };
        if (requests.Length == 2) requests[1] = requests[1] with { InitImage = _init, Strength = 0.7f };
        var images = Pipeline(path).Generate(requests, options, progress, token);
        // The image bytes and the float latents' bytes: equal latents rule out differences that rounding to bytes hides.
        var bytes = images.SelectMany(g => g.Image.Pixels.ToArray().Concat(System.Runtime.InteropServices.MemoryMarshal.AsBytes(g.Latents.AsSpan()).ToArray())).ToArray();
        foreach (var image in images) image.Image.Dispose();
        return bytes;
    }

    public void Dispose()
    {
        foreach (var pipeline in _pipelines.Values) pipeline.Dispose();
        _init.Dispose();
        _mask.Dispose();
        _folder.Dispose();
    }
}

/// <summary>
/// Issue 8, point 5: threads generating through one shared pipeline get exactly the bytes of a serial run, also
/// while other threads' generations are being cancelled around them, whichever way the UNet passes its buffers
/// (IO binding, plain session runs, or the fixed buffers that CUDA graphs need, which are entered exclusively).
/// </summary>
public class ConcurrencyTests(ConcurrencyFixture fixture, ITestOutputHelper output) : IClassFixture<ConcurrencyFixture>
{
    public static TheoryData<string> RunPaths => [nameof(UNetRunPath.IoBinding), nameof(UNetRunPath.SessionRun), nameof(UNetRunPath.FixedBuffers)];

    [Theory]
    [MemberData(nameof(RunPaths))]
    public void FourThreadsSharingOnePipelineGetTheSerialBytes(string pathName)
    {
        var path = Enum.Parse<UNetRunPath>(pathName);
        var results = new byte[ConcurrencyFixture.Count][];
        var clock = Stopwatch.StartNew();
        RunOnThreads(t =>
        {
            for (int k = 0; k < ConcurrencyFixture.PerThread; k++)
            {
                int i = k * ConcurrencyFixture.Threads + t; // interleaved, so every thread runs every kind of request
                results[i] = fixture.Run(path, i, CancellationToken.None, null)!;
            }
        });
        var parallel = clock.Elapsed;
        int mismatches = Enumerable.Range(0, ConcurrencyFixture.Count).Count(i => !results[i].AsSpan().SequenceEqual(fixture.Serial[i]));
        output.WriteLine($"{path}: {ConcurrencyFixture.Threads} threads × {ConcurrencyFixture.PerThread}: {mismatches} of {ConcurrencyFixture.Count} differ from the serial run; " +
            $"serial {fixture.SerialTime.TotalSeconds:F1} s, parallel {parallel.TotalSeconds:F1} s");
        Assert.Equal(0, mismatches);
    }

    [Theory]
    [MemberData(nameof(RunPaths))]
    public void CancellationsMixedInDoNotDisturbTheOtherThreads(string pathName)
    {
        var path = Enum.Parse<UNetRunPath>(pathName);
        var outcomes = new ConcurrentDictionary<int, string>();
        int mismatches = 0;
        RunOnThreads(t =>
        {
            var random = new Random(t);
            for (int k = 0; k < ConcurrencyFixture.PerThread; k++)
            {
                int i = k * ConcurrencyFixture.Threads + t;
                using var cts = new CancellationTokenSource();
                IProgress<DiffusionProgress>? progress = null;
                switch (i % 4)
                {
                    case 0: // cancelled at a denoising step
                        int step = 1 + random.Next(2);
                        progress = new SynchronousProgress(p => { if (p.Stage == DiffusionStage.Denoising && p.Step == step) cts.Cancel(); });
                        break;
                    case 1: // cancelled by a timer, wherever it lands (often inside a model run)
                        cts.CancelAfter(random.Next(0, 8));
                        break;
                }
                try
                {
                    var bytes = fixture.Run(path, i, cts.Token, progress)!;
                    outcomes[i] = "completed";
                    if (!bytes.AsSpan().SequenceEqual(fixture.Serial[i])) Interlocked.Increment(ref mismatches);
                }
                catch (OperationCanceledException)
                {
                    outcomes[i] = "cancelled";
                    Assert.True(cts.IsCancellationRequested, $"request {i} reported a cancellation nobody asked for");
                }
            }
        });
        int cancelled = outcomes.Values.Count(v => v == "cancelled"), completed = outcomes.Values.Count(v => v == "completed");
        output.WriteLine($"{path} stress: {completed} completed ({mismatches} differ from the serial run), {cancelled} cancelled");
        Assert.Equal(ConcurrencyFixture.Count, cancelled + completed);
        Assert.Equal(0, mismatches);
        Assert.True(cancelled >= ConcurrencyFixture.Count / 4, $"only {cancelled} cancelled");
        Assert.True(completed >= ConcurrencyFixture.Count / 2, $"only {completed} completed");
        // Afterwards the pipeline still gives the serial bytes.
        for (int i = 0; i < 6; i++) Assert.Equal(fixture.Serial[i], fixture.Run(path, i, CancellationToken.None, null));
    }

    /// <summary>Runs <paramref name="body"/>(thread index) on dedicated threads released together; rethrows the first failure.</summary>
    private static void RunOnThreads(Action<int> body)
    {
        using var start = new Barrier(ConcurrencyFixture.Threads);
        var failures = new ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, ConcurrencyFixture.Threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            try { body(t); }
            catch (Exception e) { failures.Enqueue(e); }
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        foreach (var thread in threads) thread.Join();
        if (failures.TryDequeue(out var first)) throw new AggregateException(first);
    }
}

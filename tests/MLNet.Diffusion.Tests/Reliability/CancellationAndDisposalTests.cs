using System.Diagnostics;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.ImageToImage;
using MLNet.Diffusion.Tests.TestModels;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>
/// Tests that measure time, process memory or the process-wide count of live sessions: they run alone, after the
/// parallel tests, so that nothing else in the process moves those figures.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialReliabilityCollection
{
    public const string Name = "Reliability (serial: timing, memory, live sessions)";
}

/// <summary>
/// Issue 8, point 4: cancelling at any point (before, during and between steps, during VAE decoding) returns
/// promptly, leaves the pipeline usable and leaks nothing; every session is released on every path.
/// </summary>
[Collection(SerialReliabilityCollection.Name)]
public class CancellationAndDisposalTests(ITestOutputHelper output)
{
    private const string Prompt = "a photo of a red cat";
    private static readonly GenerationOptions Options = new() { Steps = 4, Scheduler = "euler-a" };

    /// <summary>Where a cancellation lands: the progress report (stage, step) at which the token is cancelled.</summary>
    public static TheoryData<string> CancellationPoints => ["before", "text encoding", "denoising step 1", "denoising step 3", "image encoding", "between decodes"];

    [Theory]
    [MemberData(nameof(CancellationPoints))]
    public void CancellingAtAnyPointStopsAndLeavesThePipelineUsable(string point)
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var init = ImageToImageTestKit.BlockImage(64, 64);
        ImagePrompt[] requests = point == "image encoding"
            ? [new(Prompt, 1) { InitImage = init, Strength = 0.5f }, new(Prompt, 2) { InitImage = init, Strength = 0.5f }]
            : [new(Prompt, 1), new(Prompt, 2)];
        var reference = Bytes(pipeline.Generate(requests, Options));
        long runsBefore = pipeline.UNet.RunCount;

        using var cts = new CancellationTokenSource();
        if (point == "before") cts.Cancel();
        var progress = new SynchronousProgress(p =>
        {
            bool hit = point switch
            {
                "text encoding" => p.Stage == DiffusionStage.EncodingText && p.Step == 0,
                "denoising step 1" => p.Stage == DiffusionStage.Denoising && p.Step == 1,
                "denoising step 3" => p.Stage == DiffusionStage.Denoising && p.Step == 3,
                "image encoding" => p.Stage == DiffusionStage.EncodingImages && p.Step == 1,
                "between decodes" => p.Stage == DiffusionStage.Decoding && p.Step == 1,
                _ => false,
            };
            if (hit) cts.Cancel();
        });
        Assert.ThrowsAny<OperationCanceledException>(() => pipeline.Generate(requests, Options, progress, cts.Token));
        long runs = pipeline.UNet.RunCount - runsBefore;
        long expectedRuns = point switch { "denoising step 1" => 1, "denoising step 3" => 3, "between decodes" => 4, _ => 0 };
        Assert.Equal(expectedRuns, runs);

        // The pipeline is usable and gives the same bytes as before.
        Assert.Equal(reference, Bytes(pipeline.Generate(requests, Options)));
    }

    [Fact]
    public void CancellingInsideAUNetCallStopsItWithinAFractionOfTheCall()
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { UnetSlowdown = 600 });
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var oneCall = new GenerationOptions { Steps = 1, GuidanceScale = 1, Scheduler = "ddim" };
        pipeline.Generate(Prompt, 1, oneCall).Image.Dispose(); // warm-up
        var clock = Stopwatch.StartNew();
        pipeline.Generate(Prompt, 1, oneCall).Image.Dispose();
        var call = clock.Elapsed;

        long runsBefore = pipeline.UNet.RunCount;
        using var cts = new CancellationTokenSource();
        var cancelledAt = TimeSpan.Zero;
        using var stamp = cts.Token.Register(() => cancelledAt = clock.Elapsed);
        var progress = new SynchronousProgress(p =>
        {
            if (p.Stage == DiffusionStage.EncodingText && p.Step == 1) cts.CancelAfter(call / 4); // a quarter into the UNet call
        });
        clock.Restart();
        var e = Assert.ThrowsAny<OperationCanceledException>(() => pipeline.Generate(Prompt, 1, oneCall, progress, cts.Token));
        var latency = clock.Elapsed - cancelledAt;
        output.WriteLine($"UNet call {call.TotalMilliseconds:F0} ms; returned {latency.TotalMilliseconds:F0} ms after the cancellation");
        Assert.Contains("model call", e.Message);
        Assert.Equal(0, pipeline.UNet.RunCount - runsBefore); // the call was terminated, not finished
        Assert.True(latency < call * 0.5, $"cancellation took {latency.TotalMilliseconds:F0} ms of a {call.TotalMilliseconds:F0} ms call");
        pipeline.Generate(Prompt, 1, oneCall).Image.Dispose();
    }

    [Fact]
    public void CancellingInsideAVaeDecoderCallStopsItPromptly()
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { VaeDecoderSlowdown = 600 });
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var oneCall = new GenerationOptions { Steps = 1, GuidanceScale = 1, Scheduler = "ddim" };
        var latents = new float[4 * 8 * 8];
        foreach (var image in pipeline.Decode(latents, 1, 8, 8)) image.Dispose(); // warm-up
        var clock = Stopwatch.StartNew();
        foreach (var image in pipeline.Decode(latents, 1, 8, 8)) image.Dispose();
        var call = clock.Elapsed;

        // The cancellation is timed to land a quarter into the decoder call. When both cores spin in ONNX Runtime the timer
        // thread can be starved until the call has ended; then the generation rightly finishes, which is allowed only when
        // the cancellation came after it, and the attempt is made again.
        for (int attempt = 1; ; attempt++)
        {
            using var cts = new CancellationTokenSource();
            var cancelledAt = TimeSpan.Zero;
            using var stamp = cts.Token.Register(() => cancelledAt = clock.Elapsed);
            var progress = new SynchronousProgress(p =>
            {
                if (p.Stage == DiffusionStage.Denoising && p.Step == p.Total) cts.CancelAfter(call / 4);
            });
            clock.Restart();
            try
            {
                pipeline.Generate(Prompt, 1, oneCall, progress, cts.Token).Image.Dispose();
            }
            catch (OperationCanceledException e)
            {
                var latency = clock.Elapsed - cancelledAt;
                output.WriteLine($"VAE decoder call {call.TotalMilliseconds:F0} ms; returned {latency.TotalMilliseconds:F0} ms after the cancellation (attempt {attempt})");
                Assert.Contains("VAE decoding", e.Message);
                Assert.True(latency < call * 0.5, $"cancellation took {latency.TotalMilliseconds:F0} ms of a {call.TotalMilliseconds:F0} ms call");
                break;
            }
            var finished = clock.Elapsed;
            Assert.True(cancelledAt == TimeSpan.Zero || cancelledAt >= finished,
                $"the token was cancelled at {cancelledAt.TotalMilliseconds:F0} ms, yet the generation finished at {finished.TotalMilliseconds:F0} ms without stopping");
            Assert.True(attempt < 5, "in 5 attempts the timed cancellation never landed inside the decoder call");
        }
        pipeline.Generate(Prompt, 1, oneCall).Image.Dispose();
    }

    [Fact]
    public async Task DisposingWhileACallRunsWaitsForItAndThenReleasesTheSessions()
    {
        long liveBefore = OnnxModelComponent.LiveSessions;
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { UnetSlowdown = 60 });
        var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.Equal(liveBefore + 4, OnnxModelComponent.LiveSessions); // text encoder, UNet, VAE decoder and encoder
        using var inCall = new ManualResetEventSlim();
        var progress = new SynchronousProgress(p =>
        {
            if (p.Stage == DiffusionStage.Denoising && p.Step == 1) inCall.Set();
        });
        var generation = Task.Run(() => pipeline.Generate(Prompt, 1, new GenerationOptions { Steps = 3, GuidanceScale = 1 }, progress));
        Assert.True(inCall.Wait(TimeSpan.FromSeconds(60)));
        pipeline.Dispose(); // returns at once; the generation keeps its sessions until it finishes
        Assert.Throws<ObjectDisposedException>(() => pipeline.Generate(Prompt, 1));
        Assert.Throws<ObjectDisposedException>(() => pipeline.EncodeText([Prompt]));
        using var image = (await generation).Image;
        Assert.Equal(64, image.Width);
        Assert.Equal(liveBefore, OnnxModelComponent.LiveSessions);
        pipeline.Dispose(); // twice is fine
    }

    [Fact]
    public void LoadsRefusedAfterSomeSessionsOpenedReleaseThemAll()
    {
        long liveBefore = OnnxModelComponent.LiveSessions;
        var dir = Directory.CreateTempSubdirectory("mlnd-refused-");
        try
        {
            // The UNet's session opens and is then refused by its contract check (rank 3 sample), after the text
            // encoder's session opened; and a text encoder whose width does not fit the UNet is refused after all four.
            string rank3 = TestModelFactory.CreateWithWrongSampleRank(Path.Combine(dir.FullName, "rank3"));
            string widths = TestModelFactory.Create(Path.Combine(dir.FullName, "widths"), new TestModelOptions());
            TestModelFactory.Create(Path.Combine(dir.FullName, "wide"), new TestModelOptions { EmbeddingWidth = 1024 });
            File.Copy(Path.Combine(dir.FullName, "wide", "text_encoder", "model.onnx"), Path.Combine(widths, "text_encoder", "model.onnx"), overwrite: true);
            for (int i = 0; i < 3; i++)
            {
                Assert.Throws<InvalidDataException>(() => StableDiffusionPipeline.Load(rank3));
                Assert.Throws<InvalidDataException>(() => StableDiffusionPipeline.Load(widths));
                Assert.Equal(liveBefore, OnnxModelComponent.LiveSessions);
            }
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void TwoHundredCancelledAndTwoHundredCompletedGenerationsKeepMemoryFlat()
    {
        long liveBefore = OnnxModelComponent.LiveSessions;
        using var folder = TestModelFactory.CreateTemp();
        var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var init = ImageToImageTestKit.BlockImage(64, 64);
        using var mask = ImageToImageTestKit.MaskImage(64, 64, (x, _) => x < 32);
        var options = new GenerationOptions { Steps = 3, Scheduler = "euler-a" };
        var random = new Random(8);
        int cancelled = 0, completed = 0;

        void RunOne(int i)
        {
            ImagePrompt[] requests = (i % 4) switch
            {
                0 => [new(Prompt, i)],
                1 => [new(Prompt, i), new("blue dog", i + 1) { NegativePrompt = "cat" }],
                2 => [new(Prompt, i) { InitImage = init, Strength = 0.6f }, new(Prompt, i + 1) { InitImage = init, Mask = mask }],
                _ => [new(Prompt, i) { InitImage = init, Strength = 0.75f }],
            };
            using var cts = new CancellationTokenSource();
            // Cycle through the cancellation points; once one side has its 200, only the other kind is run.
            int mode = cancelled >= 200 ? 5 : completed >= 200 ? (i % 2 == 0 ? 0 : 2) : i % 7;
            if (mode == 0) cts.Cancel();
            else if (mode == 6) cts.CancelAfter(random.Next(0, 15)); // lands anywhere, inside model runs too
            var progress = new SynchronousProgress(p =>
            {
                bool hit = mode switch
                {
                    1 => p.Stage == DiffusionStage.EncodingText,
                    2 => p.Stage == DiffusionStage.Denoising && p.Step == 1 + i % p.Total,
                    3 => p.Stage == DiffusionStage.EncodingImages,
                    4 => p.Stage == DiffusionStage.Decoding && p.Step == 1 && p.Total > 1,
                    _ => false,
                };
                if (hit) cts.Cancel();
            });
            try
            {
                foreach (var image in pipeline.Generate(requests, options, progress, cts.Token)) image.Image.Dispose();
                completed++;
            }
            catch (OperationCanceledException)
            {
                cancelled++;
            }
        }

        for (int i = 0; i < 60; i++) RunOne(i); // warm-up: ONNX Runtime's arenas and the JIT reach their size
        cancelled = completed = 0;
        var (workingSetBefore, managedBefore) = Measure();
        var clock = Stopwatch.StartNew();
        for (int i = 0; cancelled < 200 || completed < 200; i++)
        {
            RunOne(i);
            Assert.True(i < 2000, "the mix does not reach 200 of each");
        }
        var (workingSetAfter, managedAfter) = Measure();
        pipeline.Dispose();
        Assert.Equal(liveBefore, OnnxModelComponent.LiveSessions);

        double growthMb = (workingSetAfter - workingSetBefore) / 1048576.0;
        output.WriteLine($"{cancelled} cancelled + {completed} completed in {clock.Elapsed.TotalSeconds:F1} s; " +
            $"working set {workingSetBefore / 1048576.0:F1} → {workingSetAfter / 1048576.0:F1} MB ({growthMb:+0.0;-0.0} MB); " +
            $"managed heap {managedBefore / 1048576.0:F1} → {managedAfter / 1048576.0:F1} MB");
        // About +3 MB is normal here; leaking the decoded images alone (16 KB each) shows as about +8 MB, a UNet binding
        // or an encoder output (≈ 0.25–0.5 MB each) per generation as 100 MB or more.
        Assert.True(growthMb < 25, $"working set grew by {growthMb:F1} MB over {cancelled + completed} generations");
        Assert.True(managedAfter - managedBefore < 10 << 20, $"managed heap grew by {(managedAfter - managedBefore) / 1048576.0:F1} MB");
    }

    /// <summary>
    /// The process's working set and managed heap with what earlier tests freed given back to the system: an
    /// aggressive (decommitting) full collection, finalizers run, and on Linux glibc's free lists trimmed, so that the
    /// working set reflects memory in use and a native leak shows as growth.
    /// </summary>
    private static (long WorkingSet, long Managed) Measure()
    {
        for (int i = 0; i < 2; i++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
        }
        if (OperatingSystem.IsLinux())
        {
            try { MallocTrim(0); }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { } // not glibc
        }
        return (Environment.WorkingSet, GC.GetTotalMemory(forceFullCollection: false));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    private static byte[][] Bytes(IReadOnlyList<GeneratedImage> images)
    {
        var bytes = images.Select(i => i.Image.Pixels.ToArray()).ToArray();
        foreach (var image in images) image.Image.Dispose();
        return bytes;
    }
}

/// <summary>IProgress that reports on the calling thread (Progress&lt;T&gt; posts to the thread pool).</summary>
internal sealed class SynchronousProgress(Action<DiffusionProgress> report) : IProgress<DiffusionProgress>
{
    public void Report(DiffusionProgress value) => report(value);
}

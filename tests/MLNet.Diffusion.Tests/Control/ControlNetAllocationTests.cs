using MLNet.Diffusion.Tests.Performance;

namespace MLNet.Diffusion.Tests.Control;

/// <summary>A ControlNet step allocates nothing on the managed heap: one ControlNet, two summed, and guess mode.</summary>
public sealed class ControlNetAllocationTests : IDisposable
{
    private readonly ControlNetTestKit _kit = new();
    private readonly StableDiffusionPipeline _pipeline;
    private readonly Microsoft.ML.Data.MLImage _image = ControlNetTestKit.Solid(64, 90, 90, 90);

    public ControlNetAllocationTests() => _pipeline = StableDiffusionPipeline.Load(_kit.ModelPath, new DiffusionRuntimeOptions { IntraOpThreads = 1 });

    public void Dispose()
    {
        _pipeline.Dispose();
        _image.Dispose();
        _kit.Dispose();
    }

    [Theory]
    [InlineData(1, false, 0f)]
    [InlineData(2, false, 0.3f)] // the first ControlNet stops at 30 %: the second is copied, then added
    [InlineData(2, true, 0f)]
    public void AControlNetStepAllocatesNothing(int controlNets, bool guessMode, float firstStart)
    {
        var options = new GenerationOptions { Steps = 12, Scheduler = "euler", GuidanceScale = 3, ControlGuessMode = guessMode };
        for (int k = 0; k < controlNets; k++)
            options.ControlNets.Add(new ControlNetInput(_kit.ControlNet($"cn{k}"), _image) { Start = k == 0 ? firstStart : 0 });
        var request = new ImagePrompt("a red cat", 1) { NegativePrompt = "blue dog" };
        _pipeline.Generate([request], options)[0].Image.Dispose(); // warm-up: loads the ControlNets
        var runs = new List<IReadOnlyList<(long, bool)>>();
        for (int run = 0; run < 3; run++)
        {
            var probe = new StepAllocations();
            _pipeline.Generate([request], options, new DenoisingOnly(probe))[0].Image.Dispose();
            Assert.Equal(options.Steps, probe.Deltas.Count + 1);
            runs.Add(probe.Deltas);
        }
        AllocationProbe.AssertZeroPerStep(runs, $"{controlNets} ControlNet(s){(guessMode ? ", guess mode" : "")}");
    }

    [Fact]
    public void AGenerationOfASeenShapeReusesTheControlNetBuffers()
    {
        // Two ControlNets at UNet batch 2: controlnet_cond [2, 3, 64, 64] for each (98 KB) and the second one's own
        // residuals. A generation that makes them again allocates at least the two control-image buffers.
        var options = new GenerationOptions { Steps = 2, Scheduler = "euler", GuidanceScale = 3 };
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet("cn0"), _image));
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet("cn1"), _image));
        var embeddings = new MLNet.Diffusion.Pipeline.PromptEmbedding[] { new(_pipeline.UnconditionalEmbedding.Hidden, _pipeline.UnconditionalEmbedding.Hidden) };
        ImagePrompt[] requests = [new("", 1)];
        long Bytes(GenerationOptions o)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            _pipeline.Denoise(requests, embeddings, o, null, CancellationToken.None);
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        var plain = new GenerationOptions { Steps = 2, Scheduler = "euler", GuidanceScale = 3 };
        Bytes(options);
        Bytes(plain);
        long controlled = Bytes(options), without = Bytes(plain);
        const long condBuffers = 2 * 2 * 3 * 64 * 64 * sizeof(float);
        // What a controlled generation adds: the control image read once (3 × 64 × 64 floats) and small per-batch arrays.
        Assert.True(controlled - without < condBuffers, $"a controlled generation allocated {controlled} bytes, one without ControlNets {without}");
    }

    /// <summary>Passes on the denoising stage's reports only (one per step): the text encoding and decoding reports
    /// are not steps.</summary>
    private sealed class DenoisingOnly(IProgress<DiffusionProgress> inner) : IProgress<DiffusionProgress>
    {
        public void Report(DiffusionProgress value)
        {
            if (value.Stage == DiffusionStage.Denoising) inner.Report(value);
        }
    }
}

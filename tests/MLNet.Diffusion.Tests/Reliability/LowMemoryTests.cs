using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.ImageToImage.ImageToImageTestKit;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>
/// <see cref="DiffusionRuntimeOptions.LowMemory"/>: the text encoders and the VAE are loaded for their stage and released
/// after it, only the UNet stays loaded, the images do not change, and concurrent calls never lose a session they run on.
/// Serial: the tests count the process's live ONNX Runtime sessions.
/// </summary>
[Collection(SerialReliabilityCollection.Name)]
public sealed class LowMemoryTests
{
    private static readonly GenerationOptions Options = new() { Steps = 3, Scheduler = "euler", GuidanceScale = 7.5f };

    [Fact]
    public void AfterAGenerationOnlyTheUNetIsLoadedAndTheNextImageIsBitIdentical()
    {
        using var folder = TestModelFactory.CreateTemp();
        long before = OnnxModelComponent.LiveSessions;
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { LowMemory = true });
        Assert.Equal(before + 1, OnnxModelComponent.LiveSessions); // the UNet; the others were checked and released

        using var first = pipeline.Generate("a red cat", 7, Options).Image;
        Assert.Equal(before + 1, OnnxModelComponent.LiveSessions);
        Assert.False(pipeline.Model.PromptEncoders.IsLoaded);
        Assert.False(pipeline.Model.VaeDecoders.IsLoaded);
        using var second = pipeline.Generate("a red cat", 7, Options).Image;
        Assert.Equal(before + 1, OnnxModelComponent.LiveSessions);
        Assert.Equal(first.Pixels.ToArray(), second.Pixels.ToArray());

        using var standard = StableDiffusionPipeline.Load(folder.Path);
        Assert.NotSame(standard.UNet, pipeline.UNet); // LowMemory is part of the store's key
        using var expected = standard.Generate("a red cat", 7, Options).Image;
        Assert.Equal(expected.Pixels.ToArray(), first.Pixels.ToArray());
    }

    [Fact]
    public void TheVaeEncoderIsLoadedForImageToImageAndReleasedAfter()
    {
        using var folder = TestModelFactory.CreateTemp();
        long before = OnnxModelComponent.LiveSessions;
        using var input = BlockImage(64, 64);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { LowMemory = true });
        Assert.NotNull(pipeline.VaeEncoder); // the description answers without a session
        var request = new ImagePrompt("a red cat", 3) { InitImage = input, Strength = 0.6f };
        using var image = pipeline.Generate([request], Options)[0].Image;
        Assert.Equal(before + 1, OnnxModelComponent.LiveSessions);
        Assert.False(pipeline.Model.VaeEncoders!.IsLoaded);

        using var standard = StableDiffusionPipeline.Load(folder.Path);
        using var expected = standard.Generate([request], Options)[0].Image;
        Assert.Equal(expected.Pixels.ToArray(), image.Pixels.ToArray());
    }

    [Fact]
    public void ConcurrentGenerationsShareTheLoadedComponentsAndGiveTheSerialImages()
    {
        using var folder = TestModelFactory.CreateTemp();
        long before = OnnxModelComponent.LiveSessions;
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { LowMemory = true, IntraOpThreads = 1 });
        string[] prompts = ["a red cat", "a blue dog", "a green bird", "a yellow fish"];
        var serial = prompts.Select((p, i) => { using var image = pipeline.Generate(p, i, Options).Image; return image.Pixels.ToArray(); }).ToArray();
        for (int round = 0; round < 3; round++)
        {
            var parallel = new byte[prompts.Length][];
            Parallel.For(0, prompts.Length * 2, new ParallelOptions { MaxDegreeOfParallelism = prompts.Length * 2 }, k =>
            {
                int i = k % prompts.Length;
                using var image = pipeline.Generate(prompts[i], i, Options).Image;
                parallel[i] = image.Pixels.ToArray();
            });
            for (int i = 0; i < prompts.Length; i++) Assert.Equal(serial[i], parallel[i]);
        }
        Assert.Equal(before + 1, OnnxModelComponent.LiveSessions);
    }

    [Fact]
    public void BothSdxlTextEncodersAreReleasedAndTheImageIsUnchanged()
    {
        using var folder = XlTestModelFactory.CreateTemp();
        long before = OnnxModelComponent.LiveSessions;
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { LowMemory = true });
        using var image = pipeline.Generate("a red cat", 5, Options).Image;
        Assert.Equal(before + 1, OnnxModelComponent.LiveSessions);
        using var standard = StableDiffusionPipeline.Load(folder.Path);
        using var expected = standard.Generate("a red cat", 5, Options).Image;
        Assert.Equal(expected.Pixels.ToArray(), image.Pixels.ToArray());
    }

    [Fact]
    public void AHeldComponentIsNeverReleasedUnderAnotherCall()
    {
        int loads = 0, disposals = 0;
        var slot = new ComponentSlot<Probe>(new Probe(() => disposals++), () => { loads++; return new Probe(() => disposals++); });
        Assert.Equal(1, disposals); // the checking instance is released at once
        var a = slot.Acquire();
        var b = slot.Acquire();
        Assert.Same(a.Value, b.Value);
        Assert.Equal(1, loads);
        a.Dispose();
        Assert.True(slot.IsLoaded);
        Assert.False(b.Value.Disposed);
        b.Dispose();
        Assert.False(slot.IsLoaded);
        Assert.Equal(2, disposals);
        using (var c = slot.Acquire()) Assert.False(c.Value.Disposed);
        Assert.Equal(2, loads);
        slot.Dispose();
        Assert.Throws<ObjectDisposedException>(() => slot.Acquire());
    }

    private sealed class Probe(Action onDispose) : IDisposable
    {
        public bool Disposed { get; private set; }

        public void Dispose()
        {
            Disposed = true;
            onDispose();
        }
    }
}

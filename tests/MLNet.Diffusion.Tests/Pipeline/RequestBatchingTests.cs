using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Pipeline;

/// <summary>
/// The engine's batching of one call's requests: per-image steps and sizes, UNet batches by (steps, size, guidance on or
/// off, start step), one text-encoder run for the call, and results that do not depend on the other requests.
/// </summary>
public class RequestBatchingTests : IDisposable
{
    private readonly TempModelFolder _folder = TestModelFactory.CreateTemp();
    private readonly StableDiffusionPipeline _pipeline;

    public RequestBatchingTests() => _pipeline = StableDiffusionPipeline.Load(_folder.Path);

    public void Dispose()
    {
        _pipeline.Dispose();
        _folder.Dispose();
    }

    [Fact]
    public void PerImageStepsAndSizesEqualTheSameSettingsGivenAsOptions()
    {
        var options = new GenerationOptions { Steps = 3, Scheduler = "ddim", GuidanceScale = 3 };
        ImagePrompt[] requests =
        [
            new("red cat", 1),
            new("blue dog", 2) { Steps = 5 },
            new("the horse", 3) { Width = 48, Height = 32, NegativePrompt = "cat" },
            new("red cat", 4) { Steps = 5 },                                  // shares image 1's UNet batch
            new("cat", 5) { Width = 48, Height = 32, GuidanceScale = 1 },     // no guidance: its own batch
        ];
        long unetRuns = _pipeline.UNet.RunCount, textRuns = _pipeline.TextEncoder.RunCount, texts = _pipeline.TextEncoder.EncodedPromptCount;
        var batch = _pipeline.Generate(requests, options);
        Assert.Equal(3 + 5 + 3 + 3, _pipeline.UNet.RunCount - unetRuns); // four UNet batches, in order of first appearance
        Assert.Equal(1, _pipeline.TextEncoder.RunCount - textRuns);
        Assert.Equal(5, _pipeline.TextEncoder.EncodedPromptCount - texts); // 4 distinct prompts and ""; image 2's "cat" is image 4's prompt

        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Same(requests[i], batch[i].Prompt);
            var asOptions = options.Clone();
            asOptions.Steps = requests[i].Steps ?? options.Steps;
            asOptions.Width = requests[i].Width;
            asOptions.Height = requests[i].Height;
            using var alone = _pipeline.Generate([requests[i] with { Steps = null, Width = null, Height = null }], asOptions)[0];
            Assert.Equal(requests[i].Width ?? 64, batch[i].Image.Width);
            Assert.Equal(requests[i].Height ?? 64, batch[i].Image.Height);
            AssertSameImage(alone, batch[i], i);
        }

        // Denoise from embeddings batches the same way and returns each image's latents after the previous one's.
        var cond = _pipeline.EncodeText([.. requests.Select(r => r.Prompt)]);
        var uncond = _pipeline.EncodeText([.. requests.Select(r => r.NegativePrompt)]);
        Assert.Equal(batch.SelectMany(b => b.Latents), _pipeline.Denoise(cond, uncond, requests, options));
        foreach (var image in batch) image.Dispose();
    }

    [Fact]
    public void AGuidanceScaleOfOneOrBelowIsOffWhateverElseTheCallHolds()
    {
        var options = new GenerationOptions { Steps = 4, Scheduler = "euler" };
        ImagePrompt[] requests = [new("red cat", 1), new("blue dog", 2) { GuidanceScale = 0.5f }, new("the horse", 3) { GuidanceScale = 1 }];
        long before = _pipeline.UNet.RunCount;
        var batch = _pipeline.Generate(requests, options);
        Assert.Equal(4 + 4, _pipeline.UNet.RunCount - before); // a guided batch and an unguided one
        for (int i = 0; i < requests.Length; i++)
        {
            using var alone = _pipeline.Generate([requests[i]], options)[0];
            AssertSameImage(alone, batch[i], i);
            batch[i].Dispose();
        }
    }

    /// <summary>The same image up to the float rounding of another UNet batch size (ONNX Runtime's kernels block by batch).</summary>
    private static void AssertSameImage(GeneratedImage expected, GeneratedImage actual, int index)
    {
        Assert.True(PipelineTestHelpers.MaxAbsDiff(expected.Latents, actual.Latents) < 1e-5, $"image {index}'s latents differ");
        var a = expected.Image.Pixels.ToArray();
        var b = actual.Image.Pixels.ToArray();
        Assert.Equal(a.Length, b.Length);
        Assert.True(a.Zip(b).All(p => Math.Abs(p.First - p.Second) <= 1), $"image {index}'s pixels differ");
    }

    [Fact]
    public void PerImageStepsAndSizesAreCheckedBeforeAnyModelRunsWithTheImageNamed()
    {
        long unetRuns = _pipeline.UNet.RunCount, textRuns = _pipeline.TextEncoder.RunCount;
        (ImagePrompt Request, string Message)[] cases =
        [
            (new("cat") { Steps = 0 }, "Image 1: Steps must be from 1 to 1000; got 0"),
            (new("cat") { Steps = 1001 }, "Image 1: Steps must be from 1 to 1000; got 1001"),
            (new("cat") { Width = 60 }, "Image 1: Width must be a multiple of 8 from 8 to 4096 pixels"),
            (new("cat") { Height = 4104 }, "Image 1: Height must be a multiple of 8 from 8 to 4096 pixels"),
        ];
        foreach (var (request, message) in cases)
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => _pipeline.Generate([new ImagePrompt("dog"), request]));
            Assert.Contains(message, e.Message);
        }
        Assert.Equal(unetRuns, _pipeline.UNet.RunCount);
        Assert.Equal(textRuns, _pipeline.TextEncoder.RunCount);
    }
}

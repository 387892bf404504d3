using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.ImageToImage;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>
/// Issue 8, point 3: NaN or ±Infinity in a model's output or in the latents is reported at the step where it appears
/// (stage, step, timestep, image), never written out as a black image.
/// </summary>
public class NumericalFaultTests(PipelineCache cache) : IClassFixture<PipelineCache>
{
    private const string Prompt = "a photo of a red cat";

    /// <summary>DDIM with SD 1.5's "leading" spacing and steps_offset 1: 10 steps call the UNet at 901, 801, …, 1.</summary>
    private static readonly GenerationOptions TenDdimSteps = new() { Steps = 10, Scheduler = "ddim" };

    [Fact]
    public void NanFromTheUNetIsReportedAtTheStepWhereItAppears()
    {
        var pipeline = cache.Get(new TestModelOptions { NanBelowTimestep = 500 });
        long before = pipeline.UNet.RunCount;
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 3, TenDdimSteps));
        Assert.Equal(DiffusionStage.Denoising, e.Stage);
        Assert.Equal("UNet output", e.Tensor);
        Assert.Equal(6, e.Step); // 901, 801, 701, 601, 501 are fine; 401 is the first below 500
        Assert.Equal(10, e.TotalSteps);
        Assert.Equal(401f, e.Timestep);
        Assert.Equal(0, e.ImageIndex);
        Assert.Equal(4 * 8 * 8, e.NaNCount);
        Assert.Equal(0, e.InfinityCount);
        Assert.Equal(6, pipeline.UNet.RunCount - before); // it stopped there: no more model calls, no decoding
        Assert.Contains("denoising step 6 of 10 (timestep 401)", e.Message);
        Assert.Contains("float16", e.Message);
        Assert.IsAssignableFrom<InvalidOperationException>(e);
    }

    [Fact]
    public void WithoutGuidanceAndInABatchTheFaultNamesTheRequest()
    {
        // Request 0 (strength 0) needs no UNet call; request 1 (strength 0.35) keeps the last 3 of 10 steps, from timestep 201, so
        // its group meets the NaN at its first call, and the fault names request 1.
        var pipeline = cache.Get(new TestModelOptions { NanBelowTimestep = 500 });
        using var init = ImageToImageTestKit.BlockImage(64, 64);
        ImagePrompt[] requests = [new(Prompt, 1) { InitImage = init, Strength = 0 }, new(Prompt, 2) { InitImage = init, Strength = 0.35f }];
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(requests, new GenerationOptions { Steps = 10, Scheduler = "ddim", GuidanceScale = 1 }));
        Assert.Equal(DiffusionStage.Denoising, e.Stage);
        Assert.Equal(1, e.ImageIndex);
        Assert.Equal(8, e.Step); // the schedule's 8th call: strength 0.35 of 10 steps skips 7
        Assert.Equal(10, e.TotalSteps);
        Assert.Equal(201f, e.Timestep);
    }

    [Fact]
    public void Fp16OverflowBecomesInfinityAndIsCaught()
    {
        // The UNet multiplies its output by 10⁹ below timestep 150, i.e. at the last two calls (101 and 1).
        var noGuidance = new GenerationOptions { Steps = 10, Scheduler = "ddim", GuidanceScale = 1 };
        var pipeline = cache.Get(new TestModelOptions { Fp16 = true, OverflowBelowTimestep = 150 });
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 5, noGuidance));
        Assert.Equal(DiffusionStage.Denoising, e.Stage);
        Assert.Equal(9, e.Step);
        Assert.Equal(101f, e.Timestep);
        Assert.Equal(4 * 8 * 8, e.InfinityCount);
        // With guidance, ∞ − ∞ makes the guided prediction NaN: still caught at the same step.
        var guided = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 5, TenDdimSteps));
        Assert.Equal(9, guided.Step);
        Assert.True(guided.NaNCount > 0);
        // In float32 the same outputs fit (10⁹ and then 10¹⁸), so the check raises no false alarm.
        var fp32 = cache.Get(new TestModelOptions { OverflowBelowTimestep = 150 });
        fp32.Generate(Prompt, 5, noGuidance).Image.Dispose();
    }

    [Fact]
    public void NanFromTheTextEncoderStopsBeforeTheUNet()
    {
        var pipeline = cache.Get(new TestModelOptions { NanTextEncoder = true });
        long before = pipeline.UNet.RunCount;
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 1, new GenerationOptions { Steps = 2 }));
        Assert.Equal(DiffusionStage.EncodingText, e.Stage);
        Assert.Equal("text encoder output", e.Tensor);
        Assert.Null(e.Timestep);
        Assert.Equal(0, pipeline.UNet.RunCount - before);
    }

    [Fact]
    public void NanFromTheVaeDecoderIsNotWrittenAsABlackImage()
    {
        var pipeline = cache.Get(new TestModelOptions { NanVaeDecoder = true });
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate([new ImagePrompt(Prompt, 1), new ImagePrompt(Prompt, 2)], new GenerationOptions { Steps = 2 }));
        Assert.Equal(DiffusionStage.Decoding, e.Stage);
        Assert.Equal("VAE decoder output", e.Tensor);
        Assert.Equal(1, e.Step);
        Assert.Equal(2, e.TotalSteps);
        Assert.Equal(0, e.ImageIndex);
        Assert.Equal(3 * 64 * 64, e.NaNCount);
    }

    [Fact]
    public void ThePipelineStaysUsableAfterAFault()
    {
        // Every schedule ends below timestep 500, so this model always faults; its other stages still work after it.
        var pipeline = cache.Get(new TestModelOptions { NanBelowTimestep = 500 });
        Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 3, TenDdimSteps));
        Assert.True(NonFiniteLatentsException.AllFinite(pipeline.EncodeText([Prompt])));
        using var decoded = pipeline.Decode(new float[4 * 8 * 8], 1, 8, 8)[0];
        Assert.Equal(64, decoded.Width);
        Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 3, TenDdimSteps));
    }

    [Fact]
    public void TheCheckIsExactForEveryKindOfNonFiniteValue()
    {
        float[] values = new float[1000];
        Assert.True(NonFiniteLatentsException.AllFinite(values));
        values[999] = float.MaxValue;
        values[3] = -float.MaxValue;
        Assert.True(NonFiniteLatentsException.AllFinite(values));
        foreach (var bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, BitConverter.Int32BitsToSingle(0x7FC00001), BitConverter.Int32BitsToSingle(unchecked((int)0xFFC00000)) })
            for (int at = 0; at < values.Length; at += 97)
            {
                var copy = (float[])values.Clone();
                copy[at] = bad;
                Assert.False(NonFiniteLatentsException.AllFinite(copy), $"{bad} at {at}");
            }
    }
}

using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.ImageToImage.ImageToImageTestKit;

namespace MLNet.Diffusion.Tests.ImageToImage;

/// <summary>Bad image requests fail before any model runs, with a message that names the problem.</summary>
public class BadImageInputTests
{
    private static void AssertNothingRan(StableDiffusionPipeline pipeline) => Assert.Equal(0, pipeline.UNet.RunCount);

    [Fact]
    public void MaskOfAnotherSizeIsRefused()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var input = BlockImage(64, 64);
        using var mask = MaskImage(32, 64, (_, _) => true);
        var e = Assert.Throws<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Prompt) { InitImage = input, Mask = mask }]));
        Assert.Contains("Mask is 32×64", e.Message);
        Assert.Contains("InitImage is 64×64", e.Message);
        AssertNothingRan(pipeline);
    }

    [Theory]
    [InlineData(-0.1f)]
    [InlineData(1.5f)]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void StrengthOutsideZeroToOneIsRefused(float strength)
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var input = BlockImage(64, 64);
        ImagePrompt[] requests = [new(Prompt, 1), new(Prompt, 2) { InitImage = input, Strength = strength }];
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.Generate(requests));
        Assert.Contains("Image 1: Strength must be from 0 to 1", e.Message);
        Assert.Contains(strength.ToString(), e.Message);
        AssertNothingRan(pipeline);
    }

    [Fact]
    public void MissingVaeEncoderIsNamedWhenAnInitImageIsGiven()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-noencoder-");
        try
        {
            TestModelFactory.CreateWithout(dir.FullName, "vae_encoder");
            using var pipeline = StableDiffusionPipeline.Load(dir.FullName); // text-to-image does not need it
            Assert.Null(pipeline.VaeEncoder);
            using var input = BlockImage(64, 64);
            var e = Assert.Throws<InvalidOperationException>(() => pipeline.Generate([new ImagePrompt(Prompt) { InitImage = input }]));
            Assert.Contains(dir.FullName, e.Message);
            Assert.Contains(Path.Combine("vae_encoder", "model.onnx"), e.Message);
            Assert.Contains("Image 0", e.Message);
            AssertNothingRan(pipeline);
            var direct = Assert.Throws<InvalidOperationException>(() => pipeline.EncodeImage(input, 64, 64));
            Assert.Contains(Path.Combine("vae_encoder", "model.onnx"), direct.Message);
            pipeline.Generate(Prompt, 0, new GenerationOptions { Steps = 2 }).Image.Dispose();
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void MaskOrStrengthWithoutAnInitImageIsRefused()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var mask = MaskImage(64, 64, (_, _) => true);
        var e = Assert.Throws<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Prompt) { Mask = mask }]));
        Assert.Contains("Mask needs an InitImage", e.Message);
        var s = Assert.Throws<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Prompt) { Strength = 0.5f }]));
        Assert.Contains($"Strength ({0.5f}) applies to an InitImage", s.Message);
        AssertNothingRan(pipeline);
    }

    [Fact]
    public void InpaintingUNetNeedsAnInitImage()
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { UnetInChannels = 9 });
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var e = Assert.Throws<NotSupportedException>(() => pipeline.Generate(Prompt, 0));
        Assert.Contains("inpainting UNet", e.Message);
        Assert.Contains("InitImage", e.Message);
        var cond = pipeline.EncodeText([Prompt]);
        Assert.Throws<NotSupportedException>(() => pipeline.Denoise(cond, default, [1L], [1f], new GenerationOptions { Width = 64, Height = 64 }));
        AssertNothingRan(pipeline);
    }

    [Fact]
    public void TheImagePromptOverloadOfDenoiseChecksTheSameThings()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var input = BlockImage(64, 64);
        var cond = pipeline.EncodeText([Prompt]);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            pipeline.Denoise(cond, default, [new ImagePrompt(Prompt) { InitImage = input, Strength = 2 }], new GenerationOptions { Width = 64, Height = 64, GuidanceScale = 1 }));
        var latents = pipeline.Denoise(cond, default, [new ImagePrompt(Prompt) { InitImage = input, Strength = 0 }], new GenerationOptions { Width = 64, Height = 64, GuidanceScale = 1 });
        Assert.Equal(pipeline.EncodeImage(input, 64, 64), latents);
    }
}

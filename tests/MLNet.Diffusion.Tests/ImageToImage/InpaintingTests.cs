using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.ImageToImage.ImageToImageTestKit;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.ImageToImage;

public class InpaintingTests(PipelineCache models) : IClassFixture<PipelineCache>
{
    /// <summary>Repaint the lower-left quarter and one more block: block-aligned, so every 8×8 block is either kept or repainted.</summary>
    private static bool Repaint(int x, int y) => (x < 32 && y >= 32) || (x is >= 48 and < 56 && y is >= 8 and < 16);

    /// <summary>The mask at latent size [8 × 8].</summary>
    private static float[] LatentMask()
    {
        var m = new float[64];
        for (int by = 0; by < 8; by++)
            for (int bx = 0; bx < 8; bx++)
                m[by * 8 + bx] = Repaint(8 * bx, 8 * by) ? 1 : 0;
        return m;
    }

    [Theory]
    [InlineData("ddim", null)]
    [InlineData("pndm", 0.75f)]
    [InlineData("euler-a", null)]
    [InlineData("heun", 0.6f)]
    [InlineData("kdpm2", null)]
    [InlineData("dpm++2m", 0.5f)]
    [InlineData("lcm", null)]
    public void FourChannelInpaintingKeepsTheOutsideAndReachesTheTargetInside(string scheduler, float? strength)
    {
        var pipeline = models.Get(new TestModelOptions { SchedulerConfigJson = ExactEndConfig });
        Assert.Equal(4, pipeline.UNet.InChannels);
        using var input = BlockImage(64, 64);
        using var mask = MaskImage(64, 64, Repaint);
        var result = pipeline.Generate([new ImagePrompt(Prompt, 4) { NegativePrompt = "blue dog", InitImage = input, Mask = mask, Strength = strength }],
            new GenerationOptions { Steps = scheduler == "lcm" ? 6 : 20, Scheduler = scheduler, GuidanceScale = 2.5f })[0];
        using var image = result.Image;

        var target = GuidedTarget(Prompt, "blue dog", 2.5f);
        var original = pipeline.EncodeImage(input, 64, 64); // the block colours up to float rounding in the VAE
        Assert.True(MaxAbsDiff(original, BlockLatents(64, 64)) < 1e-5);
        var m = LatentMask();
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 64; p++)
            {
                float actual = result.Latents[c * 64 + p];
                if (m[p] == 0) Assert.Equal(original[c * 64 + p], actual); // the init latents exactly
                else Assert.True(Math.Abs(actual - target[c]) < 2e-2, $"{scheduler}: channel {c}, block {p}: {actual} vs target {target[c]}");
            }

        // Outside the mask the pixels are the input's (the test VAE round trip is exact on block images).
        var inputRgb = Rgb(input);
        var rgb = Rgb(image);
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
                for (int c = 0; c < 3; c++)
                {
                    int i = 3 * (y * 64 + x) + c;
                    if (!Repaint(x, y)) Assert.Equal(inputRgb[i], rgb[i]);
                    else Assert.InRange(rgb[i], ExpectedByte(target[c]) - 3, ExpectedByte(target[c]) + 3);
                }
    }

    [Theory]
    [InlineData(VaeEncoderForm.LatentSample, null, "pndm")]
    [InlineData(VaeEncoderForm.LatentParameters, null, "euler-a")]
    [InlineData(VaeEncoderForm.LatentSample, 0.5f, "ddim")]
    [InlineData(VaeEncoderForm.LatentParameters, 0.7f, "heun")]
    public void NineChannelUNetGetsTheMaskAndMaskedImageLatentsInDiffusersOrder(VaeEncoderForm form, float? strength, string scheduler)
    {
        var o = new TestModelOptions { UnetInChannels = 9, Encoder = form, SchedulerConfigJson = ExactEndConfig };
        var pipeline = models.Get(o);
        Assert.Equal(9, pipeline.UNet.InChannels);
        using var input = BlockImage(64, 64);
        using var mask = MaskImage(64, 64, Repaint);
        long before = pipeline.UNet.RunCount;
        var result = pipeline.Generate([new ImagePrompt(Prompt, 8) { NegativePrompt = "blue dog", InitImage = input, Mask = mask, Strength = strength }],
            new GenerationOptions { Steps = 20, Scheduler = scheduler, GuidanceScale = 2.5f })[0];
        result.Image.Dispose();
        Assert.True(pipeline.UNet.RunCount > before);

        // The test inpainting UNet's data is m·target + (1 − m)·M for UNet channels x (0–3) ++ m (4) ++ M (5–8);
        // M is the latents of image·(mask < ½): the input's latents where kept, 0 (mid grey) where repainted.
        // Any other channel order blends with a latent channel as the mask and misses this by far.
        var m = LatentMask();
        var masked = BlockLatents(64, 64);
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 64; p++)
                if (m[p] == 1) masked[c * 64 + p] = 0;
        var expected = TestModelFactory.InpaintTarget(GuidedTarget(Prompt, "blue dog", 2.5f), m, masked, 8, 8);
        double error = MaxAbsDiff(result.Latents, expected);
        Assert.True(error < 2e-2, $"max error {error}");
    }

    [Fact]
    public void NineChannelUNetWithoutAMaskRepaintsEverything()
    {
        var pipeline = models.Get(new TestModelOptions { UnetInChannels = 9, SchedulerConfigJson = ExactEndConfig });
        using var input = BlockImage(64, 64);
        var result = pipeline.Generate([new ImagePrompt(Prompt, 8) { InitImage = input }], new GenerationOptions { Steps = 20, Scheduler = "ddim", GuidanceScale = 1 })[0];
        result.Image.Dispose();
        Assert.True(MaxAbsDiff(result.Latents, TestModelFactory.ExpandTarget(GuidedTarget(Prompt, "", 1), 8, 8)) < 2e-2);
    }

    [Fact]
    public void MaskBlocksFollowTheirTopLeftPixelAsDiffusersNearestDownsampling()
    {
        var pipeline = models.Get(new TestModelOptions { SchedulerConfigJson = ExactEndConfig });
        using var input = BlockImage(64, 64);
        // White 4×4 squares: at the top-left corner of block (1, 1), and in the middle of block (2, 0).
        using var mask = MaskImage(64, 64, (x, y) => (x is >= 8 and < 12 && y is >= 8 and < 12) || (x is >= 20 and < 24 && y is >= 2 and < 6));
        var result = pipeline.Generate([new ImagePrompt(Prompt, 1) { InitImage = input, Mask = mask }], new GenerationOptions { Steps = 10, Scheduler = "ddim", GuidanceScale = 1 })[0];
        result.Image.Dispose();
        var original = pipeline.EncodeImage(input, 64, 64);
        var target = GuidedTarget(Prompt, "", 1);
        for (int p = 0; p < 64; p++)
            for (int c = 0; c < 4; c++)
            {
                if (p == 1 * 8 + 1) Assert.True(Math.Abs(result.Latents[c * 64 + p] - target[c]) < 2e-2);
                else Assert.Equal(original[c * 64 + p], result.Latents[c * 64 + p]);
            }
    }

    [Fact]
    public void StrengthZeroInpaintingReturnsTheInput()
    {
        var pipeline = models.Get();
        using var input = BlockImage(64, 64);
        using var mask = MaskImage(64, 64, Repaint);
        var (result, runs) = GenerateCounting(pipeline, new ImagePrompt(Prompt, 1) { InitImage = input, Mask = mask, Strength = 0 }, new GenerationOptions { Steps = 10 });
        using var image = result.Image;
        Assert.Equal(0, runs);
        Assert.Equal(Rgb(input), Rgb(image));
    }
}

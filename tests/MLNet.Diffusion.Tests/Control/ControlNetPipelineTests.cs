using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Control;

/// <summary>
/// ControlNets in the denoising loop, against the closed form of the test models (<see cref="ControlNetTestModelFactory"/>):
/// a ControlNet moves the oracle's target by scale × the control image's mean, and Euler ends (at σ = 0) on the target of
/// its last call, so the final latents show the scale, the sum of several ControlNets, whether both guidance halves saw
/// the control image, guess mode and whether the last call was inside the window; the ControlNet's run count shows the
/// window's calls.
/// </summary>
public sealed class ControlNetPipelineTests : IDisposable
{
    private const string Prompt = "a red cat", Negative = "blue dog";
    private const int Size = 64, Latent = 8;
    private const float Guidance = 3f;
    private readonly ControlNetTestKit _kit = new();
    private readonly StableDiffusionPipeline _pipeline;

    public ControlNetPipelineTests() => _pipeline = StableDiffusionPipeline.Load(_kit.ModelPath);

    public void Dispose()
    {
        _pipeline.Dispose();
        _kit.Dispose();
    }

    private static GenerationOptions Options(float guidance = Guidance, int steps = 10) => new() { Steps = steps, GuidanceScale = guidance, Scheduler = "euler" };

    private float[] Run(GenerationOptions options, ImagePrompt? request = null)
    {
        var result = _pipeline.Generate([request ?? new ImagePrompt(Prompt, 7) { NegativePrompt = Negative }], options)[0];
        result.Image.Dispose();
        return result.Latents;
    }

    /// <summary>The oracle's answer for the prompt, each guidance half's target moved by its shift.</summary>
    private static float[] Expected(float guidance, float unconditionalShift, float conditionalShift)
    {
        var zc = TestModelFactory.TargetLatentForPrompt(Prompt);
        var target = new float[4];
        if (guidance > 1)
        {
            var zu = TestModelFactory.TargetLatentForPrompt(Negative);
            for (int c = 0; c < 4; c++) target[c] = zu[c] + unconditionalShift + guidance * (zc[c] + conditionalShift - zu[c] - unconditionalShift);
        }
        else
        {
            for (int c = 0; c < 4; c++) target[c] = zc[c] + conditionalShift;
        }
        return TestModelFactory.ExpandTarget(target, Latent, Latent);
    }

    private static void AssertClose(float[] expected, float[] actual, double tolerance = 2e-3) =>
        Assert.True(MaxAbsDiff(expected, actual) < tolerance, $"max error {MaxAbsDiff(expected, actual)}");

    [Theory]
    [InlineData(1f, 1f)]
    [InlineData(1f, 0.5f)]
    [InlineData(Guidance, 1f)]
    [InlineData(Guidance, 0.4f)]
    public void AControlNetMovesTheResultByItsScaleTimesTheControlImageMeanInBothGuidanceHalves(float guidance, float scale)
    {
        using var image = ControlNetTestKit.Solid(Size, 200, 100, 50);
        var options = Options(guidance);
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet(), image) { Scale = scale });
        float shift = scale * ControlNetTestKit.Mean(200, 100, 50);
        // Both halves fed: z_u + δ + g·(z_c − z_u). The conditional half alone would give z_g + g·δ, the unconditional alone z_g + (1 − g)·δ.
        AssertClose(Expected(guidance, guidance > 1 ? shift : 0, shift), Run(options));
    }

    [Fact]
    public void WithoutControlNetsTheSameFolderGivesThePlainResult()
    {
        AssertClose(ExpectedLatents(Prompt, Negative, Guidance, Latent, Latent), Run(Options()));
    }

    [Fact]
    public void ScaleZeroGivesThePlainResult()
    {
        using var image = ControlNetTestKit.Solid(Size, 255, 255, 255);
        var options = Options();
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet(), image) { Scale = 0 });
        AssertClose(ExpectedLatents(Prompt, Negative, Guidance, Latent, Latent), Run(options));
    }

    [Fact]
    public void TwoControlNetsSumTheirResiduals()
    {
        using var first = ControlNetTestKit.Solid(Size, 255, 255, 255);
        using var second = ControlNetTestKit.Solid(Size, 0, 90, 0);
        var options = Options();
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet("a"), first) { Scale = 0.3f });
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet("b"), second) { Scale = 2f });
        float shift = 0.3f * 1f + 2f * ControlNetTestKit.Mean(0, 90, 0);
        AssertClose(Expected(Guidance, shift, shift), Run(options));
    }

    [Fact]
    public void TheSecondControlNetAloneInItsWindowStillReachesTheUNet()
    {
        // ControlNet 0 stops before the last call, so at the last call ControlNet 1 is the only one: its residuals are copied,
        // not added to ControlNet 0's stale ones.
        using var first = ControlNetTestKit.Solid(Size, 255, 255, 255);
        using var second = ControlNetTestKit.Solid(Size, 0, 0, 120);
        var options = Options();
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet("a"), first) { End = 0.5f });
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet("b"), second));
        float shift = ControlNetTestKit.Mean(0, 0, 120);
        AssertClose(Expected(Guidance, shift, shift), Run(options));
    }

    [Theory]
    [InlineData(0f, 1f, 10, true)]
    [InlineData(0.2f, 0.7f, 5, false)]  // calls 2 … 6: i/10 ≥ 0.2 and (i + 1)/10 ≤ 0.7
    [InlineData(0.5f, 1f, 5, true)]     // calls 5 … 9
    [InlineData(0f, 0.3f, 3, false)]    // calls 0 … 2
    [InlineData(0.3f, 0.35f, 0, false)] // no call: diffusers' formula keeps none
    public void TheWindowDecidesWhichCallsRunTheControlNet(float start, float end, int runs, bool lastCallControlled)
    {
        using var image = ControlNetTestKit.Solid(Size, 250, 10, 130);
        var options = Options();
        var folder = _kit.ControlNet();
        options.ControlNets.Add(new ControlNetInput(folder, image) { Start = start, End = end });
        Run(Options()); // no control: loads nothing
        var latents = Run(options);
        var net = Assert.Single(_pipeline.Model.LoadedControlNets);
        Assert.Equal(runs, net.RunCount);
        float shift = lastCallControlled ? ControlNetTestKit.Mean(250, 10, 130) : 0;
        AssertClose(Expected(Guidance, shift, shift), latents);
    }

    [Fact]
    public void WithAnInitImageTheWindowCountsTheCallsThatRun()
    {
        // diffusers' img2img ControlNet pipeline computes controlnet_keep over the timesteps left after strength: 10 steps
        // at strength 0.5 run 5 calls, and an end of 0.6 keeps calls i with (i + 1)/5 ≤ 0.6: 0, 1, 2.
        using var image = ControlNetTestKit.Solid(Size, 250, 10, 130);
        using var init = ControlNetTestKit.Solid(Size, 128, 128, 128);
        var options = Options();
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet(), image) { End = 0.6f });
        var latents = Run(options, new ImagePrompt(Prompt, 7) { NegativePrompt = Negative, InitImage = init, Strength = 0.5f });
        Assert.Equal(3, Assert.Single(_pipeline.Model.LoadedControlNets).RunCount);
        AssertClose(Expected(Guidance, 0, 0), latents); // the last call is outside the window: the plain target
    }

    [Fact]
    public void ALoadedControlNetIsNotOpenedAgainByLaterGenerations()
    {
        using var image = ControlNetTestKit.Solid(Size, 200, 100, 50);
        var folder = _kit.ControlNet();
        var options = Options();
        options.ControlNets.Add(new ControlNetInput(folder, image));
        var first = Run(options);
        File.Delete(Path.Combine(folder, "model.onnx")); // the session holds the model: a later generation needs no file
        Assert.Equal(first, Run(options));
    }

    [Fact]
    public void GuessModeFeedsTheConditionalHalfOnlyAndRampsTheResidualsAsDiffusersDoes()
    {
        using var image = ControlNetTestKit.Solid(Size, 180, 180, 180);
        var options = Options();
        options.ControlGuessMode = true;
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet(), image) { Scale = 0.8f });
        float shift = (float)(0.8f * ControlNetTestKit.Mean(180, 180, 180) * ControlNetTestModelFactory.GuessFactor(ControlResidualsDown));
        AssertClose(Expected(Guidance, 0, shift), Run(options));
    }

    [Fact]
    public void GuessModeWithoutGuidanceStillRampsTheResiduals()
    {
        using var image = ControlNetTestKit.Solid(Size, 180, 180, 180);
        var options = Options(guidance: 1);
        options.ControlGuessMode = true;
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet(), image));
        float shift = (float)(ControlNetTestKit.Mean(180, 180, 180) * ControlNetTestModelFactory.GuessFactor(ControlResidualsDown));
        AssertClose(Expected(1, 0, shift), Run(options));
    }

    private const int ControlResidualsDown = 12;

    [Fact]
    public void EachRequestMayBringItsOwnControlImageAndScale()
    {
        using var shared = ControlNetTestKit.Solid(Size, 255, 255, 255);
        using var own = ControlNetTestKit.Solid(Size, 30, 60, 90);
        var options = Options();
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet(), shared));
        var results = _pipeline.Generate(
        [
            new ImagePrompt(Prompt, 1) { NegativePrompt = Negative },
            new ImagePrompt(Prompt, 2) { NegativePrompt = Negative, ControlImages = [own] },
            new ImagePrompt(Prompt, 3) { NegativePrompt = Negative, ControlScale = 0.25f },
        ], options);
        foreach (var r in results) r.Image.Dispose();
        AssertClose(Expected(Guidance, 1, 1), results[0].Latents);
        float ownShift = ControlNetTestKit.Mean(30, 60, 90);
        AssertClose(Expected(Guidance, ownShift, ownShift), results[1].Latents);
        AssertClose(Expected(Guidance, 0.25f, 0.25f), results[2].Latents);
    }

    [Fact]
    public void AControlImageOfAnotherSizeIsResizedToTheGenerationSize()
    {
        using var image = ControlNetTestKit.Solid(24, 90, 200, 10);
        var options = Options();
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet(), image));
        float shift = ControlNetTestKit.Mean(90, 200, 10);
        AssertClose(Expected(Guidance, shift, shift), Run(options));
    }

    [Fact]
    public void ARequestWithoutAControlImageIsRefusedBeforeAnyModelRuns()
    {
        var options = Options();
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet()));
        long runs = _pipeline.UNet.RunCount;
        var e = Assert.Throws<ArgumentException>(() => Run(options));
        Assert.Contains("ControlNet 0", e.Message);
        Assert.Contains("ControlImages[0]", e.Message);
        Assert.Equal(runs, _pipeline.UNet.RunCount);
    }

    [Theory]
    [InlineData(0.5f, 0.5f, "GenerationOptions.ControlNets[0].Start (0.5) must be below GenerationOptions.ControlNets[0].End (0.5)")]
    [InlineData(-0.1f, 1f, "GenerationOptions.ControlNets[0].Start must be from 0 to 1")]
    [InlineData(0f, 1.5f, "GenerationOptions.ControlNets[0].End must be from 0 to 1")]
    public void AWindowOutsideTheScheduleIsRefusedNamingTheSetting(float start, float end, string message)
    {
        using var image = ControlNetTestKit.Solid(Size, 1, 2, 3);
        var options = Options();
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet(), image) { Start = start, End = end });
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Run(options));
        Assert.Contains(message, e.Message);
    }
}

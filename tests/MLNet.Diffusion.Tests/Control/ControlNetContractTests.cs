using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Control;

/// <summary>
/// The export variations of the ControlNet contract (residual names, <c>conditioning_scale</c> as a rank-0 double, a [1]
/// float or absent, float16 boundaries, the ControlNet-ready UNet beside <c>unet/</c> or as <c>unet/</c>) give the same
/// closed-form result, and a ControlNet that does not fit the UNet is refused at load, naming the first mismatch.
/// </summary>
public sealed class ControlNetContractTests
{
    private const string Prompt = "a red cat", Negative = "blue dog";
    private const float Guidance = 2.5f;

    private static float[] Generate(ControlNetTestKit kit, string controlNet, float scale, byte grey, GenerationOptions? options = null)
    {
        using var pipeline = StableDiffusionPipeline.Load(kit.ModelPath);
        using var image = ControlNetTestKit.Solid(64, grey, grey, grey);
        options ??= new GenerationOptions { Steps = 8, GuidanceScale = Guidance, Scheduler = "euler" };
        options.ControlNets.Add(new ControlNetInput(controlNet, image) { Scale = scale });
        var result = pipeline.Generate([new ImagePrompt(Prompt, 3) { NegativePrompt = Negative }], options)[0];
        result.Image.Dispose();
        return result.Latents;
    }

    /// <summary>Both halves moved by scale × grey/255.</summary>
    private static float[] Expected(float scale, byte grey, TestModelOptions? model = null)
    {
        var plain = ExpectedLatents(Prompt, Negative, Guidance, 8, 8, model);
        float shift = scale * (grey / 255f);
        return [.. plain.Select(v => v + shift)];
    }

    [Theory]
    [InlineData(ResidualNaming.OnnxStack, true, OnnxElementType.Double, true)]
    [InlineData(ResidualNaming.Diffusers, true, OnnxElementType.Float, false)]
    [InlineData(ResidualNaming.Anonymous, true, OnnxElementType.Double, true)]
    [InlineData(ResidualNaming.OnnxStack, false, OnnxElementType.Double, true)] // no conditioning_scale: scaled on the host
    public void ExportVariationsGiveTheSameResult(ResidualNaming naming, bool scaleInput, OnnxElementType scaleType, bool rankZero)
    {
        var residuals = new ControlNetTestOptions { Naming = naming, ScaleInput = scaleInput, ScaleType = scaleType, ScaleRankZero = rankZero };
        using var kit = new ControlNetTestKit(residuals: residuals);
        var latents = Generate(kit, kit.ControlNet(o: residuals), 0.6f, 170);
        Assert.True(MaxAbsDiff(Expected(0.6f, 170), latents) < 2e-3, $"max error {MaxAbsDiff(Expected(0.6f, 170), latents)}");
    }

    [Fact]
    public void AUNetThatTakesTheResidualsItselfRunsWithZeroResidualsWithoutControlNets()
    {
        using var kit = new ControlNetTestKit(place: ControlUNetPlace.InUnet);
        using (var pipeline = StableDiffusionPipeline.Load(kit.ModelPath))
        {
            Assert.True(pipeline.UNet.TakesControl);
            var plain = pipeline.Generate([new ImagePrompt(Prompt, 3) { NegativePrompt = Negative }], new GenerationOptions { Steps = 8, GuidanceScale = Guidance, Scheduler = "euler" })[0];
            plain.Image.Dispose();
            Assert.True(MaxAbsDiff(ExpectedLatents(Prompt, Negative, Guidance, 8, 8), plain.Latents) < 2e-3);
        }
        var latents = Generate(kit, kit.ControlNet(), 1.5f, 40);
        Assert.True(MaxAbsDiff(Expected(1.5f, 40), latents) < 2e-3);
    }

    [Fact]
    public void Float16ExportsGiveTheResultToHalfPrecision()
    {
        var model = new TestModelOptions { Fp16 = true };
        using var kit = new ControlNetTestKit(model);
        using var pipeline = StableDiffusionPipeline.Load(kit.ModelPath);
        using var a = ControlNetTestKit.Solid(64, 100, 100, 100);
        using var b = ControlNetTestKit.Solid(64, 200, 200, 200);
        var options = new GenerationOptions { Steps = 8, GuidanceScale = Guidance, Scheduler = "euler" };
        options.ControlNets.Add(new ControlNetInput(kit.ControlNet("a"), a) { Scale = 0.5f });
        options.ControlNets.Add(new ControlNetInput(kit.ControlNet("b"), b) { Scale = 0.25f });
        var result = pipeline.Generate([new ImagePrompt(Prompt, 3) { NegativePrompt = Negative }], options)[0];
        result.Image.Dispose();
        var plain = ExpectedLatents(Prompt, Negative, Guidance, 8, 8, model);
        float shift = 0.5f * 100 / 255f + 0.25f * 200 / 255f;
        var expected = plain.Select(v => v + shift).ToArray();
        Assert.True(MaxAbsDiff(expected, result.Latents) < 3e-2, $"max error {MaxAbsDiff(expected, result.Latents)}");
    }

    [Fact]
    public void AControlNetWithOtherChannelsIsRefusedNamingTheFirstMismatch()
    {
        using var kit = new ControlNetTestKit();
        var wide = kit.ControlNet("wide", new ControlNetTestOptions { LevelChannels = [4, 8, 32, 32] });
        var e = Assert.Throws<InvalidDataException>(() => Generate(kit, wide, 1, 10));
        Assert.Contains("down_block_7_additional_residual: the ControlNet gives 32 channels", e.Message);
        Assert.Contains("the UNet takes 16", e.Message);
        Assert.Contains(Path.Combine("wide", "model.onnx"), e.Message);
    }

    [Fact]
    public void AnSdxlSizedControlNetIsRefusedByItsResidualCount()
    {
        using var kit = new ControlNetTestKit();
        var xl = kit.ControlNet("xl", new ControlNetTestOptions { LevelChannels = [4, 8, 16] });
        var e = Assert.Throws<InvalidDataException>(() => Generate(kit, xl, 1, 10));
        Assert.Contains("the ControlNet gives 9 down-block residuals and the UNet takes 12", e.Message);
    }

    [Fact]
    public void AFolderWithoutAControlNetReadyUNetIsRefusedWithTheLayoutsThatWork()
    {
        using var kit = new ControlNetTestKit();
        var controlNet = kit.ControlNet();
        using var plain = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(plain.Path);
        using var image = ControlNetTestKit.Solid(64, 1, 1, 1);
        var options = new GenerationOptions { Steps = 2 };
        options.ControlNets.Add(new ControlNetInput(controlNet, image));
        var e = Assert.Throws<NotSupportedException>(() => pipeline.Generate([new ImagePrompt(Prompt)], options));
        Assert.Contains(Path.Combine("controlnet", "model.onnx"), e.Message);
        Assert.Contains("mid_block_additional_residual", e.Message);
    }

    [Fact]
    public void AMissingControlNetFolderIsNamed()
    {
        using var kit = new ControlNetTestKit();
        string missing = Path.Combine(kit.Root, "nowhere");
        var e = Assert.Throws<DirectoryNotFoundException>(() => Generate(kit, missing, 1, 1));
        Assert.Contains(missing, e.Message);
    }

    [Fact]
    public void AControlNetFolderInDiffusersLayoutIsFound()
    {
        using var kit = new ControlNetTestKit();
        var folder = Path.Combine(kit.Root, "diffusers-like");
        ControlNetTestModelFactory.CreateControlNet(Path.Combine(folder, "controlnet"), kit.Model);
        var latents = Generate(kit, folder, 1, 51);
        Assert.True(MaxAbsDiff(Expected(1, 51), latents) < 2e-3);
    }
}

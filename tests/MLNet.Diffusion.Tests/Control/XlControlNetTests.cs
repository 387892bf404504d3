using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Control;

/// <summary>
/// SDXL: a ControlNet with 9 down residuals that also reads <c>text_embeds</c> and <c>time_ids</c> (views of the UNet
/// binding's own buffers), beside the plain UNet. The XL oracle's target moves by scale × the control image's mean in both
/// guidance halves, or in the conditional half only in guess mode; an SD 1.5 ControlNet is refused.
/// </summary>
public sealed class XlControlNetTests : IDisposable
{
    private const string Prompt = "a red cat";
    private readonly string _root = Directory.CreateTempSubdirectory("mlnd-xl-controlnet-").FullName;
    private readonly XlTestModelOptions _model = new();
    private readonly string _modelPath;

    public XlControlNetTests() => _modelPath = ControlNetTestModelFactory.CreateXlModel(Path.Combine(_root, "model"), _model);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException) { }
    }

    private static float[] Generate(StableDiffusionPipeline pipeline, GenerationOptions options)
    {
        var result = pipeline.Generate([new ImagePrompt(Prompt, 5) { NegativePrompt = "blue dog" }], options)[0];
        result.Image.Dispose();
        return result.Latents;
    }

    [Theory]
    [InlineData(false, 0.8f)]
    [InlineData(true, 0.8f)]
    public void AnSdxlControlNetMovesTheTargetAsTheSdOneDoes(bool guessMode, float scale)
    {
        const float guidance = 3f;
        using var pipeline = StableDiffusionPipeline.Load(_modelPath);
        using var image = ControlNetTestKit.Solid(64, 60, 120, 180);
        var plain = Generate(pipeline, new GenerationOptions { Steps = 8, GuidanceScale = guidance, Scheduler = "euler", Width = 64, Height = 64 });
        var options = new GenerationOptions { Steps = 8, GuidanceScale = guidance, Scheduler = "euler", Width = 64, Height = 64, ControlGuessMode = guessMode };
        options.ControlNets.Add(new ControlNetInput(ControlNetTestModelFactory.CreateXlControlNet(Path.Combine(_root, "cn"), _model), image) { Scale = scale });
        var controlled = Generate(pipeline, options);
        float shift = scale * ControlNetTestKit.Mean(60, 120, 180);
        // Both halves: z_g + δ; guess mode: z_g + g·δ·ramp (the conditional half only, down residuals weighted 0.1 … 1).
        float expected = guessMode ? (float)(guidance * shift * ControlNetTestModelFactory.GuessFactor(ControlNetTestModelFactory.DownCount(3))) : shift;
        var moved = plain.Select(v => v + expected).ToArray();
        Assert.True(MaxAbsDiff(moved, controlled) < 2e-3, $"max error {MaxAbsDiff(moved, controlled)}");
    }

    [Fact]
    public void AnSd15ControlNetIsRefusedByAnSdxlModel()
    {
        using var pipeline = StableDiffusionPipeline.Load(_modelPath);
        using var image = ControlNetTestKit.Solid(64, 1, 1, 1);
        var sd = ControlNetTestModelFactory.CreateControlNet(Path.Combine(_root, "sd15"), new TestModelOptions { EmbeddingWidth = _model.ContextWidth },
            new ControlNetTestOptions { LevelChannels = [4, 8, 16] });
        var options = new GenerationOptions { Steps = 2, Width = 64, Height = 64 };
        options.ControlNets.Add(new ControlNetInput(sd, image));
        var e = Assert.Throws<InvalidDataException>(() => Generate(pipeline, options));
        Assert.Contains("takes no text_embeds and time_ids", e.Message);
    }
}

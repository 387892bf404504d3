#pragma warning disable MEAI001 // IImageGenerator is experimental in Microsoft.Extensions.AI; these tests resolve it.
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using MLNet.Diffusion.Hosting;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Hosting;

/// <summary>SD3 and FLUX.1 folders behind <c>AddStableDiffusion</c> and <see cref="IImageGenerator"/>, with the runtime's
/// T5 settings reaching the engine.</summary>
public sealed class FlowImageGeneratorTests
{
    private const string Prompt = "a red cube";

    [Theory]
    [InlineData(FlowTestFamily.Sd3, true)]
    [InlineData(FlowTestFamily.FluxDev, false)]
    public async Task AFlowFolderGeneratesThroughIImageGeneratorWithTheRuntimesT5Settings(FlowTestFamily family, bool withoutT5)
    {
        var o = new FlowTestModelOptions { Family = family };
        using var folder = FlowTestModelFactory.CreateTemp(o);
        var defaults = new GenerationOptions { Width = 128, Height = 96, Steps = 3, GuidanceScale = family == FlowTestFamily.Sd3 ? 1 : 3.5f };
        using var container = new ServiceCollection()
            .AddStableDiffusion(s =>
            {
                s.ModelPath = folder.Path;
                s.DefaultGenerationOptions = defaults;
                s.Runtime.WithoutT5 = withoutT5;
                s.Runtime.MaxSequenceLength = 48;
            })
            .BuildServiceProvider(new ServiceProviderOptions { ValidateScopes = true, ValidateOnBuild = true });
        var generator = container.GetRequiredService<IImageGenerator>();
        var pipeline = container.GetRequiredService<StableDiffusionPipeline>();
        Assert.Equal(48, pipeline.T5Length);
        var options = new ImageGenerationOptions { AdditionalProperties = new AdditionalPropertiesDictionary { [StableDiffusionImageGenerator.SeedProperty] = 4L } };
        var response = await generator.GenerateAsync(new ImageGenerationRequest(Prompt), options);
        var png = Assert.IsType<DataContent>(Assert.Single(response.Contents)).Data.ToArray();

        var direct = pipeline.Generate([new ImagePrompt(Prompt, 4)], defaults)[0];
        using (var image = direct.Image) Assert.Equal(PngEncoder.Encode(image), png);
        var (embeds, pooled) = family == FlowTestFamily.Sd3
            ? FlowTestModelFactory.Sd3ConditioningForPrompt(Prompt, 48, !withoutT5, o)
            : FlowTestModelFactory.FluxConditioningForPrompt(Prompt, 48, o);
        var expected = FlowTestModelFactory.TargetLatents(embeds, pooled, defaults.GuidanceScale, 12, 16, o);
        Assert.True(MaxAbsDiff(direct.Latents, expected) < 2e-3, $"max error {MaxAbsDiff(direct.Latents, expected)}");
    }
}

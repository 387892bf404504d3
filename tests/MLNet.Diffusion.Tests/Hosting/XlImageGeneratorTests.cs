#pragma warning disable MEAI001 // IImageGenerator is experimental in Microsoft.Extensions.AI; these tests resolve it.
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using MLNet.Diffusion.Hosting;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Hosting;

/// <summary>SDXL folders behind <c>AddStableDiffusion</c> and <see cref="IImageGenerator"/>.</summary>
public sealed class XlImageGeneratorTests
{
    private const string Prompt = "a red cat";

    private static GenerationOptions Defaults() => new() { Width = 64, Height = 48, Steps = 20, GuidanceScale = 2, Scheduler = "euler" };

    private static ServiceProvider Container(string path) =>
        new ServiceCollection()
            .AddStableDiffusion(o =>
            {
                o.ModelPath = path;
                o.DefaultGenerationOptions = Defaults();
            })
            .BuildServiceProvider(new ServiceProviderOptions { ValidateScopes = true, ValidateOnBuild = true });

    /// <summary>The PNG the engine gives for the prompt and seed, with <paramref name="options"/>, and its latents.</summary>
    private static (byte[] Png, float[] Latents) Direct(StableDiffusionPipeline pipeline, GenerationOptions options, long seed)
    {
        var result = pipeline.Generate([new ImagePrompt(Prompt, seed)], options)[0];
        using var image = result.Image;
        return (PngEncoder.Encode(image), result.Latents);
    }

    private static async Task<byte[]> ThroughGenerator(IImageGenerator generator, long seed, params (string Key, object Value)[] properties)
    {
        var extra = new AdditionalPropertiesDictionary { [StableDiffusionImageGenerator.SeedProperty] = seed };
        foreach (var (key, value) in properties) extra[key] = value;
        var response = await generator.GenerateAsync(new ImageGenerationRequest(Prompt), new ImageGenerationOptions { AdditionalProperties = extra });
        return Assert.IsType<DataContent>(Assert.Single(response.Contents)).Data.ToArray();
    }

    [Fact]
    public async Task AnSdxlFolderGeneratesThroughAddStableDiffusionAndIImageGenerator()
    {
        var o = new XlTestModelOptions();
        using var folder = XlTestModelFactory.CreateTemp(o);
        using var container = Container(folder.Path);
        var generator = container.GetRequiredService<IImageGenerator>();
        var pipeline = container.GetRequiredService<StableDiffusionPipeline>();
        Assert.Equal(ModelFamily.StableDiffusionXL, pipeline.Family);
        var png = await ThroughGenerator(generator, 11);
        var (expected, latents) = Direct(pipeline, Defaults(), 11);
        Assert.Equal(expected, png);
        // The engine's latents are the oracle's: both encoders, the pooled embedding and (48, 64, 0, 0, 48, 64) time ids.
        var c = XlTestModelFactory.TargetLatent(XlTestModelFactory.PromptEmbedsForPrompt(Prompt, o), XlTestModelFactory.PooledForPrompt(Prompt, o), [48, 64, 0, 0, 48, 64], [], o);
        var u = XlTestModelFactory.TargetLatent(new float[TestTokenizer.MaxLength * o.ContextWidth], new float[o.ResolvedPooledWidth], [48, 64, 0, 0, 48, 64], [], o);
        var z = new float[4];
        for (int ch = 0; ch < 4; ch++) z[ch] = u[ch] + 2 * (c[ch] - u[ch]);
        Assert.True(MaxAbsDiff(latents, TestModelFactory.ExpandTarget(z, 6, 8)) < 2e-3);
    }

    [Fact]
    public async Task TheRefinersAestheticScoresAreAdditionalProperties()
    {
        using var folder = XlTestModelFactory.CreateTemp(new XlTestModelOptions { Family = XlTestFamily.SdxlRefiner });
        using var container = Container(folder.Path);
        var generator = container.GetRequiredService<IImageGenerator>();
        var pipeline = container.GetRequiredService<StableDiffusionPipeline>();
        var png = await ThroughGenerator(generator, 3,
            (StableDiffusionImageGenerator.AestheticScoreProperty, 9.5), (StableDiffusionImageGenerator.NegativeAestheticScoreProperty, "0.5"));
        var options = Defaults();
        options.AestheticScore = 9.5f;
        options.NegativeAestheticScore = 0.5f;
        Assert.Equal(Direct(pipeline, options, 3).Png, png);
        Assert.NotEqual(Direct(pipeline, Defaults(), 3).Png, png);

        var e = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ThroughGenerator(generator, 3, (StableDiffusionImageGenerator.AestheticScoreProperty, 11)));
        Assert.Contains("ImageGenerationOptions.AdditionalProperties[\"aesthetic_score\"] must be from 0 to 10; got 11", e.Message);
    }
}

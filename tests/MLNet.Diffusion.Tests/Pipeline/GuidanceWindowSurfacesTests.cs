#pragma warning disable MEAI001 // IImageGenerator is experimental in Microsoft.Extensions.AI; these tests resolve it.
using Microsoft.Extensions.AI;
using Microsoft.ML;
using MLNet.Diffusion.Cli;
using MLNet.Diffusion.Cli.Commands;
using MLNet.Diffusion.Tests.Cli;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Tests.Transforms;

namespace MLNet.Diffusion.Tests.Pipeline;

/// <summary>The guidance window reaches the engine from ML.NET's options, the <see cref="IImageGenerator"/>'s additional
/// properties and the CLI's flags: each run's UNet row count shows how many calls ran both halves.</summary>
public sealed class GuidanceWindowSurfacesTests
{
    [Fact]
    public void DiffusionOptionsCarryTheWindowToTheEngine()
    {
        using var folder = TestModelFactory.CreateTemp();
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new PromptRow { Prompt = "a red cat" } });
        var options = new DiffusionOptions { ModelPath = folder.Path, Steps = 10, GuidanceScale = 3, Scheduler = "euler", GuidanceEnd = 0.5f, CallerOwnsImages = false };
        using var model = ml.Transforms.GenerateImages("Image", "Prompt", options).Fit(table);
        var transformer = Assert.IsType<DiffusionTransformer>(model);
        long rows = transformer.Pipeline.UNet.RowCount;
        Assert.Single(TransformTestKit.ReadImages(model.Transform(table)));
        Assert.Equal(5 * 2 + 5, transformer.Pipeline.UNet.RowCount - rows);

        options.GuidanceIntervalLow = 5;
        options.GuidanceIntervalHigh = 1;
        var e = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.GenerateImages("Image", "Prompt", options).Fit(table));
        Assert.Contains("DiffusionOptions.GuidanceIntervalLow (5) must be below DiffusionOptions.GuidanceIntervalHigh (1)", e.Message);
    }

    [Fact]
    public async Task AdditionalPropertiesCarryTheWindowToTheEngine()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var generator = new StableDiffusionImageGenerator(pipeline, new GenerationOptions { Steps = 10, GuidanceScale = 3, Scheduler = "euler" });
        long rows = pipeline.UNet.RowCount;
        var extra = new AdditionalPropertiesDictionary { [StableDiffusionImageGenerator.GuidanceEndProperty] = 0.3 };
        await generator.GenerateAsync(new ImageGenerationRequest("a red cat"), new ImageGenerationOptions { AdditionalProperties = extra });
        Assert.Equal(3 * 2 + 7, pipeline.UNet.RowCount - rows);

        extra = new AdditionalPropertiesDictionary { [StableDiffusionImageGenerator.GuidanceIntervalLowProperty] = -1 };
        var e = await Assert.ThrowsAnyAsync<ArgumentException>(() => generator.GenerateAsync(new ImageGenerationRequest("a red cat"), new ImageGenerationOptions { AdditionalProperties = extra }));
        Assert.Contains("guidance_interval_low", e.Message);
    }

    [Fact]
    public void CliFlagsMapOntoTheOptions()
    {
        var o = new GenerateCommand.Settings { Prompt = "p", GuidanceInterval = "0.28,5.42", GuidanceEnd = 0.6f }.ToGenerationOptions();
        Assert.Equal((0.28f, 5.42f, 0.6f), (o.GuidanceIntervalLow!.Value, o.GuidanceIntervalHigh!.Value, o.GuidanceEnd!.Value));
        o = new GenerateCommand.Settings { Prompt = "p", GuidanceInterval = ",5.42" }.ToGenerationOptions();
        Assert.Equal(((float?)null, (float?)5.42f), (o.GuidanceIntervalLow, o.GuidanceIntervalHigh));
        var defaults = new GenerateCommand.Settings { Prompt = "p" }.ToGenerationOptions();
        Assert.Equal(((float?)null, (float?)null, (float?)null), (defaults.GuidanceIntervalLow, defaults.GuidanceIntervalHigh, defaults.GuidanceEnd));
    }

    [Theory]
    [InlineData(new[] { "--guidance-interval", "5,1" }, "--guidance-interval low (5) must be below --guidance-interval high (1)")]
    [InlineData(new[] { "--guidance-interval", "0.3" }, "--guidance-interval must be LOW,HIGH")]
    [InlineData(new[] { "--guidance-interval", "x,1" }, "the low end 'x' is not a number")]
    [InlineData(new[] { "--guidance-end", "2" }, "--guidance-end must be from 0 to 1")]
    public void BadWindowsAreUsageErrors(string[] flags, string message)
    {
        using var model = TestModelFactory.CreateTemp();
        var result = CliRun.Run(["generate", "a red cat", "--model", model.Path, "--steps", "2", .. flags]);
        Assert.True(result.ExitCode == Program.UsageError, result.ToString());
        Assert.Contains(message, string.Join("\n", result.ErrLines));
    }
}

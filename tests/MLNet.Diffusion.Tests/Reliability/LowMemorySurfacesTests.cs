using Microsoft.ML;
using MLNet.Diffusion.Cli;
using MLNet.Diffusion.Cli.Commands;
using MLNet.Diffusion.Tests.Cli;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Tests.Transforms;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>The low-memory mode from ML.NET's options and the CLI's <c>--low-memory</c>.</summary>
public sealed class LowMemorySurfacesTests
{
    [Fact]
    public void DiffusionOptionsLowMemoryReleasesTheEncodersAfterTheirStage()
    {
        using var folder = TestModelFactory.CreateTemp();
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new PromptRow { Prompt = "a red cat" } });
        var options = new DiffusionOptions { ModelPath = folder.Path, Steps = 4, LowMemory = true };
        using var model = ml.Transforms.GenerateImages("Image", "Prompt", options).Fit(table);
        Assert.Single(TransformTestKit.ReadImages(model.Transform(table)));
        var pipeline = Assert.IsType<DiffusionTransformer>(model).Pipeline;
        Assert.False(pipeline.Model.PromptEncoders.IsLoaded);
        Assert.False(pipeline.Model.VaeDecoders.IsLoaded);
        Assert.Equal(0, pipeline.UNet.IdleBindingCount); // nor the bindings kept for the next generation
    }

    [Fact]
    public void TheLowMemoryFlagReachesTheRuntimeOptionsAndGenerates()
    {
        var environment = new CliEnvironment(TextWriter.Null, TextWriter.Null, CancellationToken.None, Environment.GetEnvironmentVariable);
        Assert.True(ModelLocator.RuntimeOptions(new GenerateCommand.Settings { Prompt = "p", LowMemory = true }, environment).LowMemory);
        Assert.False(ModelLocator.RuntimeOptions(new GenerateCommand.Settings { Prompt = "p" }, environment).LowMemory);
        using var folder = TestModelFactory.CreateTemp();
        var output = Directory.CreateTempSubdirectory("mlnet-lowmem-");
        try
        {
            CliRun.Ok("generate", "a red cat", "--model", folder.Path, "--steps", "2", "--seed", "1", "--low-memory", "--out", output.FullName);
            Assert.Single(output.GetFiles("*.png"));
        }
        finally
        {
            output.Delete(recursive: true);
        }
    }
}

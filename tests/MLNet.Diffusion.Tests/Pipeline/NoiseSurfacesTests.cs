#pragma warning disable MEAI001 // IImageGenerator is experimental in Microsoft.Extensions.AI; these tests resolve it.
using Microsoft.Extensions.AI;
using Microsoft.ML;
using MLNet.Diffusion.Cli;
using MLNet.Diffusion.Cli.Commands;
using MLNet.Diffusion.Tests.Cli;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Tests.Transforms;

namespace MLNet.Diffusion.Tests.Pipeline;

/// <summary>The noise generator choice reaches the engine from ML.NET's options, the <see cref="IImageGenerator"/>'s
/// <c>noise</c> property and the CLI's <c>--noise</c>, and the batch manifest records it.</summary>
public sealed class NoiseSurfacesTests
{
    [Fact]
    public void DiffusionOptionsCarryTheNoiseKind()
    {
        var options = new DiffusionOptions { Noise = NoiseKind.Torch };
        Assert.Equal(NoiseKind.Torch, options.ToGenerationOptions(4, null, null).Noise);
        Assert.Equal(NoiseKind.Default, new DiffusionOptions().ToGenerationOptions(4, null, null).Noise);

        using var folder = TestModelFactory.CreateTemp();
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new PromptRow { Prompt = "a red cat" } });
        var bad = new DiffusionOptions { ModelPath = folder.Path, Steps = 2, Noise = (NoiseKind)9 };
        var e = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.GenerateImages("Image", "Prompt", bad).Fit(table));
        Assert.Contains("DiffusionOptions.Noise must be one of Default, Torch, Numpy, TorchCuda; got 9", e.Message);
    }

    [Fact]
    public async Task NoisePropertyReachesTheEngine()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        // Stopped half-way, the image still shows its initial noise (a finished image of the oracle model is its target).
        var settings = new GenerationOptions { Steps = 10, GuidanceScale = 1, Scheduler = "ddim", DenoisingEnd = 0.5f };
        async Task<byte[]> Png(GenerationOptions defaults, string? noise)
        {
            var extra = new AdditionalPropertiesDictionary { [StableDiffusionImageGenerator.SeedProperty] = 42 };
            if (noise is not null) extra[StableDiffusionImageGenerator.NoiseProperty] = noise;
            var response = await new StableDiffusionImageGenerator(pipeline, defaults)
                .GenerateAsync(new ImageGenerationRequest("a red cat"), new ImageGenerationOptions { AdditionalProperties = extra });
            return Assert.IsType<DataContent>(Assert.Single(response.Contents)).Data.ToArray();
        }

        var torch = settings.Clone();
        torch.Noise = NoiseKind.Torch;
        Assert.Equal(await Png(torch, null), await Png(settings, "torch"));
        Assert.NotEqual(await Png(settings, null), await Png(settings, "torch"));
        Assert.Equal(await Png(settings, null), await Png(torch, "default"));

        var extra = new AdditionalPropertiesDictionary { [StableDiffusionImageGenerator.NoiseProperty] = "gpu" };
        var e = await Assert.ThrowsAnyAsync<ArgumentException>(() => new StableDiffusionImageGenerator(pipeline, settings)
            .GenerateAsync(new ImageGenerationRequest("a red cat"), new ImageGenerationOptions { AdditionalProperties = extra }));
        Assert.Contains("[\"noise\"] must be default, torch, numpy or cuda; got 'gpu'", e.Message);
    }

    [Theory]
    [InlineData("torch", NoiseKind.Torch)]
    [InlineData("NUMPY", NoiseKind.Numpy)]
    [InlineData("cuda", NoiseKind.TorchCuda)]
    [InlineData("default", NoiseKind.Default)]
    public void CliNoiseFlagMapsOntoTheOptions(string flag, NoiseKind kind)
    {
        Assert.Equal(kind, new GenerateCommand.Settings { Prompt = "p", NoiseName = flag }.ToGenerationOptions().Noise);
        Assert.Equal(NoiseKind.Default, new GenerateCommand.Settings { Prompt = "p" }.ToGenerationOptions().Noise);
    }

    [Fact]
    public void BadNoiseFlagIsAUsageError()
    {
        using var model = TestModelFactory.CreateTemp();
        var result = CliRun.Run(["generate", "a red cat", "--model", model.Path, "--steps", "2", "--noise", "gpu"]);
        Assert.True(result.ExitCode == Program.UsageError, result.ToString());
        Assert.Contains("--noise must be default, torch, numpy or cuda; got 'gpu'", string.Join("\n", result.ErrLines));
    }

    [Fact]
    public void ManifestRecordsTheNoiseKindOnlyWhenNotTheDefault()
    {
        var options = new GenerationOptions { Steps = 4 };
        string plain = BatchCommand.SettingsText("model", "ddim", 64, 64, options);
        Assert.DoesNotContain("noise", plain);
        options.Noise = NoiseKind.Torch;
        Assert.Equal(plain + " noise=torch", BatchCommand.SettingsText("model", "ddim", 64, 64, options));
    }
}

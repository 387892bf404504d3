using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Tests.Cli;

namespace MLNet.Diffusion.Tests.Demo;

/// <summary>
/// A size the model cannot make is reported in pixels: the demo model's UNet fixes its latent size, and the refusal used to
/// speak in latents ("fixes sample dimension 2 (latent height) to 16, but 32 was asked for").
/// </summary>
[Collection(DemoCollection.Name)]
public class FixedSizeTests(DemoModelFixture model)
{
    [Fact]
    public void ASizeTheUNetDoesNotMakeIsReportedInPixels()
    {
        using var pipeline = StableDiffusionPipeline.Load(model.Folder);
        const int made = DemoDataset.ImageSize;
        long encoded = pipeline.TextEncoder.RunCount;
        var e = Assert.Throws<ArgumentException>(() => pipeline.Generate("a red circle", 1, new GenerationOptions { Steps = 1, Width = 2 * made, Height = 192 }));
        Assert.Contains($"makes images of {made}×{made} pixels only", e.Message);
        Assert.Contains($"but {2 * made}×192 pixels were asked for", e.Message);
        Assert.Contains($"Ask for {made}×{made}", e.Message);
        Assert.DoesNotContain("dimension 2", e.Message);
        Assert.Equal(encoded, pipeline.TextEncoder.RunCount); // refused before any model runs
    }

    [Fact]
    public void TheCliReportsTheSizesInPixels()
    {
        using var dir = new TempDir();
        const int made = DemoDataset.ImageSize, asked = DemoDataset.ImageSize / 2;
        var result = CliRun.Run("generate", "a red circle", "--size", $"{asked}x{asked}", "--steps", "1", "--model", model.Folder, "--out", dir.Path);
        Assert.True(result.ExitCode != 0, result.ToString());
        string error = Assert.Single(result.ErrLines);
        Assert.Contains($"{made}×{made} pixels only", error);
        Assert.Contains($"{asked}×{asked} pixels were asked for", error);
    }

    [Fact]
    public void TheSizeTheUNetMakesGenerates()
    {
        using var pipeline = StableDiffusionPipeline.Load(model.Folder);
        using var image = pipeline.Generate("a red circle", 1, new GenerationOptions { Steps = 1, Width = DemoDataset.ImageSize, Height = DemoDataset.ImageSize });
        Assert.Equal(DemoDataset.ImageSize, image.Image.Width);
    }
}

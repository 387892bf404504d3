using MLNet.Diffusion.Tests.Cli;

namespace MLNet.Diffusion.Tests.Demo;

/// <summary>
/// A size the model cannot make is reported in pixels (issue 13: the demo model, whose UNet fixes 16×16 latents, said
/// "fixes sample dimension 2 (latent height) to 16, but 32 was asked for" for 256×256).
/// </summary>
[Collection(DemoCollection.Name)]
public class FixedSizeTests(DemoModelFixture model)
{
    [Fact]
    public void ASizeTheUNetDoesNotMakeIsReportedInPixels()
    {
        using var pipeline = StableDiffusionPipeline.Load(model.Folder);
        var e = Assert.Throws<ArgumentException>(() => pipeline.Generate("a red circle", 1, new GenerationOptions { Steps = 1, Width = 256, Height = 192 }));
        Assert.Contains("makes images of 128×128 pixels only", e.Message);
        Assert.Contains("but 256×192 pixels were asked for", e.Message);
        Assert.Contains("Ask for 128×128", e.Message);
        Assert.DoesNotContain("dimension 2", e.Message);
    }

    [Fact]
    public void TheCliReportsTheSizesInPixels()
    {
        using var dir = new TempDir();
        var result = CliRun.Run("generate", "a red circle", "--size", "256x256", "--steps", "1", "--model", model.Folder, "--out", dir.Path);
        Assert.True(result.ExitCode != 0, result.ToString());
        string error = Assert.Single(result.ErrLines);
        Assert.Contains("128×128 pixels only", error);
        Assert.Contains("256×256 pixels were asked for", error);
    }

    [Fact]
    public void TheSizeTheUNetMakesGenerates()
    {
        using var pipeline = StableDiffusionPipeline.Load(model.Folder);
        using var image = pipeline.Generate("a red circle", 1, new GenerationOptions { Steps = 1, Width = 128, Height = 128 });
        Assert.Equal(128, image.Image.Width);
    }
}

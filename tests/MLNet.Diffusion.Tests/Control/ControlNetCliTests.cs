using Microsoft.ML.Data;
using MLNet.Diffusion.Tests.Cli;

namespace MLNet.Diffusion.Tests.Control;

/// <summary>The command line's ControlNet options reach the engine in order: the image the CLI writes is the library's.</summary>
public sealed class ControlNetCliTests
{
    [Fact]
    public void TwoControlNetsWithTheirOwnImagesAndScalesGiveTheLibrarysImage()
    {
        using var kit = new ControlNetTestKit();
        using var dir = new TempDir();
        string a = kit.ControlNet("a"), b = kit.ControlNet("b");
        using var first = ControlNetTestKit.Solid(64, 250, 250, 250);
        using var second = ControlNetTestKit.Solid(32, 0, 120, 0);
        first.Save(dir["first.png"]);
        second.Save(dir["second.png"]);
        CliRun.Ok("generate", "a red cat", "--model", kit.ModelPath, "--seed", "5", "--steps", "4", "--guidance", "3", "--out", dir["out"],
            "--controlnet", a, "--control-image", dir["first.png"], "--controlnet", b, "--control-image", dir["second.png"],
            "--control-scale", "0.2", "--control-scale", "1.5", "--control-end", "0.9");

        using var pipeline = StableDiffusionPipeline.Load(kit.ModelPath);
        using var firstRead = MLImage.CreateFromFile(dir["first.png"]);
        using var secondRead = MLImage.CreateFromFile(dir["second.png"]);
        var options = new GenerationOptions { Steps = 4, GuidanceScale = 3 };
        options.ControlNets.Add(new ControlNetInput(a, firstRead) { Scale = 0.2f, End = 0.9f });
        options.ControlNets.Add(new ControlNetInput(b, secondRead) { Scale = 1.5f, End = 0.9f });
        using (var generated = pipeline.Generate("a red cat", 5, options).Image) generated.Save(dir["expected.png"]);
        using var expected = MLImage.CreateFromFile(dir["expected.png"]);
        using var written = MLImage.CreateFromFile(Directory.GetFiles(dir["out"], "*.png").Single());
        Assert.Equal(expected.Pixels.ToArray(), written.Pixels.ToArray());

        // Swapping the scales changes the image: the pairing is by position.
        CliRun.Ok("generate", "a red cat", "--model", kit.ModelPath, "--seed", "5", "--steps", "4", "--guidance", "3", "--out", dir["swapped"],
            "--controlnet", a, "--control-image", dir["first.png"], "--controlnet", b, "--control-image", dir["second.png"],
            "--control-scale", "1.5", "--control-scale", "0.2", "--control-end", "0.9");
        using var swapped = MLImage.CreateFromFile(Directory.GetFiles(dir["swapped"], "*.png").Single());
        Assert.NotEqual(expected.Pixels.ToArray(), swapped.Pixels.ToArray());
    }

    [Theory]
    [InlineData(new[] { "--control-image", "x.png" }, "--control-image needs --controlnet")]
    [InlineData(new[] { "--guess-mode" }, "--guess-mode needs --controlnet")]
    [InlineData(new[] { "--controlnet", "CN" }, "Each --controlnet needs its --control-image")]
    [InlineData(new[] { "--controlnet", "CN", "--control-image", "IMG", "--control-start", "0.6", "--control-end", "0.5" }, "--control-start (0.6) must be below --control-end (0.5)")]
    [InlineData(new[] { "--controlnet", "CN", "--control-image", "IMG", "--controlnet", "CN", "--control-image", "IMG", "--control-scale", "1", "--control-scale", "2", "--control-scale", "3" },
        "--control-scale is given 3 times for 2 --controlnet")]
    [InlineData(new[] { "--controlnet", "CN", "--control-image", "IMG", "--canny", "100" }, "--canny must be LOW,HIGH thresholds")]
    [InlineData(new[] { "--controlnet", "CN", "--control-image", "IMG", "--canny", "200,100" }, "--canny must be two finite thresholds with 0 ≤ low ≤ high")]
    public void BadControlOptionsAreUsageErrorsNamingTheOption(string[] extra, string message)
    {
        using var kit = new ControlNetTestKit();
        using var dir = new TempDir();
        string controlNet = kit.ControlNet();
        using (var image = ControlNetTestKit.Solid(8, 1, 1, 1)) image.Save(dir["img.png"]);
        var args = new List<string> { "generate", "a cat", "--model", kit.ModelPath, "--steps", "1", "--out", dir["out"] };
        args.AddRange(extra.Select(a => a == "CN" ? controlNet : a == "IMG" ? dir["img.png"] : a));
        var result = CliRun.Run([.. args]);
        Assert.True(result.ExitCode != 0, result.ToString());
        Assert.Contains(message, result.Err);
        Assert.False(Directory.Exists(dir["out"]) && Directory.GetFiles(dir["out"]).Length > 0);
    }
}

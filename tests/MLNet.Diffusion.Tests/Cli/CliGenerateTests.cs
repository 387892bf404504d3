using System.Text.RegularExpressions;
using Microsoft.ML.Data;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Cli;

/// <summary><c>generate</c>, <c>grid</c> and <c>info</c> on the tiny test model (64×64 images) and, once, the built-in demo model.</summary>
public class CliGenerateTests
{
    [Fact]
    public void SameSeedTwiceGivesIdenticalPngBytes()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        CliRun.Ok("generate", "a red circle", "--model", model.Path, "--seed", "42", "--steps", "3", "--out", dir["a"]);
        CliRun.Ok("generate", "a red circle", "--model", model.Path, "--seed", "42", "--steps", "3", "--out", dir["b"]);
        var a = Directory.GetFiles(dir["a"], "*.png").Single();
        var b = Directory.GetFiles(dir["b"], "*.png").Single();
        Assert.Equal("a-red-circle-42.png", Path.GetFileName(a));
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
        using var image = MLImage.CreateFromFile(a);
        Assert.Equal((64, 64), (image.Width, image.Height));
    }

    [Fact]
    public void CountThreeWritesThreeFilesWithConsecutiveSeedsAndPrintsTheirPaths()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var result = CliRun.Ok("generate", "a blue square", "--model", model.Path, "--seed", "7", "--count", "3", "--batch-size", "2", "--steps", "2", "--out", dir.Path);
        var files = Directory.GetFiles(dir.Path).Select(f => Path.GetFileName(f)!).Order().ToArray();
        Assert.Equal(["a-blue-square-7.png", "a-blue-square-8.png", "a-blue-square-9.png"], files);
        foreach (var file in files) Assert.Contains(dir[file], result.Out);
        // Never overwrites: a second run with the same seeds adds -2 files.
        CliRun.Ok("generate", "a blue square", "--model", model.Path, "--seed", "7", "--steps", "2", "--out", dir.Path);
        Assert.True(File.Exists(dir["a-blue-square-7-2.png"]));
    }

    [Fact]
    public void WithoutASeedARandomOneIsUsedAndPrinted()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var result = CliRun.Ok("generate", "a circle", "--model", model.Path, "--steps", "2", "--out", dir.Path);
        var file = Path.GetFileName(Directory.GetFiles(dir.Path).Single());
        var seed = Regex.Match(file, @"^a-circle-(\d+)\.png$").Groups[1].Value;
        Assert.NotEqual("", seed);
        Assert.Contains($"seed {seed}", result.Out);
    }

    [Fact]
    public void WithoutAModelTheDemoModelIsBuiltIntoTheCacheAndUsed()
    {
        using var dir = new TempDir();
        var cache = dir["cache"];
        var result = CliRun.Run(["generate", "a red circle on a white background", "--seed", "1", "--count", "2", "--steps", "10", "--out", dir["out"]],
            CancellationToken.None, cache);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.True(DemoModelBuilder.IsCurrent(Path.Combine(cache, "demo-model")), "the demo model should be in <cache>/demo-model");
        Assert.Contains("Building the built-in demo model", result.Out);
        var files = Directory.GetFiles(dir["out"]).Order().ToArray();
        Assert.Equal(2, files.Length);
        using (var image = MLImage.CreateFromFile(files[0])) Assert.Equal((DemoDataset.ImageSize, DemoDataset.ImageSize), (image.Width, image.Height));
        Assert.NotEqual(File.ReadAllBytes(files[0]), File.ReadAllBytes(files[1])); // the demo model's seeds give different pictures

        // Second use: no rebuild.
        var again = CliRun.Run(["generate", "a red circle on a white background", "--seed", "1", "--steps", "10", "--out", dir["again"]], CancellationToken.None, cache);
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.DoesNotContain("Building", again.Out);
        Assert.Equal(File.ReadAllBytes(files[0]), File.ReadAllBytes(Directory.GetFiles(dir["again"]).Single()));
    }

    [Fact]
    public void GridWritesOneSheetOfTheExpectedSizeWithTheImagesInTheirCells()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var result = CliRun.Ok("grid", "a red circle", "a blue square", "--seeds", "3", "--seed", "10", "--steps", "2", "--batch-size", "4",
            "--model", model.Path, "--out", dir.Path);
        Assert.Equal(["grid.json", "grid.png"], Directory.GetFiles(dir.Path).Select(f => Path.GetFileName(f)!).Order().ToArray());
        using var sheet = MLImage.CreateFromFile(dir["grid.png"]);
        // 2 prompts × 3 seeds of 64×64: gap 4, label bands 13 (7-pixel font + 3 above and below).
        // width = 4 + 3·(64 + 4) = 208; height = 13 + 2·(13 + 64 + 4) = 175.
        Assert.Equal((208, 175), (sheet.Width, sheet.Height));
        Assert.Contains("a blue square", result.Out);
        Assert.Contains("10, 11, 12", result.Out);

        // The cell of (prompt 2, seed 11) holds exactly what generate makes for it.
        CliRun.Ok("generate", "a blue square", "--seed", "11", "--steps", "2", "--model", model.Path, "--out", dir["single"]);
        using var single = MLImage.CreateFromFile(Directory.GetFiles(dir["single"]).Single());
        using var legend = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir["grid.json"]));
        var cell = legend.RootElement.GetProperty("cells").EnumerateArray()
            .Single(c => c.GetProperty("prompt").GetString() == "a blue square" && c.GetProperty("seed").GetInt64() == 11);
        int x0 = cell.GetProperty("x").GetInt32(), y0 = cell.GetProperty("y").GetInt32();
        Assert.Equal((4 + 68, 13 + 81 + 13), (x0, y0));
        for (int y = 0; y < 64; y += 7)
            for (int x = 0; x < 64; x += 5)
                Assert.Equal(Rgb(single, x, y), Rgb(sheet, x0 + x, y0 + y));
    }

    [Fact]
    public void InfoListsTheUnetSampleInputWithItsElementType()
    {
        using var model = TestModelFactory.CreateTemp();
        var result = CliRun.Ok("info", "--model", model.Path);
        Assert.Matches(new Regex(@"^\s*input\s+sample\s+float\s+\[", RegexOptions.Multiline), result.Out);
        Assert.Matches(new Regex(@"^\s*input\s+input_ids\s+int32\s", RegexOptions.Multiline), result.Out);
        Assert.Matches(new Regex(@"^\s*output\s+out_sample\s+float\s", RegexOptions.Multiline), result.Out);
        Assert.Contains("PNDMScheduler", result.Out);
        Assert.Contains("steps_offset", result.Out);
        Assert.Contains("0.18215", result.Out);
        Assert.Contains("64x64", result.Out);
        Assert.Contains("Cpu", result.Out);

        using var half = TestModelFactory.CreateTemp(new TestModelOptions { Fp16 = true });
        var fp16 = CliRun.Ok("info", "--model", half.Path);
        Assert.Matches(new Regex(@"^\s*input\s+sample\s+float16\s+\[", RegexOptions.Multiline), fp16.Out);
    }

    [Fact]
    public void InitImageStrengthAndMaskReachTheEngine()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var init = dir["init.png"];
        var mask = dir["mask.png"];
        SolidPng(init, 64, 64, (200, 40, 40), (200, 40, 40));
        SolidPng(mask, 64, 64, (0, 0, 0), (255, 255, 255)); // left half kept, right half repainted
        string[] common = ["--model", model.Path, "--seed", "5", "--steps", "4"];

        // Strength 0 runs no step: the init image comes back through the test VAE (block averages of a flat colour).
        CliRun.Ok(["generate", "a green square", "--init-image", init, "--strength", "0", "--out", dir["s0"], .. common]);
        using (var kept = MLImage.CreateFromFile(Directory.GetFiles(dir["s0"]).Single()))
        {
            Assert.Equal((200, 40, 40), Rgb(kept, 10, 10));
            Assert.Equal((200, 40, 40), Rgb(kept, 60, 50));
        }

        // Strength 1 without a mask is text-to-image for the seed, byte for byte.
        CliRun.Ok(["generate", "a green square", "--init-image", init, "--strength", "1", "--out", dir["s1"], .. common]);
        CliRun.Ok(["generate", "a green square", "--out", dir["t2i"], .. common]);
        Assert.Equal(File.ReadAllBytes(Directory.GetFiles(dir["t2i"]).Single()), File.ReadAllBytes(Directory.GetFiles(dir["s1"]).Single()));

        // A mask keeps the init image where it is black and repaints where it is white.
        CliRun.Ok(["generate", "a green square", "--init-image", init, "--mask", mask, "--out", dir["mask"], .. common]);
        using var text = MLImage.CreateFromFile(Directory.GetFiles(dir["t2i"]).Single());
        using var painted = MLImage.CreateFromFile(Directory.GetFiles(dir["mask"]).Single());
        Assert.Equal((200, 40, 40), Rgb(painted, 5, 30));
        Assert.NotEqual((200, 40, 40), Rgb(painted, 60, 30));
        Assert.Equal(Rgb(text, 60, 30), Rgb(painted, 60, 30));
    }

    [Fact]
    public void ACorruptInitImageIsAUsageErrorNamingTheOptionAndTheFile()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var init = dir["cut.png"];
        SolidPng(dir["whole.png"], 64, 64, (200, 40, 40), (200, 40, 40));
        var bytes = File.ReadAllBytes(dir["whole.png"]);
        File.WriteAllBytes(init, bytes.AsSpan(0, bytes.Length / 2).ToArray()); // a download cut off half-way

        var result = CliRun.Run("generate", "a green square", "--init-image", init, "--model", model.Path, "--out", dir["out"], "--steps", "2");
        Assert.True(result.ExitCode == MLNet.Diffusion.Cli.Program.UsageError, result.ToString());
        Assert.True(result.ErrLines.Length == 1, result.ToString());
        Assert.Contains("--init-image", result.ErrLines[0]);
        Assert.Contains("cut.png", result.ErrLines[0]);
        Assert.False(Directory.Exists(dir["out"]) && Directory.EnumerateFiles(dir["out"]).Any(), "nothing is written");
    }

    [Fact]
    public void NaNFromTheModelIsAUsageErrorThatNamesTheStep()
    {
        using var model = TestModelFactory.CreateTemp(new TestModelOptions { NanBelowTimestep = 500 });
        using var dir = new TempDir();
        var result = CliRun.Run("generate", "a green square", "--model", model.Path, "--out", dir["out"], "--steps", "10", "--scheduler", "ddim", "--seed", "1");
        Assert.True(result.ExitCode == MLNet.Diffusion.Cli.Program.UsageError, result.ToString());
        Assert.True(result.ErrLines.Length == 1, result.ToString());
        Assert.Contains("denoising step 6 of 10", result.ErrLines[0]);
        Assert.DoesNotContain(" at MLNet.", result.Err);
        Assert.False(Directory.Exists(dir["out"]) && Directory.EnumerateFiles(dir["out"]).Any(), "no image is written for a failed generation");
    }

    private static void SolidPng(string path, int width, int height, (byte R, byte G, byte B) left, (byte R, byte G, byte B) right)
    {
        var rgba = new byte[4 * width * height];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                var c = x < width / 2 ? left : right;
                int i = 4 * (y * width + x);
                (rgba[i], rgba[i + 1], rgba[i + 2], rgba[i + 3]) = (c.R, c.G, c.B, 255);
            }
        using var image = MLImage.CreateFromPixels(width, height, MLPixelFormat.Rgba32, rgba);
        image.Save(path);
    }

    private static (byte, byte, byte) Rgb(MLImage image, int x, int y)
    {
        var p = image.Pixels;
        int i = 4 * (y * image.Width + x);
        return image.PixelFormat == MLPixelFormat.Bgra32 ? (p[i + 2], p[i + 1], p[i]) : (p[i], p[i + 1], p[i + 2]);
    }
}

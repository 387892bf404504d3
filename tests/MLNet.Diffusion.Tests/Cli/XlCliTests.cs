using System.Text.RegularExpressions;
using MLNet.Diffusion.Cli;
using MLNet.Diffusion.Cli.Commands;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Cli;

/// <summary>
/// Issue 14 on the command line: <c>info</c> names the family and how each extra UNet input was identified (the engine's
/// rules on the models' metadata); <c>generate</c> takes SDXL's micro-conditioning, the refiner's aesthetic scores, VAE
/// tiling and a refiner that finishes the schedule, each reaching the engine as the library's options would.
/// </summary>
public class XlCliTests
{
    private const string Prompt = "a red circle";

    public static TheoryData<string, XlTestModelOptions, string[]> InfoCases => new()
    {
        { "sdxl", new XlTestModelOptions(), ["Family  SDXL base (two text encoders, pooled embeddings, 6 time ids)", "unet input text_embeds",
            "→ pooled text embedding (48 wide) (identified by name)", "unet input time_ids", "→ time ids: original size, crop, target size (identified by name)", "tokenizer_2"] },
        { "refiner", new XlTestModelOptions { Family = XlTestFamily.SdxlRefiner }, ["Family  SDXL refiner", "→ time ids: original size, crop, aesthetic score (identified by name)", "tokenizer_2"] },
        { "lcm", new XlTestModelOptions { Family = XlTestFamily.Sd, Lcm = true }, ["Family  SD 1.x (one text encoder, embeddings 32 wide)",
            "latent consistency (guidance embedding)", "unet input timestep_cond", "→ guidance embedding (LCM's timestep_cond) (identified by name)"] },
        { "sdxl-lcm", new XlTestModelOptions { Lcm = true }, ["Family  SDXL base", "latent consistency (guidance embedding)"] },
        { "turbo", new XlTestModelOptions { Turbo = true }, ["Family  SDXL base", "Turbo-style schedule (timestep_spacing trailing)"] },
        { "unnamed", new XlTestModelOptions { ExtraInputs = XlExtraInputNaming.Unnamed }, ["Family  SDXL base",
            $"unet input {XlTestModelFactory.UnnamedTextEmbeds}", "→ pooled text embedding (48 wide) (identified by shape)", "→ time ids: original size, crop, target size (identified by shape)"] },
    };

    [Theory]
    [MemberData(nameof(InfoCases))]
    public void InfoShowsTheFamilyAndHowEachExtraInputWasIdentified(string what, XlTestModelOptions options, string[] expected)
    {
        using var model = XlTestModelFactory.CreateTemp(options);
        var info = CliRun.Ok("info", "--model", model.Path);
        var lines = Plain(info.Out).Split('\n').Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))).ToArray();
        foreach (var text in expected)
            Assert.True(lines.Any(l => l.Contains(string.Join(' ', text.Split(' ', StringSplitOptions.RemoveEmptyEntries)), StringComparison.Ordinal)), $"{what}: '{text}' missing.\n{info.Out}");
        Assert.Equal(options.Lcm, info.Out.Contains("latent consistency", StringComparison.Ordinal));
        Assert.Equal(options.Turbo, info.Out.Contains("Turbo-style", StringComparison.Ordinal));
    }

    [Fact]
    public void InfoOnAnSdFolderSaysItHasNoExtraInputs()
    {
        using var model = TestModelFactory.CreateTemp();
        var info = CliRun.Ok("info", "--model", model.Path);
        Assert.Contains("Family  SD 1.x", Plain(info.Out));
        Assert.Contains("unet extra inputs: none", Plain(info.Out));
    }

    [Fact]
    public void InfoRefusesAnAmbiguousUNetAsGenerateDoes()
    {
        using var model = XlTestModelFactory.CreateTemp(new XlTestModelOptions { ExtraInputs = XlExtraInputNaming.UnnamedSymbolic });
        using var dir = new TempDir();
        var generate = CliRun.Run("generate", Prompt, "--model", model.Path, "--out", dir["out"], "--steps", "2");
        var info = CliRun.Run("info", "--model", model.Path);
        Assert.NotEqual(0, generate.ExitCode);
        Assert.True(info.ExitCode == generate.ExitCode, info.ToString());
        Assert.Equal(generate.ErrLines.Last(), info.ErrLines.Last());
        Assert.Contains("cannot be identified", info.ErrLines.Last());
    }

    /// <summary>The text without the console's colour codes.</summary>
    private static string Plain(string text) => Regex.Replace(text, @"\x1b\[[0-9;]*m", "");

    /// <summary>The PNG the library's images give when the CLI writes them.</summary>
    private static byte[] Png(GeneratedImage result, TempDir dir, string name)
    {
        using var image = result.Image;
        var path = dir[name + ".png"];
        AtomicImageFile.Save(image, path);
        return File.ReadAllBytes(path);
    }

    /// <summary>The options the tests' common flags give.</summary>
    private static GenerationOptions Options() => new() { Steps = 20, Scheduler = "euler", GuidanceScale = 2, Width = 64, Height = 48 };

    private static byte[] CliImage(string folder) => File.ReadAllBytes(Directory.GetFiles(folder, "*.png").Single());

    [Fact]
    public void RefinerRunsTheBaseThenTheRefinerAsTheLibraryDoes()
    {
        using var xl = XlTestModelFactory.CreateTemp(new XlTestModelOptions());
        using var refinerModel = XlTestModelFactory.CreateTemp(new XlTestModelOptions { Family = XlTestFamily.SdxlRefiner });
        using var dir = new TempDir();
        string[] common = ["--model", xl.Path, "--seed", "7", "--steps", "20", "--scheduler", "euler", "-g", "2", "--size", "64x48"];
        CliRun.Ok(["generate", Prompt, "--out", dir["refined"], "--refiner", refinerModel.Path, "--denoising-end", "0.6", "--aesthetic-score", "8", .. common]);
        CliRun.Ok(["generate", Prompt, "--out", dir["default-end"], "--refiner", refinerModel.Path, .. common]);
        CliRun.Ok(["generate", Prompt, "--out", dir["base"], .. common]);

        byte[] refined, defaultEnd, baseOnly;
        using (var basePipeline = StableDiffusionPipeline.Load(xl.Path))
        using (var refiner = StableDiffusionPipeline.Load(refinerModel.Path))
        {
            var options = Options();
            options.AestheticScore = 8;
            refined = Png(basePipeline.Generate([new ImagePrompt(Prompt, 7)], refiner, 0.6f, options).Single(), dir, "lib-refined");
            defaultEnd = Png(basePipeline.Generate([new ImagePrompt(Prompt, 7)], refiner, 0.8f, Options()).Single(), dir, "lib-default");
            baseOnly = Png(basePipeline.Generate([new ImagePrompt(Prompt, 7)], Options()).Single(), dir, "lib-base");
        }
        Assert.Equal(refined, CliImage(dir["refined"]));
        Assert.Equal(defaultEnd, CliImage(dir["default-end"]));
        Assert.Equal(baseOnly, CliImage(dir["base"]));
        // The refiner did run: its images differ from the base's alone, and the split and the aesthetic score matter.
        Assert.NotEqual(baseOnly, defaultEnd);
        Assert.NotEqual(refined, defaultEnd);
    }

    [Fact]
    public void MicroConditioningAndTilingFlagsReachTheEngine()
    {
        using var xl = XlTestModelFactory.CreateTemp(new XlTestModelOptions());
        using var dir = new TempDir();
        string[] common = ["--model", xl.Path, "--seed", "3", "--steps", "20", "--scheduler", "euler", "-g", "2", "--size", "64x48"];
        CliRun.Ok(["generate", Prompt, "--out", dir["cond"], "--original-size", "640x512", "--crop", "16,8", "--target-size", "320x256", "--vae-tiling", "off", .. common]);
        CliRun.Ok(["generate", Prompt, "--out", dir["plain"], .. common]);

        byte[] conditioned, plain;
        using (var pipeline = StableDiffusionPipeline.Load(xl.Path))
        {
            var options = Options();
            (options.OriginalWidth, options.OriginalHeight, options.CropTop, options.CropLeft, options.TargetWidth, options.TargetHeight, options.VaeTiling) =
                (640, 512, 16, 8, 320, 256, VaeTiling.Off);
            conditioned = Png(pipeline.Generate([new ImagePrompt(Prompt, 3)], options).Single(), dir, "lib-cond");
            plain = Png(pipeline.Generate([new ImagePrompt(Prompt, 3)], Options()).Single(), dir, "lib-plain");
        }
        Assert.Equal(conditioned, CliImage(dir["cond"]));
        Assert.Equal(plain, CliImage(dir["plain"]));
        Assert.NotEqual(plain, conditioned);
    }

    [Fact]
    public void SettingsMapOntoGenerationOptions()
    {
        var settings = new GenerateCommand.Settings
        {
            Prompt = Prompt, OriginalSize = "640x512", Crop = "16, 8", TargetSize = "320X256", AestheticScore = 7.5f,
            NegativeAestheticScore = 1.5f, VaeTilingMode = "ON",
        };
        var o = settings.ToGenerationOptions();
        Assert.Equal((640, 512, 16, 8, 320, 256), (o.OriginalWidth!.Value, o.OriginalHeight!.Value, o.CropTop, o.CropLeft, o.TargetWidth!.Value, o.TargetHeight!.Value));
        Assert.Equal((7.5f, 1.5f, VaeTiling.On), (o.AestheticScore, o.NegativeAestheticScore, o.VaeTiling));

        var defaults = new GenerateCommand.Settings { Prompt = Prompt }.ToGenerationOptions();
        var library = new GenerationOptions();
        Assert.Equal((library.OriginalWidth, library.OriginalHeight, library.CropTop, library.CropLeft, library.TargetWidth, library.TargetHeight),
            (defaults.OriginalWidth, defaults.OriginalHeight, defaults.CropTop, defaults.CropLeft, defaults.TargetWidth, defaults.TargetHeight));
        Assert.Equal((library.AestheticScore, library.NegativeAestheticScore, library.VaeTiling), (defaults.AestheticScore, defaults.NegativeAestheticScore, defaults.VaeTiling));
        Assert.Equal(GenerateCommand.Settings.DefaultDenoisingEnd, new GenerateCommand.Settings { Refiner = "r" }.ResolvedDenoisingEnd);
    }

    [Theory]
    [InlineData(new[] { "--original-size", "0x64" }, "--original-size width must be from 1 to 16384")]
    [InlineData(new[] { "--original-size", "64x20000" }, "--original-size height must be from 1 to 16384")]
    [InlineData(new[] { "--original-size", "big" }, "--original-size must be WIDTHxHEIGHT")]
    [InlineData(new[] { "--target-size", "64x0" }, "--target-size height must be from 1 to 16384")]
    [InlineData(new[] { "--crop", "20000,0" }, "--crop top must be from 0 to 16384")]
    [InlineData(new[] { "--crop", "-1,0" }, "--crop must be TOP,LEFT")]
    [InlineData(new[] { "--crop", "8" }, "--crop must be TOP,LEFT")]
    [InlineData(new[] { "--aesthetic-score", "11" }, "--aesthetic-score must be from 0 to 10; got 11")]
    [InlineData(new[] { "--negative-aesthetic-score", "NaN" }, "--negative-aesthetic-score must be from 0 to 10; got NaN")]
    [InlineData(new[] { "--vae-tiling", "sometimes" }, "--vae-tiling must be auto, on or off")]
    [InlineData(new[] { "--denoising-end", "0.8" }, "--denoising-end needs --refiner")]
    [InlineData(new[] { "--refiner", ".", "--denoising-end", "1" }, "--denoising-end must be strictly between 0 and 1")]
    [InlineData(new[] { "--refiner", ".", "--denoising-end", "0" }, "--denoising-end must be strictly between 0 and 1")]
    [InlineData(new[] { "--refiner", ".", "--init-image", "i.png" }, "--refiner runs text-to-image")]
    [InlineData(new[] { "--refiner", "/no/such/refiner" }, "--refiner: the folder")]
    public void BadValuesAreUsageErrors(string[] flags, string message)
    {
        using var model = TestModelFactory.CreateTemp();
        var result = CliRun.Run(["generate", Prompt, "--model", model.Path, "--steps", "2", .. flags]);
        Assert.True(result.ExitCode == Program.UsageError, result.ToString());
        Assert.True(result.ErrLines.Length == 1, result.ToString());
        Assert.Contains(message, result.ErrLines[0]);
    }
}

using CsCheck;
using MLNet.Diffusion.Cli.Output;

namespace MLNet.Diffusion.Tests.Cli;

/// <summary>Help and command-line errors: every command lists its options; bad input is one line on stderr and a non-zero exit code.</summary>
public class CliOptionsTests
{
    public static TheoryData<string, string[]> CommandOptions => new()
    {
        { "generate", ["--init-image", "--strength", "--mask", "--negative", "--model", "--seed", "--count", "--steps", "--guidance", "--scheduler", "--size", "--device", "--out", "--batch-size", "--eta", "--guidance-rescale", "--verbose", "--refiner", "--denoising-end", "--original-size", "--crop", "--target-size", "--aesthetic-score", "--negative-aesthetic-score", "--vae-tiling", "--noise"] },
        { "batch", ["--prompt-column", "--negative-column", "--seed-column", "--negative", "--model", "--seed", "--steps", "--guidance", "--scheduler", "--size", "--device", "--out", "--batch-size", "--original-size", "--crop", "--target-size", "--aesthetic-score", "--vae-tiling", "--noise"] },
        { "grid", ["--seeds", "--seed", "--negative", "--model", "--steps", "--guidance", "--scheduler", "--size", "--device", "--out", "--name", "--batch-size"] },
        { "info", ["--model", "--device", "--verbose"] },
    };

    [Theory]
    [MemberData(nameof(CommandOptions))]
    public void HelpOfEachCommandListsItsOptions(string command, string[] options)
    {
        var result = CliRun.Run(command, "--help");
        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (var option in options) Assert.Contains(option, result.Out);
        Assert.Equal("", result.Err);
    }

    [Fact]
    public void TopLevelHelpListsTheCommands()
    {
        var result = CliRun.Ok("--help");
        foreach (var command in new[] { "generate", "batch", "grid", "info" }) Assert.Contains(command, result.Out);
    }

    [Theory]
    [InlineData("unknown option", new[] { "generate", "a red circle", "--bogus" }, "bogus")]
    [InlineData("size not WxH", new[] { "generate", "a red circle", "--size", "big" }, "WIDTHxHEIGHT")]
    [InlineData("size not a multiple of 8", new[] { "generate", "a red circle", "--size", "100x64" }, "a multiple of 8")]
    [InlineData("negative steps", new[] { "generate", "a red circle", "--steps", "-5" }, "--steps")]
    [InlineData("negative steps, = form", new[] { "generate", "a red circle", "--steps=-5" }, "--steps")]
    [InlineData("steps not a number", new[] { "generate", "a red circle", "--steps", "many" }, "many")]
    [InlineData("unknown scheduler", new[] { "generate", "a red circle", "--scheduler", "fastest" }, "fastest")]
    [InlineData("bad device", new[] { "generate", "a red circle", "--device", "gpu" }, "--device")]
    [InlineData("zero count", new[] { "generate", "a red circle", "--count", "0" }, "--count")]
    [InlineData("missing prompt", new[] { "generate" }, "PROMPT")]
    [InlineData("unknown command", new[] { "paint", "x" }, "paint")]
    [InlineData("mask without init image", new[] { "generate", "a red circle", "--mask", "m.png" }, "--init-image")]
    [InlineData("strength out of range", new[] { "generate", "a red circle", "--init-image", "i.png", "--strength", "1.5" }, "--strength")]
    [InlineData("init image missing", new[] { "generate", "a red circle", "--init-image", "/no/such/init.png" }, "does not exist")]
    [InlineData("bad seeds", new[] { "grid", "a red circle", "--seeds", "1,x" }, "--seeds")]
    [InlineData("guidance rescale out of range", new[] { "generate", "a red circle", "--guidance-rescale", "1.5" }, "--guidance-rescale")]
    [InlineData("missing model folder", new[] { "info", "--model", "/no/such/model/folder" }, "does not exist")]
    [InlineData("missing table", new[] { "batch", "/no/such/table.csv" }, "does not exist")]
    public void BadOptionOrValueIsOneLineOnStderrAndNonZeroExit(string what, string[] args, string mentions)
    {
        var result = CliRun.Run(args);
        Assert.True(result.ExitCode != 0, $"{what}: {result}");
        Assert.True(result.ErrLines.Length == 1, $"{what}: expected one line on stderr. {result}");
        Assert.StartsWith("error: ", result.ErrLines[0]);
        Assert.Contains(mentions, result.ErrLines[0]);
        Assert.DoesNotContain(" at MLNet.", result.Err);
    }

    [Fact]
    public void VerboseAddsTheStackTrace()
    {
        var result = CliRun.Run("info", "--model", "/no/such/model/folder", "--verbose");
        Assert.NotEqual(0, result.ExitCode);
        Assert.StartsWith("error: ", result.ErrLines[0]);
        Assert.Contains(" at ", result.Err);
    }

    /// <summary>
    /// Issue 12: <c>grid --name</c> took "..", "." and ".partial" (whose ".partial.png" a later batch deletes as a stray
    /// temporary file); it now follows the one rule for the tool's output file names, <see cref="FileNames.IsPlain"/>.
    /// </summary>
    [Theory]
    [InlineData("..")]
    [InlineData(".")]
    [InlineData(".partial")]
    [InlineData(".hidden")]
    [InlineData("a/b")]
    [InlineData("")]
    [InlineData("tab\there")]
    [InlineData("line\nbreak")]
    [InlineData("a251")]
    public void GridNameFollowsTheOutputFileNameRule(string name)
    {
        if (name == "a251") name = new string('a', 251); // NAME.json would be 256 bytes
        using var dir = new TempDir();
        var result = CliRun.Run("grid", "a red circle", "--name", name, "--out", dir["out"], "--model", dir.Path);
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.StartsWith("error: --name must be a plain file name", Assert.Single(result.ErrLines));
        Assert.False(Directory.Exists(dir["out"]), "nothing is written");
    }

    /// <summary>The rule accepts every name batch makes for an image, and a grid name such as "sheet.v2".</summary>
    [Fact]
    public void EveryImageNameBatchMakesIsPlain()
    {
        Assert.True(FileNames.IsPlain("sheet.v2.png"));
        Gen.Select(Gen.Int[0, 9_999_999], Gen.String).Sample((row, prompt) =>
            Assert.True(FileNames.IsPlain($"{row:D5}-{FileNames.Slug(prompt)}.png"), prompt), iter: 2000);
    }

    /// <summary>An output folder that cannot be made (a file is in the way) is <see cref="MLNet.Diffusion.Cli.Program.IoError"/>, one line naming it.</summary>
    [Fact]
    public void GridIntoAFileInsteadOfAFolderIsTheIoErrorCode()
    {
        using var model = MLNet.Diffusion.Tests.TestModels.TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        File.WriteAllText(dir["taken"], "a file, not a folder");
        var result = CliRun.Run("grid", "a red circle", "--seeds", "1", "--steps", "2", "--model", model.Path, "--out", dir["taken"]);
        Assert.True(result.ExitCode == MLNet.Diffusion.Cli.Program.IoError, result.ToString());
        Assert.StartsWith($"error: Could not write '{dir["taken"]}'", Assert.Single(result.ErrLines));
    }
}

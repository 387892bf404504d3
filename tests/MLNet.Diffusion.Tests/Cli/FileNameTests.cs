using CsCheck;
using MLNet.Diffusion.Cli.Output;

namespace MLNet.Diffusion.Tests.Cli;

/// <summary>
/// File names made from prompts keep the letters of every script and drop only what is unsafe (issue 13: "café" lost its
/// "é"); <see cref="FileNames.IsPlain"/> refuses what some file system refuses, Windows' device names included.
/// </summary>
public class FileNameTests
{
    [Theory]
    [InlineData("café au lait", "café-au-lait")]
    [InlineData("cafe\u0301", "cafe\u0301")]                   // a decomposed accent stays with its letter
    [InlineData("Ελληνικά γράμματα", "ελληνικά-γράμματα")]
    [InlineData("日本の猫", "日本の猫")]
    [InlineData("हिन्दी", "हिन्दी")]                             // vowel signs and virama are marks that belong to the word
    [InlineData("Straße in Köln", "straße-in-köln")]
    [InlineData("ＡＢ ﬁsh ²", "ａｂ-ﬁsh")]                     // not folded (the tool's invariant mode does not normalize); ² is no digit
    [InlineData("a/b\\c:d*e?f\"g<h>i|j", "a-b-c-d-e-f-g-h-i-j")]
    [InlineData("tab\there\nline\u0007bell", "tab-here-line-bell")]
    [InlineData("...", "image")]
    [InlineData("  -- ", "image")]
    [InlineData("🌟 star 🌟", "star")]
    [InlineData("\u0301 accent first", "accent-first")]       // a mark with no letter before it is dropped
    public void ASlugKeepsLettersAndDigitsOfEveryScript(string prompt, string slug) =>
        Assert.Equal(slug, FileNames.Slug(prompt));

    [Fact]
    public void ASlugIsCutAtMaxLengthWithoutSplittingASurrogatePair()
    {
        Assert.Equal("abc", FileNames.Slug("abc def", 4));
        Assert.Equal("a", FileNames.Slug("a𠀀", 2)); // 𠀀 (U+20000) is a letter outside the BMP: two UTF-16 units
        Assert.Equal("a𠀀", FileNames.Slug("a𠀀", 3));
        Assert.True(FileNames.Slug(new string('x', 100)).Length == 40);
    }

    [Theory]
    [InlineData("con.png")]
    [InlineData("CON")]
    [InlineData("nul.tar.gz")]
    [InlineData("Aux .json")]
    [InlineData("com1.png")]
    [InlineData("LPT9.json")]
    [InlineData("com¹.png")]
    [InlineData("a:b.png")]
    [InlineData("a\\b.png")]
    [InlineData("what?.png")]
    [InlineData("star*.png")]
    [InlineData("a|b.png")]
    [InlineData("trailing.")]
    [InlineData("trailing ")]
    [InlineData(".hidden")]
    [InlineData("a/b")]
    [InlineData("")]
    public void UnsafeNamesAreNotPlain(string name)
    {
        Assert.False(FileNames.IsPlain(name));
        Assert.NotNull(FileNames.WhyNotPlain(name));
    }

    /// <summary>A lone surrogate (built at run time: attribute strings cannot hold one) is not valid Unicode.</summary>
    [Fact]
    public void ANameWithALoneSurrogateIsNotPlain()
    {
        string name = "lone" + (char)0xD800 + "surrogate.png";
        Assert.Contains("surrogate", FileNames.WhyNotPlain(name));
        Assert.Equal("lone-surrogate", FileNames.Slug(name[..^4]));
    }

    [Theory]
    [InlineData("console.png")]
    [InlineData("com10.png")]
    [InlineData("lpt.json")]
    [InlineData("00001-café.png")]
    [InlineData("日本の猫-3.png")]
    [InlineData("sheet.v2.png")]
    [InlineData("a 𝒳 b.png")]
    public void SafeNamesArePlain(string name) => Assert.Null(FileNames.WhyNotPlain(name));

    /// <summary>Both name forms the tool makes, "{row}-{slug}.png" (batch) and "{slug}-{seed}.png" (generate), are plain.</summary>
    [Fact]
    public void EveryNameTheToolMakesFromAPromptIsPlain() =>
        Gen.Select(Gen.Int[0, 9_999_999], Gen.Long, Gen.String).Sample((row, seed, prompt) =>
        {
            string slug = FileNames.Slug(prompt);
            Assert.True(FileNames.IsPlain($"{row:D5}-{slug}.png"), prompt);
            Assert.True(FileNames.IsPlain($"{slug}-{seed}.png"), prompt);
        }, iter: 5000);

    [Fact]
    public void AGridNamedAfterADeviceIsRefusedNamingWhy()
    {
        using var dir = new TempDir();
        var result = CliRun.Run("grid", "a red circle", "--name", "con", "--out", dir["out"], "--model", dir.Path);
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("device name", Assert.Single(result.ErrLines));
        Assert.False(Directory.Exists(dir["out"]));
    }

    [Fact]
    public void GenerateKeepsNonAsciiLettersInTheFileName()
    {
        using var model = MLNet.Diffusion.Tests.TestModels.TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        CliRun.Ok("generate", "un café rouge", "--seed", "5", "--steps", "2", "--model", model.Path, "--out", dir["out"]);
        Assert.Equal(["un-café-rouge-5.png"], Directory.GetFiles(dir["out"]).Select(Path.GetFileName));
    }
}

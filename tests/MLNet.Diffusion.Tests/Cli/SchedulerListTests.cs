using System.Text.RegularExpressions;
using MLNet.Diffusion.Cli;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Cli;

/// <summary>
/// The scheduler names shown to users come from <see cref="SchedulerFactory"/>'s one table: <c>--help</c> builds its list
/// from it, and the README's list is checked against it (issue 13: both omitted the Karras variants of euler, lms, heun
/// and kdpm2, which <c>--scheduler</c> accepts).
/// </summary>
public class SchedulerListTests
{
    [Theory]
    [InlineData("generate")]
    [InlineData("batch")]
    [InlineData("grid")]
    public void HelpOfACommandWithASchedulerOptionListsEveryShortName(string command)
    {
        var result = CliRun.Ok(command, "--help");
        string text = Regex.Replace(Regex.Replace(result.Out, @"\x1b\[[0-9;]*m", ""), @"\s+", " ");
        int heading = text.IndexOf(CliHelpProvider.SchedulersHeading, StringComparison.Ordinal);
        Assert.True(heading >= 0, result.Out);
        int start = heading + CliHelpProvider.SchedulersHeading.Length;
        string list = text[start..text.IndexOf(';', start)];
        Assert.Equal(SchedulerFactory.ShortNames, list.Split(',', StringSplitOptions.TrimEntries));
        foreach (var variant in new[] { "euler-karras", "lms-karras", "heun-karras", "kdpm2-karras" }) Assert.Contains(variant, SchedulerFactory.ShortNames);
    }

    [Fact]
    public void HelpOfACommandWithoutASchedulerOptionHasNoSchedulerSection() =>
        Assert.DoesNotContain(CliHelpProvider.SchedulersHeading, CliRun.Ok("info", "--help").Out);

    [Fact]
    public void EveryShortNameCreatesAScheduler()
    {
        foreach (var name in SchedulerFactory.ShortNames)
            Assert.NotNull(SchedulerFactory.Create(name, SchedulerConfig.Empty));
        Assert.Equal(SchedulerFactory.ShortNames.Count, SchedulerFactory.ShortNames.Distinct(StringComparer.OrdinalIgnoreCase).Count());
    }

    /// <summary>The README's "### Schedulers" section has a "Short names:" sentence naming exactly the table's short names.</summary>
    [Fact]
    public void TheReadmesSchedulerListNamesExactlyTheTablesShortNames()
    {
        string readme = File.ReadAllText(Path.Combine(RepositoryRoot(), "README.md"));
        int section = readme.IndexOf("\n### Schedulers\n", StringComparison.Ordinal);
        Assert.True(section >= 0, "README.md has no '### Schedulers' section.");
        int end = readme.IndexOf("\n#", section + 1, StringComparison.Ordinal);
        string body = readme[section..(end < 0 ? readme.Length : end)];
        var sentence = Regex.Match(body, @"Short names: ((?:`[^`]+`(?:,\s*)?)+)\.");
        string expected = "Short names: " + string.Join(", ", SchedulerFactory.ShortNames.Select(n => $"`{n}`")) + ".";
        Assert.True(sentence.Success, $"README.md's '### Schedulers' section needs the sentence:\n{expected}");
        var listed = Regex.Matches(sentence.Groups[1].Value, "`([^`]+)`").Select(m => m.Groups[1].Value).ToArray();
        Assert.True(listed.Length == listed.Distinct().Count() && listed.ToHashSet().SetEquals(SchedulerFactory.ShortNames),
            $"README.md lists {string.Join(", ", listed)}; the table's short names are:\n{expected}");
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MLNet.Diffusion.sln"))) return dir.FullName;
        throw new InvalidOperationException($"No MLNet.Diffusion.sln above '{AppContext.BaseDirectory}'.");
    }
}

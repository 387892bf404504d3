using MLNet.Diffusion.Tests.Transforms;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.Docs;

/// <summary>
/// Every <c>```csharp</c> block of README.md compiles as written, as a top-level program of a console project that
/// references the library (and the packages the README names), and runs to the end with the built-in demo model and
/// the input files it names (see <see cref="ReadmeWorkspace"/>). A failure names the README's line.
/// </summary>
/// <remarks>
/// The blocks run in this process with the working folder and <c>MLNET_DIFFUSION_CACHE</c> moved, so they share the
/// collection whose tests run one at a time.
/// </remarks>
[Collection(DemoCacheCollection.Name)]
public sealed class ReadmeExamplesTests(ReadmeWorkspace workspace, ITestOutputHelper output) : IClassFixture<ReadmeWorkspace>
{
    private static readonly TimeSpan BlockTimeout = TimeSpan.FromSeconds(60);

    /// <summary>One case per C# block of the README: its index and its first line of code other than a using directive.</summary>
    public static TheoryData<int, string> Blocks()
    {
        var data = new TheoryData<int, string>();
        foreach (var block in ReadmeWorkspace.ReadBlocks()) data.Add(block.Index, block.Opening);
        return data;
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void EveryCSharpBlockOfTheReadmeCompilesAndRuns(int index, string opening)
    {
        var blocks = ReadmeWorkspace.ReadBlocks();
        Assert.True(index < blocks.Count && blocks[index].Opening == opening,
            $"README.md changed after the tests were listed: C# block {index} no longer starts with \"{opening}\". Run the tests again.");
        var block = blocks[index];
        string name = $"README.md's C# block at line {block.FirstLine} (\"{opening}\")";

        var program = SnippetProgram.Compile(block, "README.md", out var problems);
        Assert.True(program is not null, $"{name} does not compile as written:\n{string.Join('\n', problems)}");

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var run = program!.Run(workspace.NewWorkingDirectory(index), BlockTimeout);
        output.WriteLine($"{name} ran in {clock.Elapsed.TotalSeconds:F1} s; its console output:\n{Tail(run.Output)}");
        Assert.True(run.Failure is null && run.ExitCode == 0,
            $"{name} compiles but does not run to the end: " +
            (run.Failure is null ? $"it returned exit code {run.ExitCode}." : $"{run.Failure}") +
            $"\n--- its console output\n{Tail(run.Output)}");
    }

    private static string Tail(string text) => text.Length <= 4000 ? text : "…" + text[^4000..];
}

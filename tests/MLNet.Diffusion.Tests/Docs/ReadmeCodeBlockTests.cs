namespace MLNet.Diffusion.Tests.Docs;

/// <summary>Finding the C# blocks of a Markdown file, with the line each starts on.</summary>
public sealed class ReadmeCodeBlockTests
{
    [Fact]
    public void ParseFindsEveryCSharpFenceWithTheLineItsCodeStartsOn()
    {
        string markdown = string.Join('\n',
            "# Title",                       // 1
            "```bash",                       // 2
            "dotnet test",                   // 3
            "```",                           // 4
            "```csharp",                     // 5
            "using MLNet.Diffusion;",        // 6
            "",                              // 7
            "var x = 1;",                    // 8
            "```",                           // 9
            "- a list item:",                // 10
            "  ```cs",                       // 11
            "  Console.WriteLine(2);",       // 12
            "  ```");                        // 13

        var blocks = ReadmeCodeBlock.Parse(markdown, "README.md");

        Assert.Equal(2, blocks.Count);
        Assert.Equal((0, 6, "using MLNet.Diffusion;\n\nvar x = 1;"), (blocks[0].Index, blocks[0].FirstLine, blocks[0].Code));
        Assert.Equal((1, 12, "Console.WriteLine(2);"), (blocks[1].Index, blocks[1].FirstLine, blocks[1].Code));
        Assert.Equal("var x = 1;", blocks[0].Opening);
    }

    [Fact]
    public void AnUnclosedCSharpFenceIsReportedWithItsLine()
    {
        var error = Assert.Throws<FormatException>(() => ReadmeCodeBlock.Parse("text\n```csharp\nvar x = 1;\n", "README.md"));

        Assert.StartsWith("README.md line 2:", error.Message, StringComparison.Ordinal);
    }
}

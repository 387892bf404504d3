namespace MLNet.Diffusion.Tests.Docs;

/// <summary>
/// What the README test reports: a block that does not compile, warns, leans on the test host's assemblies, throws or
/// returns a failure code is caught, and the message names the README's own line.
/// </summary>
[Collection(ConsoleAndWorkingFolderCollection.Name)]
public sealed class SnippetProgramTests
{
    private static ReadmeCodeBlock Block(int firstLine, params string[] lines) => new(0, firstLine, string.Join('\n', lines));

    [Fact]
    public void ABlockThatDoesNotCompileIsReportedAtItsReadmeLine()
    {
        var block = Block(40, "using MLNet.Diffusion;", "", "using var sd = StableDiffusionPipeline.Load(modelDir);");

        var program = SnippetProgram.Compile(block, "README.md", out var problems);

        Assert.Null(program);
        var problem = Assert.Single(problems);
        Assert.StartsWith("README.md line 42: error CS0103:", problem, StringComparison.Ordinal);
        Assert.Contains("modelDir", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void AWarningFailsTheBlockAsItWouldInAProjectThatTreatsWarningsAsErrors()
    {
        var program = SnippetProgram.Compile(Block(10, "string text = null;", "Console.WriteLine(text);"), "README.md", out var problems);

        Assert.Null(program);
        Assert.Contains(problems, p => p.StartsWith("README.md line 10: warning CS8600:", StringComparison.Ordinal));
    }

    [Fact]
    public void TheTestHostsOwnAssembliesAreNotReferenced()
    {
        var program = SnippetProgram.Compile(Block(1, "Xunit.Assert.True(true);"), "README.md", out var problems);

        Assert.Null(program);
        Assert.Contains(problems, p => p.Contains("Xunit", StringComparison.Ordinal));
    }

    [Fact]
    public void TheLibraryAndMLNetAreReferencedAndTheProgramRunsInTheGivenFolder()
    {
        var folder = Directory.CreateTempSubdirectory("mlnd-snippet-");
        try
        {
            var program = SnippetProgram.Compile(Block(1,
                "using Microsoft.ML;",
                "using MLNet.Diffusion;",
                "Console.WriteLine(new MLContext().GetType().Name + \" \" + typeof(DiffusionOptions).Name);",
                "File.WriteAllText(\"made.txt\", \"here\");"), "README.md", out var problems);
            Assert.True(program is not null, string.Join('\n', problems));

            var run = program!.Run(folder.FullName, TimeSpan.FromSeconds(30));

            Assert.Null(run.Failure);
            Assert.Equal(0, run.ExitCode);
            Assert.Equal("MLContext DiffusionOptions", run.Output.Trim());
            Assert.True(File.Exists(Path.Combine(folder.FullName, "made.txt")), "the program should run in the folder it was given");
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    [Fact]
    public void AnExceptionNamesTheReadmeLineThatThrewIt()
    {
        var program = SnippetProgram.Compile(Block(70, "Console.WriteLine(\"before\");", "throw new InvalidOperationException(\"broken example\");"),
            "README.md", out var problems);
        Assert.True(program is not null, string.Join('\n', problems));

        var run = program!.Run(Path.GetTempPath(), TimeSpan.FromSeconds(30));

        var failure = Assert.IsType<InvalidOperationException>(run.Failure);
        Assert.Contains("README.md:line 71", failure.StackTrace, StringComparison.Ordinal);
        Assert.Equal("before", run.Output.Trim());
    }

    [Fact]
    public void ANonZeroExitCodeIsReturned()
    {
        var program = SnippetProgram.Compile(Block(1, "return 3;"), "README.md", out var problems);
        Assert.True(program is not null, string.Join('\n', problems));

        Assert.Equal(3, program!.Run(Path.GetTempPath(), TimeSpan.FromSeconds(30)).ExitCode);
    }
}

/// <summary>Tests that run a compiled program in this process (it moves the working folder and the console) run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ConsoleAndWorkingFolderCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Process working folder and console";
}

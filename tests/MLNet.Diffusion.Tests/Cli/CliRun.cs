using MLNet.Diffusion.Cli;

namespace MLNet.Diffusion.Tests.Cli;

/// <summary>The outcome of running the tool in-process.</summary>
internal sealed record CliResult(int ExitCode, string Out, string Err)
{
    public string[] ErrLines => Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Out}\n--- stderr\n{Err}";
}

/// <summary>Runs <c>mlnet-diffusion</c> in-process through <see cref="Program.Run(string[], TextWriter, TextWriter, CancellationToken)"/>.</summary>
internal static class CliRun
{
    public static CliResult Run(params string[] args) => Run(args, CancellationToken.None);

    public static CliResult Run(string[] args, CancellationToken cancellationToken)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Program.Run(args, output, error, cancellationToken);
        return new CliResult(code, output.ToString(), error.ToString());
    }

    /// <summary>Runs with a custom environment (cache folder, a hook called after each image file is written).</summary>
    public static CliResult Run(string[] args, CancellationToken cancellationToken, string? cacheDirectory, Action<string>? imageWritten = null)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var environment = new CliEnvironment(output, error, cancellationToken,
            name => name == "MLNET_DIFFUSION_CACHE" ? cacheDirectory : Environment.GetEnvironmentVariable(name))
        {
            ImageWritten = imageWritten,
        };
        int code = Program.Run(args, environment);
        return new CliResult(code, output.ToString(), error.ToString());
    }

    /// <summary>Asserts success and returns the result.</summary>
    public static CliResult Ok(params string[] args)
    {
        var result = Run(args);
        Assert.True(result.ExitCode == 0, result.ToString());
        return result;
    }
}

/// <summary>A temporary folder deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir(string prefix = "mlnd-cli-") => Path = Directory.CreateTempSubdirectory(prefix).FullName;

    public string Path { get; }

    public string this[string relative] => System.IO.Path.Combine(Path, relative);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

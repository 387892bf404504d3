using Spectre.Console;

namespace MLNet.Diffusion.Cli;

/// <summary>
/// What a run of the tool talks to: its output and error writers, the console built on the output writer,
/// environment variables and the cancellation token (Ctrl+C in the real tool). Tests pass their own.
/// </summary>
internal sealed class CliEnvironment
{
    public CliEnvironment(TextWriter output, TextWriter error, CancellationToken cancellationToken, Func<string, string?>? getVariable = null)
    {
        Out = output;
        Error = error;
        CancellationToken = cancellationToken;
        GetVariable = getVariable ?? Environment.GetEnvironmentVariable;
        Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Detect,
            ColorSystem = ColorSystemSupport.Detect,
            Interactive = InteractionSupport.Detect,
            Out = new AnsiConsoleOutput(output),
        });
        // Redirected output has no window width; Spectre would wrap at 80 columns and split paths across lines.
        if (!Console.Profile.Capabilities.Interactive) Console.Profile.Width = 160;
    }

    /// <summary>Standard output.</summary>
    public TextWriter Out { get; }

    /// <summary>Standard error: one-line errors and warnings.</summary>
    public TextWriter Error { get; }

    /// <summary>The console (markup, progress bars) on <see cref="Out"/>.</summary>
    public IAnsiConsole Console { get; }

    /// <summary>Cancelled on Ctrl+C.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>Reads an environment variable.</summary>
    public Func<string, string?> GetVariable { get; }

    /// <summary>Whether --verbose was given (stack traces with errors).</summary>
    public bool Verbose { get; set; }

    /// <summary>Called after each image file is in place (tests use it to interrupt a run at a known point).</summary>
    public Action<string>? ImageWritten { get; set; }

    /// <summary>Writes a one-line warning to standard error.</summary>
    public void Warn(string message) => Error.WriteLine("warning: " + OneLine(message));

    /// <summary>Collapses line breaks so that a message stays on one line.</summary>
    public static string OneLine(string message) =>
        string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}

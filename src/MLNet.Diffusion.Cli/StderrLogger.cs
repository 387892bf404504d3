using Microsoft.Extensions.Logging;

namespace MLNet.Diffusion.Cli;

/// <summary>Writes the engine's warnings (CUDA fallback, truncated prompts) as one-line warnings on standard error; with --verbose, its information too.</summary>
internal sealed class StderrLogger(CliEnvironment environment) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= (environment.Verbose ? LogLevel.Information : LogLevel.Warning);

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        var message = formatter(state, exception);
        lock (environment.Error)
        {
            if (logLevel >= LogLevel.Warning) environment.Warn(message);
            else environment.Error.WriteLine(CliEnvironment.OneLine(message));
        }
    }
}

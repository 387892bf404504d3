using Microsoft.Extensions.Logging;

namespace MLNet.Diffusion.Tests.Hosting;

/// <summary>An <see cref="ILoggerFactory"/> that keeps every message with its category, so tests can see what a
/// container's pipelines logged (and count the loads: a pipeline logs "Loaded ..." once per load).</summary>
public sealed class CollectingLoggerFactory : ILoggerFactory
{
    private readonly List<(string Category, LogLevel Level, string Message)> _entries = [];

    public IReadOnlyList<(string Category, LogLevel Level, string Message)> Entries
    {
        get { lock (_entries) return _entries.ToArray(); }
    }

    public int Loads => Entries.Count(e => e.Message.StartsWith("Loaded ", StringComparison.Ordinal));

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider) { }

    public void Dispose() { }

    private sealed class Logger(CollectingLoggerFactory owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (owner._entries) owner._entries.Add((category, logLevel, formatter(state, exception)));
        }
    }
}

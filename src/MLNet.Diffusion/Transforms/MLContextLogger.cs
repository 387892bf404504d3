using Microsoft.Extensions.Logging;
using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// An <see cref="ILogger"/> that writes to an <see cref="MLContext"/>'s log (<see cref="MLContext.Log"/>), so that the
/// engine's messages (device choice, CUDA fallback reasons, truncated prompts) reach ML.NET users where they already
/// listen. Levels map to ML.NET's kinds: Trace/Debug → Trace, Information → Info, Warning → Warning, Error/Critical → Error.
/// The source is "MLNet.Diffusion; {channel}".
/// </summary>
internal sealed class MLContextLogger : ILogger, IDisposable
{
    private readonly IChannel _channel;
    private readonly object _gate = new();
    private bool _disposed;

    /// <param name="environment">The context, or its inner environment (messages reach <see cref="MLContext.Log"/> either way).</param>
    /// <param name="channelName">Names the source, after "MLNet.Diffusion; ".</param>
    public MLContextLogger(IHostEnvironment environment, string channelName)
    {
        ArgumentNullException.ThrowIfNull(environment);
        _channel = environment.Register("MLNet.Diffusion").Start(channelName);
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        ArgumentNullException.ThrowIfNull(formatter);
        string message = formatter(state, exception);
        if (exception is not null) message = $"{message} {exception.GetType().Name}: {exception.Message}";
        lock (_gate)
        {
            if (_disposed) return;
            switch (logLevel)
            {
                case LogLevel.Trace or LogLevel.Debug: _channel.Trace(MessageSensitivity.None, message); break;
                case LogLevel.Information: _channel.Info(MessageSensitivity.None, message); break;
                case LogLevel.Warning: _channel.Warning(MessageSensitivity.None, message); break;
                default: _channel.Error(MessageSensitivity.None, message); break;
            }
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _channel.Dispose();
        }
    }
}

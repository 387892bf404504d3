using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace MLNet.Diffusion.Runtime;

/// <summary>
/// ONNX Runtime's process-wide environment as the library sets it up, once, before the first session: telemetry off
/// unless <see cref="DiffusionRuntimeOptions.EnableOnnxRuntimeTelemetry"/> asks for it, and native log lines routed to
/// the <see cref="DiffusionRuntimeOptions.Logger"/> of the session that wrote them instead of standard error.
/// </summary>
/// <remarks>
/// <para><b>Telemetry.</b> ONNX Runtime 1.31's official Linux and macOS builds start Microsoft's 1DS telemetry client
/// when the environment is created: it writes a device id and an event database (<c>deviceid</c>,
/// <c>onnxruntime.db</c>) to <c>$XDG_CACHE_HOME</c> or <c>~/.cache</c> under <c>Microsoft/DeveloperTools/.onnxruntime/</c>
/// and uploads session-creation, error and process events (<c>core/platform/telemetry_1ds.cc</c>). Its
/// <c>DisableTelemetryEvents</c> API only stops later events; ONNX Runtime's <c>docs/Privacy.md</c> names one switch that
/// keeps the uploader, the events and the device id from being created: the environment variable
/// <c>ORT_DISABLE_TELEMETRY=1</c>, read when the environment is created. So the variable is set in the native process
/// environment (.NET's <see cref="Environment.SetEnvironmentVariable(string, string)"/> does not reach native code on
/// Unix), then the environment is created, then <c>DisableTelemetryEvents</c> is called (on Windows, where telemetry is
/// ETW, that is the switch). When the host created ONNX Runtime's environment before this library, the uploader is
/// already running and only <c>DisableTelemetryEvents</c> applies; a warning says so.</para>
/// <para><b>Logging.</b> When the library creates the environment, it installs a logging function, so ONNX Runtime
/// prints nothing to standard error. Each session carries a log id that maps to its factory's logger, which receives
/// the native lines at <see cref="LogLevel.Debug"/> (<see cref="LogLevel.Trace"/> for verbose ones): every failure ONNX
/// Runtime logs also comes back as an exception, which the library reports itself. When the host created the
/// environment, the library's sessions log only fatal errors, so that they print nothing either.</para>
/// </remarks>
internal static partial class OnnxRuntimeEnvironment
{
    /// <summary>The variable ONNX Runtime reads when its environment is created (1.31, non-Windows).</summary>
    internal const string TelemetryVariable = "ORT_DISABLE_TELEMETRY";

    private const string LogIdPrefix = "mlnet-diffusion/";

    private static readonly Lock s_gate = new();
    private static readonly ConcurrentDictionary<string, WeakReference<ILogger>> s_loggers = new(StringComparer.Ordinal);
    private static DOrtLoggingFunction? s_loggingFunction; // the native side keeps a pointer to it: never collected
    private static bool s_initialized;
    private static bool s_telemetry;
    private static long s_nextLogId;

    /// <summary>Whether the library created ONNX Runtime's environment (with its logging function and telemetry choice).</summary>
    internal static bool OwnsEnvironment { get; private set; }

    /// <summary>
    /// Sets up the environment on the first call; later calls only check that they ask for the same telemetry setting
    /// (it is process-wide) and log a warning when they do not. Returns the log id the caller's sessions use.
    /// </summary>
    public static string Initialize(DiffusionRuntimeOptions options)
    {
        lock (s_gate)
        {
            if (!s_initialized)
            {
                s_telemetry = options.EnableOnnxRuntimeTelemetry;
                bool alreadyCreated = false;
                if (!s_telemetry) SetNativeVariable(TelemetryVariable, "1"); // before anything loads ONNX Runtime's environment
                if (OrtEnv.IsCreated)
                {
                    alreadyCreated = true;
                }
                else
                {
                    s_loggingFunction = Forward;
                    var creation = new EnvironmentCreationOptions
                    {
                        logId = "MLNet.Diffusion",
                        logLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING,
                        loggingFunction = s_loggingFunction,
                    };
                    try
                    {
                        OrtEnv.CreateInstanceWithOptions(ref creation);
                        OwnsEnvironment = true;
                    }
                    catch (OnnxRuntimeException)
                    {
                        alreadyCreated = true; // another thread of the host created it in between
                    }
                }
                if (!s_telemetry) OrtEnv.Instance().DisableTelemetryEvents();
                s_initialized = true;
                if (alreadyCreated && !s_telemetry)
                    options.Logger?.LogWarning("ONNX Runtime's environment was created before MLNet.Diffusion's first model, so its telemetry uploader may already be running; " +
                        "set {Variable}=1 in the environment, or load a model before any other ONNX Runtime use, to keep it off. Later events are disabled.", TelemetryVariable);
            }
            else if (options.EnableOnnxRuntimeTelemetry != s_telemetry)
            {
                options.Logger?.LogWarning("EnableOnnxRuntimeTelemetry is {Asked} here, but ONNX Runtime's telemetry is process-wide and was set to {Set} by the first model loaded in this process; it stays {Set}.",
                    options.EnableOnnxRuntimeTelemetry, s_telemetry, s_telemetry);
            }
            string id = LogIdPrefix + Interlocked.Increment(ref s_nextLogId).ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (options.Logger is { } logger)
            {
                if (s_loggers.Count >= 64)
                    foreach (var (key, reference) in s_loggers)
                        if (!reference.TryGetTarget(out _)) s_loggers.TryRemove(key, out _);
                s_loggers[id] = new WeakReference<ILogger>(logger);
            }
            return id;
        }
    }

    /// <summary>Whether telemetry was left on (the first caller's <see cref="DiffusionRuntimeOptions.EnableOnnxRuntimeTelemetry"/>).</summary>
    internal static bool TelemetryEnabled
    {
        get
        {
            lock (s_gate) return s_initialized && s_telemetry;
        }
    }

    /// <summary>
    /// Hands one native log line to the logger registered for <paramref name="logId"/> (the session's log id); lines of
    /// other sessions and of the environment itself go nowhere. Never throws: it runs on ONNX Runtime's threads.
    /// </summary>
    internal static void Forward(IntPtr param, OrtLoggingLevel severity, string category, string logId, string codeLocation, string message)
    {
        try
        {
            if (logId is null || !s_loggers.TryGetValue(logId, out var reference) || !reference.TryGetTarget(out var logger)) return;
            var level = severity == OrtLoggingLevel.ORT_LOGGING_LEVEL_VERBOSE ? LogLevel.Trace : LogLevel.Debug;
            if (!logger.IsEnabled(level)) return;
            logger.Log(level, "ONNX Runtime {Severity} [{Category}] {Message} ({Location})", SeverityName(severity), category, message, codeLocation);
        }
        catch (Exception)
        {
            // A logger that throws must not unwind into native code.
        }
    }

    private static string SeverityName(OrtLoggingLevel severity) => severity switch
    {
        OrtLoggingLevel.ORT_LOGGING_LEVEL_VERBOSE => "verbose",
        OrtLoggingLevel.ORT_LOGGING_LEVEL_INFO => "info",
        OrtLoggingLevel.ORT_LOGGING_LEVEL_WARNING => "warning",
        OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR => "error",
        _ => "fatal",
    };

    /// <summary>Sets a variable where native code reads it: the C library's environment on Unix, the process block on Windows.</summary>
    internal static void SetNativeVariable(string name, string value)
    {
        if (OperatingSystem.IsWindows())
        {
            Environment.SetEnvironmentVariable(name, value);
            return;
        }
        if (SetEnv(name, value, 1) != 0)
            throw new InvalidOperationException($"setenv({name}) failed with error {Marshal.GetLastPInvokeError()}.");
    }

    /// <summary>Reads a variable as native code sees it (tests).</summary>
    internal static string? GetNativeVariable(string name)
    {
        if (OperatingSystem.IsWindows()) return Environment.GetEnvironmentVariable(name);
        var pointer = GetEnv(name);
        return pointer == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(pointer);
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int SetEnv(string name, string value, int overwrite);

    [LibraryImport("libc", EntryPoint = "getenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr GetEnv(string name);
}

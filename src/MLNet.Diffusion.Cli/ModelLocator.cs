using MLNet.Diffusion.Cli.Commands;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using Spectre.Console;

namespace MLNet.Diffusion.Cli;

/// <summary>Finds the model folder (building the demo model on first use) and loads it.</summary>
internal static class ModelLocator
{
    /// <summary>The tool's cache folder (<see cref="DemoModel.CacheDirectory"/>, read through the tool's environment).</summary>
    public static string CacheDirectory(CliEnvironment environment) => DemoModel.CacheDirectoryFrom(environment.GetVariable);

    /// <summary>The demo model's folder in the cache.</summary>
    public static string DemoModelDirectory(CliEnvironment environment) => Path.Combine(CacheDirectory(environment), "demo-model");

    /// <summary>The model folder to use: <paramref name="model"/>, or the demo model (built now if it is not in the cache).</summary>
    public static string Resolve(string? model, CliEnvironment environment) => Resolve(model, "--model", environment);

    /// <summary>The model folder <paramref name="option"/> names, or the demo model when it names none.</summary>
    public static string Resolve(string? model, string option, CliEnvironment environment)
    {
        if (!string.IsNullOrWhiteSpace(model))
        {
            var full = Path.GetFullPath(model);
            if (!Directory.Exists(full)) throw new UserException($"{option}: the folder '{full}' does not exist.");
            return full;
        }
        return DemoModel.EnsureBuilt(DemoModelDirectory(environment), line => environment.Console.MarkupLineInterpolated($"[grey]{line}[/]"));
    }

    /// <summary>The environment variable that lets ONNX Runtime's telemetry run (<c>1</c> or <c>true</c>); it is off otherwise.</summary>
    public const string TelemetryVariable = "MLNET_DIFFUSION_ONNXRUNTIME_TELEMETRY";

    /// <summary>The runtime options for --device, logging to standard error; ONNX Runtime's telemetry only when
    /// <see cref="TelemetryVariable"/> asks for it.</summary>
    public static DiffusionRuntimeOptions RuntimeOptions(ModelSettings settings, CliEnvironment environment)
    {
        var (device, id) = settings.ParsedDevice;
        bool telemetry = environment.GetVariable(TelemetryVariable)?.Trim().ToLowerInvariant() is "1" or "true";
        return new DiffusionRuntimeOptions
        {
            Device = device, DeviceId = id, Logger = new StderrLogger(environment), EnableOnnxRuntimeTelemetry = telemetry, LowMemory = settings.LowMemory,
            TextualInversions = settings.ParsedEmbeddings, WithoutT5 = settings.NoT5, MaxSequenceLength = settings.MaxSequenceLength,
        };
    }

    /// <summary>Loads the model for <paramref name="settings"/>; warns on standard error when CUDA was asked for and the CPU is used.</summary>
    public static StableDiffusionPipeline Load(ModelSettings settings, CliEnvironment environment) =>
        Load(settings.Model, "--model", settings, environment);

    /// <summary>Loads the model folder <paramref name="model"/> that <paramref name="option"/> names (a refiner, say) on
    /// <paramref name="settings"/>' device.</summary>
    public static StableDiffusionPipeline Load(string? model, string option, ModelSettings settings, CliEnvironment environment)
    {
        var directory = Resolve(model, option, environment);
        return StableDiffusionPipeline.Load(directory, RuntimeOptions(settings, environment));
    }
}

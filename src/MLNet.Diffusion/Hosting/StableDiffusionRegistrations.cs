using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Hosting;

/// <summary>Marks one <c>AddStableDiffusion</c> call: the options name it configured ("" for the unnamed one).</summary>
internal sealed record StableDiffusionRegistration(string Name);

/// <summary>
/// The container's Stable Diffusion registrations: their validated options by name, and for a folder the runtime
/// settings of the registrations naming it (with the container's logger), which the shared provider loads it with.
/// </summary>
internal sealed class StableDiffusionRegistrations
{
    private readonly string[] _names;
    private readonly IOptionsMonitor<StableDiffusionServiceOptions> _options;
    private readonly ILoggerFactory? _loggerFactory;

    public StableDiffusionRegistrations(IEnumerable<StableDiffusionRegistration> registrations, IOptionsMonitor<StableDiffusionServiceOptions> options, ILoggerFactory? loggerFactory)
    {
        _names = registrations.Select(r => r.Name).Distinct(StringComparer.Ordinal).ToArray();
        _options = options;
        _loggerFactory = loggerFactory;
    }

    /// <summary>The registration's options, validated.</summary>
    /// <exception cref="OptionsValidationException">An option is wrong; each failure names it.</exception>
    public StableDiffusionServiceOptions Options(string name) => _options.Get(name);

    /// <summary>
    /// The runtime settings for the folder at <paramref name="fullPath"/>: those of the registrations naming it
    /// (which must agree, since they share one pipeline), else the defaults; logging through the container's
    /// <see cref="ILoggerFactory"/> when it has one. Registrations whose options do not validate are skipped here;
    /// they fail with their own messages when they are resolved.
    /// </summary>
    /// <exception cref="InvalidOperationException">Two registrations name the folder with different runtime settings.</exception>
    public DiffusionRuntimeOptions RuntimeFor(string fullPath)
    {
        (string Name, DiffusionRuntimeOptions Runtime)? chosen = null;
        foreach (var name in _names)
        {
            StableDiffusionServiceOptions options;
            try { options = _options.Get(name); }
            catch (OptionsValidationException) { continue; }
            if (options.ModelPath is null || !ModelFolderPath.Comparer.Equals(ModelFolderPath.Normalize(options.ModelPath), fullPath))
                continue;
            var runtime = options.ToRuntimeOptions();
            if (chosen is null)
            {
                chosen = (name, runtime);
            }
            else if (Difference(chosen.Value.Runtime, runtime) is { } difference)
            {
                throw new InvalidOperationException(
                    $"Stable Diffusion registrations {Display(chosen.Value.Name)} and {Display(name)} both use the model folder '{fullPath}' but differ in {difference}. " +
                    "A folder is loaded once and shared, so its registrations must agree on their Runtime options.");
            }
        }
        var result = chosen?.Runtime ?? new DiffusionRuntimeOptions();
        result.Logger = _loggerFactory?.CreateLogger<StableDiffusionPipeline>();
        return result;
    }

    private static string Display(string name) => name.Length == 0 ? "(unnamed)" : $"'{name}'";

    private static string? Difference(DiffusionRuntimeOptions a, DiffusionRuntimeOptions b) =>
        a.Device != b.Device ? $"Device ({a.Device} vs {b.Device})"
        : a.DeviceId != b.DeviceId ? $"DeviceId ({a.DeviceId} vs {b.DeviceId})"
        : a.FallbackToCpu != b.FallbackToCpu ? $"FallbackToCpu ({a.FallbackToCpu} vs {b.FallbackToCpu})"
        : a.IntraOpThreads != b.IntraOpThreads ? $"IntraOpThreads ({a.IntraOpThreads} vs {b.IntraOpThreads})"
        : a.InterOpThreads != b.InterOpThreads ? $"InterOpThreads ({a.InterOpThreads} vs {b.InterOpThreads})"
        : a.GraphOptimizationLevel != b.GraphOptimizationLevel ? $"GraphOptimizationLevel ({a.GraphOptimizationLevel} vs {b.GraphOptimizationLevel})"
        : a.UseIoBinding != b.UseIoBinding ? $"UseIoBinding ({a.UseIoBinding} vs {b.UseIoBinding})"
        : a.EnableCudaGraph != b.EnableCudaGraph ? $"EnableCudaGraph ({a.EnableCudaGraph} vs {b.EnableCudaGraph})"
        : a.LowMemory != b.LowMemory ? $"LowMemory ({a.LowMemory} vs {b.LowMemory})"
        : a.WithoutT5 != b.WithoutT5 ? $"WithoutT5 ({a.WithoutT5} vs {b.WithoutT5})"
        : null;
}

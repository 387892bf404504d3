using Microsoft.Extensions.Logging;
using MLNet.Diffusion.Server.Errors;

namespace MLNet.Diffusion.Server.Models;

/// <summary>
/// The models the server may use, by name: <see cref="DiffusionServerOptions.Models"/>, or the built-in demo model as
/// <see cref="DiffusionServerOptions.DemoModelName"/>. A request names a model; it never gives a path. Each is loaded on
/// first use through <see cref="StableDiffusionPipeline.Load"/>, which shares loaded sessions process-wide, and disposed
/// with the catalog.
/// </summary>
internal sealed class ModelCatalog : IDisposable
{
    private readonly Dictionary<string, Lazy<StableDiffusionPipeline>> _models = new(StringComparer.Ordinal);
    private readonly string[] _names;
    private bool _disposed;

    /// <summary>The catalog of <paramref name="options"/>' models.</summary>
    public ModelCatalog(DiffusionServerOptions options, ILogger<ModelCatalog> logger)
    {
        var runtime = options.RuntimeOptions?.Clone() ?? new DiffusionRuntimeOptions();
        runtime.Logger ??= logger;
        if (options.Models.Count == 0)
        {
            _models[DiffusionServerOptions.DemoModelName] = new(() => StableDiffusionPipeline.Load(DemoModel.EnsureBuilt(logger), runtime));
        }
        else
        {
            foreach (var (name, folder) in options.Models)
            {
                string path = folder;
                _models[name] = new(() => StableDiffusionPipeline.Load(path, runtime));
            }
        }
        _names = [.. _models.Keys];
    }

    /// <summary>The names served, the default first.</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>The name a request without a model gets.</summary>
    public string DefaultName => _names[0];

    /// <summary>
    /// The pipeline named <paramref name="name"/> (null or empty: the default), loaded on first use. An unknown name is
    /// a 404 naming <paramref name="param"/> and listing the names served.
    /// </summary>
    public (string Name, StableDiffusionPipeline Pipeline) Get(string? name, string param)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        name = string.IsNullOrWhiteSpace(name) ? DefaultName : name;
        if (!_models.TryGetValue(name, out var lazy))
            throw new RequestException(StatusCodes.Status404NotFound,
                $"The model '{name}' does not exist on this server ({param}); it serves: {string.Join(", ", _names)}.", param, "model_not_found");
        return (name, lazy.Value);
    }

    /// <summary>Disposes the pipelines loaded.</summary>
    public void Dispose()
    {
        _disposed = true;
        foreach (var lazy in _models.Values)
            if (lazy.IsValueCreated) lazy.Value.Dispose();
    }
}

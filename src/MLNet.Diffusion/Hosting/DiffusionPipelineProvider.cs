using System.Collections.Concurrent;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Hosting;

/// <summary>
/// The thread-safe <see cref="IDiffusionPipelineProvider"/>: one lazily loaded <see cref="StableDiffusionPipeline"/>
/// per model folder, disposed with the provider. <c>services.AddStableDiffusion</c> registers one per container;
/// code without a container can create its own and keep it for the application's lifetime.
/// </summary>
internal sealed class DiffusionPipelineProvider : IDiffusionPipelineProvider, IDisposable
{
    private readonly Func<string, DiffusionRuntimeOptions> _runtimeFor;
    private readonly ConcurrentDictionary<string, Lazy<StableDiffusionPipeline>> _pipelines = new(ModelFolderPath.Comparer);
    private readonly List<StableDiffusionPipeline> _loaded = [];
    private readonly Lock _gate = new();
    private bool _disposed;

    /// <summary>A provider that loads every folder with <paramref name="runtimeOptions"/> (null: CPU defaults).</summary>
    public DiffusionPipelineProvider(DiffusionRuntimeOptions? runtimeOptions = null)
    {
        var options = runtimeOptions?.Clone() ?? new DiffusionRuntimeOptions();
        _runtimeFor = _ => options;
    }

    /// <summary>A provider that asks <paramref name="runtimeFor"/> for each folder's settings (given its full path),
    /// once, when the folder is first loaded.</summary>
    internal DiffusionPipelineProvider(Func<string, DiffusionRuntimeOptions> runtimeFor) => _runtimeFor = runtimeFor;

    /// <inheritdoc />
    public StableDiffusionPipeline Get(string modelPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelPath);
        ObjectDisposedException.ThrowIf(_disposed, this);
        string key = ModelFolderPath.Normalize(modelPath);
        var lazy = _pipelines.GetOrAdd(key, k => new Lazy<StableDiffusionPipeline>(() => Load(k), LazyThreadSafetyMode.ExecutionAndPublication));
        try
        {
            return lazy.Value;
        }
        catch
        {
            // Lazy remembers the exception; forget it so that a later request (say, after the folder is copied
            // into place) loads again. Only this Lazy is removed, not one that a retry has put there since.
            _pipelines.TryRemove(new KeyValuePair<string, Lazy<StableDiffusionPipeline>>(key, lazy));
            throw;
        }
    }

    /// <inheritdoc />
    public IReadOnlyCollection<string> LoadedModelPaths
    {
        get { lock (_gate) return _loaded.Select(p => p.Folder.Directory).ToArray(); }
    }

    private StableDiffusionPipeline Load(string fullPath)
    {
        var pipeline = StableDiffusionPipeline.Load(fullPath, _runtimeFor(fullPath));
        lock (_gate)
        {
            if (!_disposed)
            {
                _loaded.Add(pipeline);
                return pipeline;
            }
        }
        pipeline.Dispose();
        throw new ObjectDisposedException(nameof(DiffusionPipelineProvider), $"The provider was disposed while '{fullPath}' was loading.");
    }

    /// <summary>Disposes every pipeline the provider loaded; later requests throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        StableDiffusionPipeline[] loaded;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            loaded = [.. _loaded];
            _loaded.Clear();
        }
        _pipelines.Clear();
        foreach (var pipeline in loaded) pipeline.Dispose();
    }
}

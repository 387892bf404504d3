using System.Runtime.CompilerServices;
using Microsoft.ML;
using Microsoft.ML.Runtime;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Transforms;

/// <summary>What makes two transforms share one loaded model: the folder (however it is spelled) and how its sessions run.</summary>
internal readonly record struct DiffusionModelKey(string Directory, ExecutionDevice Device, int DeviceId, bool FallbackToCpu, int IntraOpThreads)
{
    /// <summary>Equal when the folders are one (<see cref="ModelFolderPath.Comparer"/>) and the session settings agree.</summary>
    public bool Equals(DiffusionModelKey other) =>
        ModelFolderPath.Comparer.Equals(Directory, other.Directory) && Device == other.Device && DeviceId == other.DeviceId
        && FallbackToCpu == other.FallbackToCpu && IntraOpThreads == other.IntraOpThreads;

    /// <inheritdoc />
    public override int GetHashCode() =>
        HashCode.Combine(ModelFolderPath.Comparer.GetHashCode(Directory), Device, DeviceId, FallbackToCpu, IntraOpThreads);

    /// <summary>
    /// The key for <paramref name="options"/> under <paramref name="host"/>'s settings, as <c>ApplyOnnxModel</c>
    /// reads them: a GPU id (the options', else <see cref="MLContext.GpuDeviceId"/>) selects CUDA on that device,
    /// none selects the CPU; the fallback flag is the options', else <see cref="MLContext.FallbackToCpu"/>.
    /// </summary>
    public static DiffusionModelKey For(DiffusionHost host, DiffusionOptions options, string directory)
    {
        int? gpu = options.GpuDeviceId ?? host.GpuDeviceId;
        return new DiffusionModelKey(ModelFolderPath.Normalize(directory), gpu is null ? ExecutionDevice.Cpu : ExecutionDevice.Cuda,
            gpu ?? 0, options.FallbackToCpu ?? host.FallbackToCpu, options.IntraOpThreads);
    }
}

/// <summary>
/// One loaded <see cref="StableDiffusionPipeline"/> per (MLContext, model folder, device settings), shared by every
/// diffusion transformer that uses it, so a pipeline of three stages loads the ONNX sessions once. Each transformer
/// holds a <see cref="ModelLease"/>; the model is unloaded when the last lease is disposed. Entries are attached to
/// their <see cref="MLContext"/> weakly: they never keep a context alive.
/// </summary>
internal static class DiffusionModelCache
{
    private static readonly ConditionalWeakTable<IHostEnvironment, Dictionary<DiffusionModelKey, Entry>> s_contexts = new();

    /// <summary>Takes a lease on the model for <paramref name="options"/>, loading it if no lease is held.</summary>
    /// <exception cref="InvalidOperationException">CUDA was asked for, cannot be used, and falling back is off.</exception>
    public static ModelLease Acquire(DiffusionHost host, DiffusionOptions options, string directory)
    {
        var key = DiffusionModelKey.For(host, options, directory);
        var entries = s_contexts.GetValue(host.Environment, _ => new Dictionary<DiffusionModelKey, Entry>());
        lock (entries)
        {
            if (!entries.TryGetValue(key, out var entry))
            {
                entry = Entry.Load(host.Environment, key);
                entries.Add(key, entry);
            }
            entry.References++;
            return new ModelLease(entry, () => Release(entries, key, entry));
        }
    }

    /// <summary>How many leases are held on the model for <paramref name="options"/> (tests and diagnostics).</summary>
    public static int LeaseCount(MLContext context, DiffusionOptions options)
    {
        var host = DiffusionHost.From(context);
        if (!s_contexts.TryGetValue(host.Environment, out var entries)) return 0;
        lock (entries) return entries.TryGetValue(DiffusionModelKey.For(host, options, options.ModelPath!), out var e) ? e.References : 0;
    }

    private static void Release(Dictionary<DiffusionModelKey, Entry> entries, DiffusionModelKey key, Entry entry)
    {
        lock (entries)
        {
            if (--entry.References > 0) return;
            entries.Remove(key);
        }
        entry.Dispose();
    }

    internal sealed class Entry : IDisposable
    {
        private readonly MLContextLogger _logger;

        private Entry(StableDiffusionPipeline pipeline, MLContextLogger logger)
        {
            Pipeline = pipeline;
            _logger = logger;
        }

        public StableDiffusionPipeline Pipeline { get; }

        public int References { get; set; }

        public static Entry Load(IHostEnvironment environment, DiffusionModelKey key)
        {
            var logger = new MLContextLogger(environment, Path.GetFileName(key.Directory.TrimEnd(Path.DirectorySeparatorChar)));
            try
            {
                var pipeline = StableDiffusionPipeline.Load(key.Directory, new DiffusionRuntimeOptions
                {
                    Device = key.Device,
                    DeviceId = key.DeviceId,
                    FallbackToCpu = key.FallbackToCpu,
                    IntraOpThreads = key.IntraOpThreads,
                    Logger = logger,
                });
                return new Entry(pipeline, logger);
            }
            catch
            {
                logger.Dispose();
                throw;
            }
        }

        public void Dispose()
        {
            Pipeline.Dispose();
            _logger.Dispose();
        }
    }
}

/// <summary>A transformer's hold on a shared loaded model; disposing it releases the hold (once).</summary>
internal sealed class ModelLease : IDisposable
{
    private readonly DiffusionModelCache.Entry _entry;
    private Action? _release;

    internal ModelLease(DiffusionModelCache.Entry entry, Action release)
    {
        _entry = entry;
        _release = release;
    }

    /// <summary>The shared pipeline.</summary>
    public StableDiffusionPipeline Pipeline => _release is null ? throw new ObjectDisposedException(nameof(ModelLease), "The transformer that used this model has been disposed.") : _entry.Pipeline;

    public void Dispose() => Interlocked.Exchange(ref _release, null)?.Invoke();
}

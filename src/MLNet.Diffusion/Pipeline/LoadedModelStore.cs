using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// The one place loaded models live: one <see cref="LoadedModel"/> per (model folder, however it is spelled; runtime
/// settings), reference counted. <see cref="StableDiffusionPipeline.Load"/>, the dependency-injection provider and the
/// ML.NET transforms all lease from it, so a folder's ONNX Runtime sessions are created once however many of them use it,
/// and released when the last lease is.
/// </summary>
/// <remarks>
/// The settings that decide how sessions run are part of the key (device, device id, fallback, threads, IO binding,
/// CUDA graphs, graph optimisation, low memory), and so are the textual-inversion files (paths, trigger words, sizes and
/// write times), since they change the text encoders' sessions; the logger is not: a shared model logs its loading to the logger of the lease that
/// loaded it, and every call logs to its own pipeline's logger.
/// </remarks>
internal static class LoadedModelStore
{
    private static readonly Dictionary<Key, Entry> s_entries = [];
    private static readonly Lock s_gate = new();

    /// <summary>Takes a lease on the model for <paramref name="directory"/> under <paramref name="options"/>, loading it
    /// if no lease is held (concurrent first requests wait for one load; a failed load is not remembered).</summary>
    public static Lease Acquire(string directory, DiffusionRuntimeOptions options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentNullException.ThrowIfNull(options);
        var key = Key.For(directory, options);
        Entry entry;
        lock (s_gate)
        {
            if (!s_entries.TryGetValue(key, out entry!))
            {
                var settings = options.Clone();
                entry = new Entry(new Lazy<LoadedModel>(() => LoadedModel.Load(key.Directory, settings), LazyThreadSafetyMode.ExecutionAndPublication));
                s_entries.Add(key, entry);
            }
            entry.References++;
        }
        try
        {
            return new Lease(entry.Model.Value, () => Release(key, entry));
        }
        catch
        {
            Release(key, entry);
            throw;
        }
    }

    /// <summary>Leases held on the model of <paramref name="directory"/> under <paramref name="options"/>.</summary>
    public static int LeaseCount(string directory, DiffusionRuntimeOptions options)
    {
        lock (s_gate) return s_entries.TryGetValue(Key.For(directory, options), out var entry) ? entry.References : 0;
    }

    private static void Release(Key key, Entry entry)
    {
        lock (s_gate)
        {
            if (--entry.References > 0) return;
            if (s_entries.TryGetValue(key, out var current) && current == entry) s_entries.Remove(key);
        }
        if (entry.Model.IsValueCreated) entry.Model.Value.Dispose();
    }

    private sealed class Entry(Lazy<LoadedModel> model)
    {
        public Lazy<LoadedModel> Model { get; } = model;

        public int References { get; set; }
    }

    /// <summary>What makes two loads one: the folder (<see cref="ModelFolderPath"/>) and how its sessions run.</summary>
    private readonly record struct Key(string Directory, ExecutionDevice Device, int DeviceId, bool FallbackToCpu, int IntraOpThreads,
        int InterOpThreads, bool UseIoBinding, bool EnableCudaGraph, bool ForceFixedBuffers, GraphOptimizationLevel GraphOptimizationLevel, bool LowMemory, bool CpuMemoryArena,
        string TextualInversions, bool WithoutT5)
    {
        /// <remarks>On the CPU the CUDA-only settings (device id, fallback, CUDA graphs) change nothing, so they are left out:
        /// an <c>MLContext</c> (whose <c>FallbackToCpu</c> is false by default) and a container (true) share one CPU model.</remarks>
        public static Key For(string directory, DiffusionRuntimeOptions o)
        {
            bool cuda = o.Device != ExecutionDevice.Cpu;
            return new(ModelFolderPath.Normalize(directory), o.Device, cuda ? o.DeviceId : 0, cuda && o.FallbackToCpu, o.IntraOpThreads,
                o.InterOpThreads, o.UseIoBinding, cuda && o.EnableCudaGraph, o.ForceFixedBuffers, o.GraphOptimizationLevel, o.LowMemory, o.CpuMemoryArena ?? !o.LowMemory,
                TextEncoding.TextualInversionSet.IdentityOf(o.TextualInversions), o.WithoutT5);
        }

        public bool Equals(Key other) =>
            ModelFolderPath.Comparer.Equals(Directory, other.Directory) && Device == other.Device && DeviceId == other.DeviceId
            && FallbackToCpu == other.FallbackToCpu && IntraOpThreads == other.IntraOpThreads && InterOpThreads == other.InterOpThreads
            && UseIoBinding == other.UseIoBinding && EnableCudaGraph == other.EnableCudaGraph && ForceFixedBuffers == other.ForceFixedBuffers
            && GraphOptimizationLevel == other.GraphOptimizationLevel && LowMemory == other.LowMemory && CpuMemoryArena == other.CpuMemoryArena
            && TextualInversions == other.TextualInversions && WithoutT5 == other.WithoutT5;

        public override int GetHashCode() =>
            HashCode.Combine(ModelFolderPath.Comparer.GetHashCode(Directory), Device, DeviceId, FallbackToCpu, IntraOpThreads,
                InterOpThreads, HashCode.Combine(UseIoBinding, EnableCudaGraph, ForceFixedBuffers, GraphOptimizationLevel, LowMemory, CpuMemoryArena, TextualInversions, WithoutT5));
    }

    /// <summary>A hold on a shared model; disposing it releases the hold (once).</summary>
    internal sealed class Lease(LoadedModel model, Action release) : IDisposable
    {
        private Action? _release = release;

        public LoadedModel Model { get; } = model;

        public void Dispose() => Interlocked.Exchange(ref _release, null)?.Invoke();
    }
}

namespace MLNet.Diffusion.Tests.Performance;

/// <summary>
/// Managed bytes allocated by the current thread while an action runs (ONNX Runtime's native threads do not
/// count). While other tests run, the counter now and then moves by a few kilobytes during a step that
/// allocates nothing (about once in a thousand millisecond-long steps, by 0.3 to 8 KB, never the same
/// amount: the unused rest of this thread's allocation context when a collection on another thread retires
/// it, which <see cref="GC.CollectionCount"/> does not always show). So each scenario runs several times and a
/// step counts as allocating only if it allocates in every run: an allocation in the code under test
/// happens every time.
/// </summary>
internal static class AllocationProbe
{
    public static (long Bytes, bool Clean) Measure(Action action)
    {
        int collections = GC.CollectionCount(0);
        long before = GC.GetAllocatedBytesForCurrentThread();
        action();
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        return (bytes, GC.CollectionCount(0) == collections);
    }

    /// <summary>
    /// Asserts that no step allocated in every run: <paramref name="runs"/> holds one list of per-step samples
    /// per run, all of the same length (samples during a garbage collection count as allocating).
    /// </summary>
    public static void AssertZeroPerStep(IReadOnlyList<IReadOnlyList<(long Bytes, bool Clean)>> runs, string what)
    {
        Assert.True(runs.Count >= 3, "Measure at least three runs.");
        int steps = runs[0].Count;
        Assert.True(steps > 0 && runs.All(r => r.Count == steps), $"{what}: runs of different lengths.");
        for (int i = 0; i < steps; i++)
        {
            bool quietOnce = runs.Any(r => r[i].Clean && r[i].Bytes == 0);
            Assert.True(quietOnce, $"{what}: step {i} allocated in every run: {string.Join("; ", runs.Select(r => string.Join(", ", r.Select(s => s.Clean ? s.Bytes.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{s.Bytes} (GC)"))))}");
        }
    }
}

/// <summary>
/// A progress sink for the denoising loop: the managed bytes this thread allocated between consecutive reports (one
/// whole step each, since reports come right after each step), and whether no collection ran meanwhile.
/// </summary>
internal sealed class StepAllocations : IProgress<MLNet.Diffusion.DiffusionProgress>
{
    private long _last = -1;
    private int _collections;

    public List<(long Bytes, bool Clean)> Deltas { get; } = new(64);

    public void Report(MLNet.Diffusion.DiffusionProgress value)
    {
        long now = GC.GetAllocatedBytesForCurrentThread();
        int collections = GC.CollectionCount(0);
        if (_last >= 0) Deltas.Add((now - _last, collections == _collections));
        _collections = collections;
        _last = GC.GetAllocatedBytesForCurrentThread();
    }
}

/// <summary>The allocation tests run alone, so that other tests' collections rarely disturb them.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "Allocation measurements";
}

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// Hands a silo's finished work items to their job grains in group calls (<see cref="IGenerationJobGrain.CompleteAndLeaseMany"/>):
/// per job, at most one call is under way; the completions of the silo's other devices that arrive meanwhile wait and go
/// together in the next call. A lone completion goes at once (no added wait), and under load the job grain takes one call per
/// group instead of one per item. Each device gets its own next item back.
/// </summary>
internal sealed class CompletionReporter(IGrainFactory grains, SiloAddress silo)
{
    private readonly Dictionary<string, List<Entry>> _waiting = new(StringComparer.Ordinal);
    private readonly HashSet<string> _sending = new(StringComparer.Ordinal);

    private sealed record Entry(WorkResult Result, string Worker, TaskCompletionSource<WorkItem?> Next);

    /// <summary>Hands in <paramref name="result"/> of job <paramref name="jobId"/>; returns the same job's next item for <paramref name="worker"/>, or null.</summary>
    /// <exception cref="Exception">The call that carried it failed (the job's silo is leaving): the item's lease then runs out and it is made again.</exception>
    public Task<WorkItem?> Report(string jobId, WorkResult result, string worker)
    {
        var entry = new Entry(result, worker, new TaskCompletionSource<WorkItem?>(TaskCreationOptions.RunContinuationsAsynchronously));
        bool start;
        lock (_waiting)
        {
            if (!_waiting.TryGetValue(jobId, out var list)) _waiting[jobId] = list = [];
            list.Add(entry);
            start = _sending.Add(jobId);
        }
        if (start) _ = Task.Run(() => Send(jobId));
        return entry.Next.Task;
    }

    private async Task Send(string jobId)
    {
        var job = grains.GetGrain<IGenerationJobGrain>(jobId);
        while (true)
        {
            Entry[] group;
            lock (_waiting)
            {
                if (!_waiting.Remove(jobId, out var list))
                {
                    _sending.Remove(jobId);
                    return;
                }
                group = [.. list];
            }
            try
            {
                var next = await job.CompleteAndLeaseMany([.. group.Select(e => e.Result)], [.. group.Select(e => e.Worker)], silo);
                for (int i = 0; i < group.Length; i++) group[i].Next.TrySetResult(i < next.Length ? next[i] : null);
            }
            catch (Exception e)
            {
                foreach (var entry in group) entry.Next.TrySetException(e);
            }
        }
    }
}

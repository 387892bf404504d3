using Orleans.Concurrency;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// Owns one generation job (key: the job id): splits its rows into work items, leases them to workers, re-issues the items
/// of workers that time out or whose silo leaves the cluster, commits each row exactly once to the job's output folder,
/// reports progress and can be cancelled.
/// </summary>
public interface IGenerationJobGrain : IGrainWithStringKey
{
    /// <summary>
    /// Starts the job, or reattaches to it: while the job is known the call only returns its progress (a client that restarted
    /// calls it again with the same spec). Rows already in the output folder's manifest are not made again.
    /// </summary>
    Task<JobProgress> Start(JobSpec spec);

    /// <summary>The job's progress.</summary>
    Task<JobProgress> GetProgress();

    /// <summary>
    /// The job's progress once it differs from version <paramref name="seenVersion"/> (<see cref="JobProgress.Version"/>), or
    /// after <paramref name="maxWait"/> (at most 10 s), whichever comes first: a client follows the job without polling
    /// and learns that it finished at once. Runs interleaved with the job's other calls.
    /// </summary>
    [AlwaysInterleave]
    Task<JobProgress> WaitForProgress(long seenVersion, TimeSpan maxWait);

    /// <summary>Cancels the job: nothing more is handed out; items in flight are committed when they come back.</summary>
    Task<JobProgress> Cancel();

    /// <summary>Leases the next work item to <paramref name="worker"/> on <paramref name="silo"/>, or returns null when there is none to hand out.</summary>
    Task<WorkItem?> Lease(string worker, SiloAddress silo);

    /// <summary>Takes a worker's results: commits the rows not yet committed, drops the rest, releases the lease.</summary>
    Task<JobProgress> Complete(WorkResult result);

    /// <summary><see cref="Complete"/> then <see cref="Lease"/> in one call: a busy worker's one round trip per item.</summary>
    Task<WorkItem?> CompleteAndLease(WorkResult result, string worker, SiloAddress silo);

    /// <summary>
    /// <see cref="CompleteAndLease"/> for several workers of one silo in one call: result <c>i</c> came from
    /// <c>workers[i]</c>, whose next item is element <c>i</c> of the answer (null when there is none, or when that result
    /// carries a <see cref="WorkResult.WorkerError"/>). A silo's agent groups the completions that arrive while its previous
    /// call is under way, so the grain takes one call per group, not per item.
    /// </summary>
    /// <exception cref="ArgumentException">The arrays differ in length.</exception>
    Task<WorkItem?[]> CompleteAndLeaseMany(WorkResult[] results, string[] workers, SiloAddress silo);

    /// <summary>
    /// For a job with <see cref="JobSpec.ReturnToCaller"/>: the rows' outcomes (image or error) settled by this activation
    /// after the first <paramref name="received"/>, in the order they were settled. The caller passes how many it has
    /// received from this activation so far (0 at first; after a restart of the job, 0 again): those are acknowledged and
    /// dropped, the rest stay held until acknowledged, so an answer lost on the way is sent again by the next call. A
    /// finished job whose outcomes are all acknowledged lets its activation go.
    /// </summary>
    /// <exception cref="InvalidOperationException">The job writes to a folder (or was not started).</exception>
    Task<RowResult[]> TakeResults(int received);
}

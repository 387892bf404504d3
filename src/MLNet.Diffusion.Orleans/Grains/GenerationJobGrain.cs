using Microsoft.Extensions.Logging;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// The job's state lives in this activation (rows, items, leases) and in its output folder (what is committed). If the
/// activation is lost (its silo died), starting the job again with the same spec rebuilds it from the folder's manifest:
/// only uncommitted rows are made again. A check every quarter lease timeout (at most a second) re-issues items whose lease ran out or whose
/// worker's silo membership no longer lists as active. A completion costs O(its rows) on the grain's turn and allocates only the
/// next item: leases live in arrays indexed by item, the exactly-once decision is a bit per row, and the folder is written by
/// the sink's background writer (nothing is persisted on the turn; a lost activation is rebuilt from the manifest).
/// </summary>
internal sealed class GenerationJobGrain(ILogger<GenerationJobGrain> logger, IClusterMembershipService membership, ILocalSiloDetails silo)
    : Grain, IGenerationJobGrain
{
    private JobSpec? _spec;
    private Dictionary<int, GenerationRow> _rowsByIndex = [];
    private List<GenerationRow[]> _items = [];
    private bool[] _itemDone = [];
    // The item of this activation that holds each row to make, and each item's rows not yet settled. An item is done when its
    // rows are settled, by whichever result settled them: a result made for an earlier activation of the job (whose items
    // were numbered over other rows) still settles its rows and never marks an item of this activation done by number.
    private Dictionary<int, int> _itemOfRow = [];
    private int[] _unsettledRows = [];
    private readonly Queue<int> _pending = new();
    // Leases by item (O(1) per lease and completion, no allocation): lease id (0: not leased), deadline, holder.
    private long[] _leaseId = [];
    private long[] _leaseDeadline = [];
    private string?[] _leaseWorker = [];
    private SiloAddress?[] _leaseSilo = [];
    private int _inFlight;
    private IJobSink? _sink;
    private JobStatus _status = JobStatus.NotStarted;
    private bool _draining;
    private long _nextLease;
    private int _reissued, _duplicates, _settledRows, _itemsDone;
    private string? _lastWorkerError;
    private IGrainTimer? _timer;
    private long _version;
    private TaskCompletionSource? _changed;

    public async Task<JobProgress> Start(JobSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (_status != JobStatus.NotStarted) return Progress();
        Validate(spec);
        _spec = spec;
        _rowsByIndex = spec.Rows.ToDictionary(r => r.Row);
        int tableRows = spec.Rows.Length == 0 ? 0 : spec.Rows.Max(r => r.Row) + 1;
        _sink = spec.ReturnToCaller ? new CallerSink(tableRows) : FolderSink.Open(spec.OutputDirectory, tableRows);
        var todo = spec.Rows.Where(r => !_sink.IsCommitted(r.Row)).ToArray();
        _items = [.. todo.Chunk(spec.BatchSize)];
        _itemDone = new bool[_items.Count];
        _unsettledRows = new int[_items.Count];
        _itemOfRow = new Dictionary<int, int>(todo.Length);
        for (int i = 0; i < _items.Count; i++)
        {
            _unsettledRows[i] = _items[i].Length;
            foreach (var row in _items[i]) _itemOfRow[row.Row] = i;
        }
        // Lease ids start at a random point, so a lease of an earlier activation of this job is not taken for one of this one.
        _nextLease = Random.Shared.NextInt64(1L << 40) << 20;
        _leaseId = new long[_items.Count];
        _leaseDeadline = new long[_items.Count];
        _leaseWorker = new string?[_items.Count];
        _leaseSilo = new SiloAddress?[_items.Count];
        for (int i = 0; i < _items.Count; i++) _pending.Enqueue(i);
        _settledRows = spec.Rows.Length - todo.Length;
        _status = _items.Count == 0 ? JobStatus.Completed : JobStatus.Running;
        if (_status == JobStatus.Running)
        {
            // A quarter of the lease timeout, at most a second (membership changes are noticed within a second).
            var period = TimeSpan.FromTicks(Math.Clamp(spec.LeaseTimeout.Ticks / 4, TimeSpan.FromMilliseconds(100).Ticks, TimeSpan.FromSeconds(1).Ticks));
            _timer = this.RegisterGrainTimer(CheckLeases, new GrainTimerCreationOptions(period, period) { KeepAlive = true });
            await GrainFactory.GetGrain<IJobRegistryGrain>(0).Add(this.GetPrimaryKeyString());
        }
        logger.LogInformation("Job {Job}: {Rows} rows, {Done} already in {Folder}, {Items} items of up to {Batch}.",
            this.GetPrimaryKeyString(), spec.Rows.Length, _settledRows, spec.ReturnToCaller ? "the caller" : spec.OutputDirectory, _items.Count, spec.BatchSize);
        return Progress();
    }

    public Task<JobProgress> GetProgress() => Task.FromResult(Progress());

    public async Task<JobProgress> WaitForProgress(long seenVersion, TimeSpan maxWait)
    {
        var wait = TimeSpan.FromTicks(Math.Clamp(maxWait.Ticks, 0, TimeSpan.FromSeconds(10).Ticks));
        if (seenVersion == _version && wait > TimeSpan.Zero)
        {
            _changed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            // Continues on the activation's scheduler (captured context), as every turn of the grain does.
            await _changed.Task.WaitAsync(wait).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing | ConfigureAwaitOptions.ContinueOnCapturedContext);
        }
        return Progress();
    }

    /// <summary>Marks a change of the job's state and wakes the clients waiting for one.</summary>
    private void Changed()
    {
        _version++;
        if (_changed is { } changed)
        {
            _changed = null;
            changed.TrySetResult();
        }
    }

    public async Task<JobProgress> Cancel()
    {
        if (_status == JobStatus.Running)
        {
            _status = JobStatus.Cancelled;
            _pending.Clear();
            Changed();
            await Finish();
        }
        return Progress();
    }

    public Task<RowResult[]> TakeResults(int received)
    {
        if (_sink is not CallerSink caller)
            throw new InvalidOperationException(_spec is null
                ? $"Job '{this.GetPrimaryKeyString()}' is not started (or lost its state): start it again with the rows not yet received."
                : $"Job '{this.GetPrimaryKeyString()}' writes to the folder '{_spec.OutputDirectory}', not back to the caller: read its images there.");
        var taken = caller.Take(received);
        // Nothing is kept once a finished job's outcomes are all acknowledged: the activation can go.
        if (_status != JobStatus.Running && _inFlight == 0 && caller.HeldCount == 0) DeactivateOnIdle();
        return Task.FromResult(taken);
    }

    public Task<WorkItem?> Lease(string worker, SiloAddress workerSilo) => Task.FromResult(NextItem(worker, workerSilo));

    public async Task<JobProgress> Complete(WorkResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        Settle(result);
        Changed();
        await EndIfOver();
        return Progress();
    }

    public async Task<WorkItem?> CompleteAndLease(WorkResult result, string worker, SiloAddress workerSilo)
    {
        ArgumentNullException.ThrowIfNull(result);
        Settle(result);
        Changed();
        var next = result.WorkerError is null ? NextItem(worker, workerSilo) : null;
        await EndIfOver();
        return next;
    }

    public async Task<WorkItem?[]> CompleteAndLeaseMany(WorkResult[] results, string[] workers, SiloAddress workerSilo)
    {
        ArgumentNullException.ThrowIfNull(results);
        ArgumentNullException.ThrowIfNull(workers);
        if (results.Length != workers.Length)
            throw new ArgumentException($"{results.Length} results came with {workers.Length} worker names; send one name per result.", nameof(workers));
        foreach (var result in results) Settle(result);
        Changed();
        var next = new WorkItem?[results.Length];
        for (int i = 0; i < results.Length; i++) next[i] = results[i].WorkerError is null ? NextItem(workers[i], workerSilo) : null;
        await EndIfOver();
        return next;
    }

    /// <summary>The next pending item, leased to <paramref name="worker"/>; null when there is none.</summary>
    private WorkItem? NextItem(string worker, SiloAddress workerSilo)
    {
        if (_status != JobStatus.Running || _spec is null) return null;
        if (_sink!.PendingBytes >= _spec.MaxPendingWriteBytes) return null; // the folder is behind: workers ask again shortly
        while (_pending.TryDequeue(out int item))
        {
            if (_itemDone[item]) continue;
            if (_leaseId[item] == 0) _inFlight++;
            long leaseId = ++_nextLease;
            _leaseId[item] = leaseId;
            _leaseDeadline[item] = DateTime.UtcNow.Ticks + _spec.LeaseTimeout.Ticks;
            _leaseWorker[item] = worker;
            _leaseSilo[item] = workerSilo;
            return new WorkItem { JobId = this.GetPrimaryKeyString(), ItemId = item, LeaseId = leaseId, Settings = _spec.Settings, Rows = _items[item] };
        }
        return null;
    }

    private void Release(int item)
    {
        if (_leaseId[item] == 0) return;
        _leaseId[item] = 0;
        _leaseWorker[item] = null;
        _leaseSilo[item] = null;
        _inFlight--;
    }

    /// <summary>
    /// Takes one result on the grain's turn: its rows go to the sink (which writes them off the turn), the items whose rows are
    /// now all settled are done, and the lease it answers is released. A current lease whose item still has rows unsettled (the
    /// worker left some out) puts the item back in the queue.
    /// </summary>
    private void Settle(WorkResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        if (_spec is null || _sink is null) return;
        bool current = result.ItemId >= 0 && result.ItemId < _items.Count && _leaseId[result.ItemId] == result.LeaseId;
        if (current) Release(result.ItemId);
        if (result.WorkerError is not null)
        {
            _lastWorkerError = result.WorkerError;
            logger.LogWarning("Job {Job}: {Error}", this.GetPrimaryKeyString(), result.WorkerError);
            if (current && !_itemDone[result.ItemId] && _status == JobStatus.Running) _pending.Enqueue(result.ItemId);
            return;
        }
        foreach (var row in result.Rows)
        {
            if (!_rowsByIndex.TryGetValue(row.Row, out var source)) continue;
            if (_sink.IsSettled(row.Row)) { _duplicates++; continue; }
            if (row.Png is not null) _sink.Commit(source, row.Png, result.SettingsText, row.Seconds);
            else _sink.Fail(source, row.Error ?? "The worker returned neither an image nor an error.");
            _settledRows++;
            if (_itemOfRow.TryGetValue(row.Row, out int item) && --_unsettledRows[item] == 0)
            {
                _itemDone[item] = true;
                _itemsDone++;
                Release(item); // a re-issued copy still out is no longer needed; its results will be duplicates
            }
        }
        if (current && !_itemDone[result.ItemId] && _status == JobStatus.Running) _pending.Enqueue(result.ItemId);
    }

    /// <summary>
    /// Fails the job when the sink failed; once every item is settled, waits for the sink's writes off the turn (the worker
    /// that handed in the last item does not wait for the disk) and then completes the job.
    /// </summary>
    private Task EndIfOver()
    {
        if (_sink is null || _status != JobStatus.Running) return Task.CompletedTask;
        if (_sink.Error is { } error)
        {
            _status = JobStatus.Failed;
            _pending.Clear();
            Changed();
            logger.LogError("Job {Job}: {Error}", this.GetPrimaryKeyString(), error);
            return Finish();
        }
        if (_itemsDone == _items.Count && !_draining)
        {
            _draining = true;
            _ = DrainThenComplete(); // runs on the activation's scheduler, between calls
        }
        return Task.CompletedTask;
    }

    private async Task DrainThenComplete()
    {
        await _sink!.DrainAsync();
        if (_status != JobStatus.Running) return;
        _status = _sink.Error is null ? JobStatus.Completed : JobStatus.Failed;
        Changed();
        if (_sink.Error is { } error) logger.LogError("Job {Job}: {Error}", this.GetPrimaryKeyString(), error);
        try
        {
            await Finish();
        }
        catch (Exception e) when (e is TimeoutException or OrleansException)
        {
            logger.LogWarning("Job {Job}: the job registry cannot be reached ({Message}); workers drop the job when it hands out nothing.", this.GetPrimaryKeyString(), e.Message);
        }
    }

    private async Task CheckLeases(CancellationToken cancellationToken)
    {
        if (_status != JobStatus.Running || _spec is null) return;
        long now = DateTime.UtcNow.Ticks;
        int reissued = _reissued;
        var snapshot = membership.CurrentSnapshot;
        for (int item = 0; item < _leaseId.Length && _inFlight > 0; item++)
        {
            if (_leaseId[item] == 0) continue;
            bool siloGone = snapshot.GetSiloStatus(_leaseSilo[item]!) is SiloStatus.Dead or SiloStatus.ShuttingDown or SiloStatus.Stopping;
            if (!siloGone && _leaseDeadline[item] > now) continue;
            var worker = _leaseWorker[item];
            Release(item);
            if (_itemDone[item]) continue;
            _pending.Enqueue(item);
            _reissued++;
            logger.LogInformation("Job {Job}: item {Item} of {Worker} re-issued ({Reason}).", this.GetPrimaryKeyString(), item, worker,
                siloGone ? "its silo left the cluster" : "its lease timed out");
        }
        if (_reissued != reissued) Changed();
        // The registry keeps its list in memory: if its silo died, this puts the job back on the new activation's list.
        try
        {
            await GrainFactory.GetGrain<IJobRegistryGrain>(0).Add(this.GetPrimaryKeyString());
        }
        catch (Exception e) when (e is TimeoutException or OrleansException)
        {
            logger.LogWarning("Job {Job}: the job registry cannot be reached ({Message}); trying again at the next check.", this.GetPrimaryKeyString(), e.Message);
        }
    }

    private async Task Finish()
    {
        _timer?.Dispose();
        _timer = null;
        await GrainFactory.GetGrain<IJobRegistryGrain>(0).Remove(this.GetPrimaryKeyString());
    }

    private JobProgress Progress() => new()
    {
        Status = _status,
        TotalRows = _spec?.Rows.Length ?? 0,
        CommittedRows = _sink?.CommittedCount ?? 0,
        FailedRows = _sink?.FailedCount ?? 0,
        PendingItems = _status == JobStatus.Running ? _items.Count - _itemsDone - _inFlight : 0, // an item not done is queued or leased
        InFlightItems = _inFlight,
        ReissuedItems = _reissued,
        DuplicateRows = _duplicates,
        LastWorkerError = _lastWorkerError,
        PendingWrites = _sink?.PendingWrites ?? 0,
        SinkError = _sink?.Error,
        Host = silo.SiloAddress.ToString(),
        Version = _version,
    };

    private static void Validate(JobSpec spec)
    {
        if (spec.BatchSize < 1) throw new ArgumentException($"JobSpec.BatchSize is {spec.BatchSize}; it must be 1 or more.", nameof(spec));
        if (spec.MaxPendingWriteBytes <= 0) throw new ArgumentException($"JobSpec.MaxPendingWriteBytes is {spec.MaxPendingWriteBytes}; it must be positive (default 256 MiB).", nameof(spec));
        if (spec.LeaseTimeout <= TimeSpan.Zero) throw new ArgumentException($"JobSpec.LeaseTimeout is {spec.LeaseTimeout}; it must be positive.", nameof(spec));
        if (spec.ReturnToCaller && !string.IsNullOrWhiteSpace(spec.OutputDirectory))
            throw new ArgumentException($"JobSpec.ReturnToCaller is set and JobSpec.OutputDirectory names '{spec.OutputDirectory}'; a job's images go to one place: clear one of them.", nameof(spec));
        if (!spec.ReturnToCaller && string.IsNullOrWhiteSpace(spec.OutputDirectory))
            throw new ArgumentException("JobSpec.OutputDirectory is empty; name a folder every silo can write (or set JobSpec.ReturnToCaller to take the images back).", nameof(spec));
        if (string.IsNullOrWhiteSpace(spec.Settings.ModelDirectory)) throw new ArgumentException("JobSpec.Settings.ModelDirectory is empty; name a model folder every worker can read.", nameof(spec));
        var seen = new HashSet<int>();
        foreach (var row in spec.Rows)
        {
            if (row.Row < 0) throw new ArgumentException($"JobSpec.Rows holds row index {row.Row}; indices are 0 or more.", nameof(spec));
            if (!seen.Add(row.Row)) throw new ArgumentException($"JobSpec.Rows holds row index {row.Row} twice; each row needs its own index.", nameof(spec));
        }
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _sink?.Dispose();
        return Task.CompletedTask;
    }
}

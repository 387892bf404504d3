using Microsoft.Extensions.Logging;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// The job's state lives in this activation (rows, items, leases) and in its output folder (what is committed). If the
/// activation is lost (its silo died), starting the job again with the same spec rebuilds it from the folder's manifest:
/// only uncommitted rows are made again. A check every quarter lease timeout (at most a second) re-issues items whose lease ran out or whose
/// worker's silo membership no longer lists as active.
/// </summary>
internal sealed class GenerationJobGrain(ILogger<GenerationJobGrain> logger, IClusterMembershipService membership, ILocalSiloDetails silo)
    : Grain, IGenerationJobGrain
{
    private JobSpec? _spec;
    private Dictionary<int, GenerationRow> _rowsByIndex = [];
    private List<GenerationRow[]> _items = [];
    private bool[] _itemDone = [];
    private readonly Queue<int> _pending = new();
    private readonly Dictionary<int, ItemLease> _leases = [];
    private FolderSink? _sink;
    private JobStatus _status = JobStatus.NotStarted;
    private long _nextLease;
    private int _reissued, _duplicates, _settledRows, _itemsDone;
    private string? _lastWorkerError;
    private IGrainTimer? _timer;

    private sealed record ItemLease(long LeaseId, string Worker, SiloAddress Silo, DateTime Deadline);

    public async Task<JobProgress> Start(JobSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (_status != JobStatus.NotStarted) return Progress();
        Validate(spec);
        _spec = spec;
        _rowsByIndex = spec.Rows.ToDictionary(r => r.Row);
        _sink = FolderSink.Open(spec.OutputDirectory, spec.Rows.Length == 0 ? 0 : spec.Rows.Max(r => r.Row) + 1);
        var todo = spec.Rows.Where(r => !_sink.IsCommitted(r.Row)).ToArray();
        _items = [.. todo.Chunk(spec.BatchSize)];
        _itemDone = new bool[_items.Count];
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
            this.GetPrimaryKeyString(), spec.Rows.Length, _settledRows, spec.OutputDirectory, _items.Count, spec.BatchSize);
        return Progress();
    }

    public Task<JobProgress> GetProgress() => Task.FromResult(Progress());

    public async Task<JobProgress> Cancel()
    {
        if (_status == JobStatus.Running)
        {
            _status = JobStatus.Cancelled;
            _pending.Clear();
            await Finish();
        }
        return Progress();
    }

    public Task<WorkItem?> Lease(string worker, SiloAddress workerSilo)
    {
        if (_status != JobStatus.Running || _spec is null) return Task.FromResult<WorkItem?>(null);
        while (_pending.TryDequeue(out int item))
        {
            if (_itemDone[item]) continue;
            long leaseId = ++_nextLease;
            _leases[item] = new ItemLease(leaseId, worker, workerSilo, DateTime.UtcNow + _spec.LeaseTimeout);
            return Task.FromResult<WorkItem?>(new WorkItem { JobId = this.GetPrimaryKeyString(), ItemId = item, LeaseId = leaseId, Settings = _spec.Settings, Rows = _items[item] });
        }
        return Task.FromResult<WorkItem?>(null);
    }

    public async Task<JobProgress> Complete(WorkResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        if (_spec is null || _sink is null || result.ItemId < 0 || result.ItemId >= _items.Count) return Progress();
        bool current = _leases.TryGetValue(result.ItemId, out var lease) && lease.LeaseId == result.LeaseId;
        if (current) _leases.Remove(result.ItemId);
        if (result.WorkerError is not null)
        {
            _lastWorkerError = result.WorkerError;
            logger.LogWarning("Job {Job}: {Error}", this.GetPrimaryKeyString(), result.WorkerError);
            if (current && !_itemDone[result.ItemId] && _status == JobStatus.Running) _pending.Enqueue(result.ItemId);
            return Progress();
        }
        foreach (var row in result.Rows)
        {
            if (!_rowsByIndex.TryGetValue(row.Row, out var source)) continue;
            if (_sink.IsSettled(row.Row)) { _duplicates++; continue; }
            if (row.Png is not null) _sink.Commit(source, row.Png, result.SettingsText, row.Seconds);
            else _sink.Fail(source, row.Error ?? "The worker returned neither an image nor an error.");
            _settledRows++;
        }
        if (!_itemDone[result.ItemId])
        {
            _itemDone[result.ItemId] = true;
            _itemsDone++;
            _leases.Remove(result.ItemId); // a re-issued copy still out is no longer needed; its results will be duplicates
        }
        if (_sink.Error is { } error && _status == JobStatus.Running)
        {
            _status = JobStatus.Failed;
            _pending.Clear();
            logger.LogError("Job {Job}: {Error}", this.GetPrimaryKeyString(), error);
            await Finish();
        }
        if (_status == JobStatus.Running && _itemsDone == _items.Count)
        {
            await _sink.DrainAsync();
            _status = _sink.Error is null ? JobStatus.Completed : JobStatus.Failed;
            await Finish();
        }
        return Progress();
    }

    public async Task<WorkItem?> CompleteAndLease(WorkResult result, string worker, SiloAddress workerSilo)
    {
        await Complete(result);
        return result.WorkerError is null ? await Lease(worker, workerSilo) : null;
    }

    private async Task CheckLeases(CancellationToken cancellationToken)
    {
        if (_status != JobStatus.Running || _spec is null) return;
        var now = DateTime.UtcNow;
        var snapshot = membership.CurrentSnapshot;
        foreach (var (item, lease) in _leases.ToArray())
        {
            bool siloGone = snapshot.GetSiloStatus(lease.Silo) is SiloStatus.Dead or SiloStatus.ShuttingDown or SiloStatus.Stopping;
            if (!siloGone && lease.Deadline > now) continue;
            _leases.Remove(item);
            if (_itemDone[item]) continue;
            _pending.Enqueue(item);
            _reissued++;
            logger.LogInformation("Job {Job}: item {Item} of {Worker} re-issued ({Reason}).", this.GetPrimaryKeyString(), item, lease.Worker,
                siloGone ? "its silo left the cluster" : "its lease timed out");
        }
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
        PendingItems = _status == JobStatus.Running ? _items.Count - _itemsDone - _leases.Count : 0, // an item not done is queued or leased
        InFlightItems = _leases.Count,
        ReissuedItems = _reissued,
        DuplicateRows = _duplicates,
        LastWorkerError = _lastWorkerError,
        PendingWrites = _sink?.PendingWrites ?? 0,
        SinkError = _sink?.Error,
        Host = silo.SiloAddress.ToString(),
    };

    private static void Validate(JobSpec spec)
    {
        if (spec.BatchSize < 1) throw new ArgumentException($"JobSpec.BatchSize is {spec.BatchSize}; it must be 1 or more.", nameof(spec));
        if (spec.LeaseTimeout <= TimeSpan.Zero) throw new ArgumentException($"JobSpec.LeaseTimeout is {spec.LeaseTimeout}; it must be positive.", nameof(spec));
        if (string.IsNullOrWhiteSpace(spec.OutputDirectory)) throw new ArgumentException("JobSpec.OutputDirectory is empty; name a folder every silo can write.", nameof(spec));
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

namespace MLNet.Diffusion.Orleans;

/// <summary>Where a job is.</summary>
public enum JobStatus
{
    /// <summary>No job was started under this id (or its grain lost its state: start it again to resume from the manifest).</summary>
    NotStarted,

    /// <summary>Rows are being generated.</summary>
    Running,

    /// <summary>Every row is committed or failed.</summary>
    Completed,

    /// <summary>Cancelled: no new item is handed out; items in flight are committed when they come back.</summary>
    Cancelled,

    /// <summary>The output folder could not be written (<see cref="JobProgress.SinkError"/> says why): no new item is handed out.</summary>
    Failed,
}

/// <summary>A snapshot of a job's progress.</summary>
[GenerateSerializer, Immutable]
public sealed class JobProgress
{
    /// <summary>The job's status.</summary>
    [Id(0)] public JobStatus Status { get; init; }

    /// <summary>Rows in the job.</summary>
    [Id(1)] public int TotalRows { get; init; }

    /// <summary>Rows whose image is in the sink (including those found there when the job started).</summary>
    [Id(2)] public int CommittedRows { get; init; }

    /// <summary>Rows that failed (recorded in <c>failures.csv</c>).</summary>
    [Id(3)] public int FailedRows { get; init; }

    /// <summary>Items waiting for a worker.</summary>
    [Id(4)] public int PendingItems { get; init; }

    /// <summary>Items leased to workers now.</summary>
    [Id(5)] public int InFlightItems { get; init; }

    /// <summary>Items handed out again because their lease timed out or their silo left the cluster.</summary>
    [Id(6)] public int ReissuedItems { get; init; }

    /// <summary>Row results that arrived for rows already committed (made twice after a re-issue) and were dropped.</summary>
    [Id(7)] public int DuplicateRows { get; init; }

    /// <summary>The last error a worker reported for the whole item (a model that does not load), or null.</summary>
    [Id(8)] public string? LastWorkerError { get; init; }

    /// <summary>The silo that holds the job.</summary>
    [Id(9)] public string Host { get; init; } = "";

    /// <summary>Rows accepted for the output folder and not yet on disk.</summary>
    [Id(10)] public int PendingWrites { get; init; }

    /// <summary>Why the output folder could not be written, naming it; null while it can.</summary>
    [Id(11)] public string? SinkError { get; init; }

    /// <summary>
    /// Counts the job grain's changes (results taken, status changes): <see cref="IGenerationJobGrain.WaitForProgress"/> with
    /// this value returns at the next change. Rows reaching the disk do not change it.
    /// </summary>
    [Id(12)] public long Version { get; init; }

    /// <summary>Whether the job is over: completed, failed, or cancelled with nothing in flight and everything taken written.</summary>
    public bool IsFinished => Status is JobStatus.Completed or JobStatus.Failed || (Status == JobStatus.Cancelled && InFlightItems == 0 && PendingWrites == 0);

    /// <inheritdoc />
    public override string ToString() =>
        $"{Status}: {CommittedRows}/{TotalRows} committed, {FailedRows} failed, {PendingItems} pending, {InFlightItems} in flight, {ReissuedItems} re-issued, {DuplicateRows} duplicate(s)";
}

using System.Collections;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// The sink of a job whose images go back to the caller (<see cref="JobSpec.ReturnToCaller"/>): each row's outcome (PNG or
/// error) is settled once, by a bit per row, and held in the job grain until the caller takes it
/// (<see cref="IGenerationJobGrain.TakeResults"/>). What is held and not acknowledged counts against
/// <see cref="JobSpec.MaxPendingWriteBytes"/>, so a caller that does not take its images slows the job instead of filling the
/// job silo's memory. Nothing is persisted: if the job's silo dies, the caller starts the job again with the rows it has not
/// received. Used on the job grain's turn only (not thread-safe).
/// </summary>
internal sealed class CallerSink(int tableRows) : IJobSink
{
    private readonly BitArray _committed = new(tableRows);
    private readonly BitArray _failed = new(tableRows);
    private readonly List<RowResult> _held = [];
    private int _dropped; // results acknowledged by the caller and dropped from the front of _held
    private long _heldBytes;

    public int CommittedCount { get; private set; }

    public int PendingWrites => 0;

    public long PendingBytes => _heldBytes;

    public string? Error => null;

    public int FailedCount { get; private set; }

    /// <summary>Results settled and not yet taken.</summary>
    public int HeldCount => _held.Count;

    public bool IsCommitted(int row) => _committed[row];

    public bool IsSettled(int row) => _committed[row] || _failed[row];

    public bool Commit(GenerationRow row, byte[] png, string settings, double seconds)
    {
        if (IsSettled(row.Row)) return false;
        _committed[row.Row] = true;
        CommittedCount++;
        _held.Add(new RowResult { Row = row.Row, Png = png, Seconds = seconds });
        _heldBytes += png.Length;
        return true;
    }

    public void Fail(GenerationRow row, string error)
    {
        if (IsSettled(row.Row)) return;
        _failed[row.Row] = true;
        FailedCount++;
        _held.Add(new RowResult { Row = row.Row, Error = error });
    }

    /// <summary>
    /// Drops the results the caller has (the first <paramref name="received"/> this sink settled) and returns the rest, still
    /// held: a result leaves the job only once the caller acknowledges it, so an answer lost on the way is sent again.
    /// </summary>
    public RowResult[] Take(int received)
    {
        int drop = Math.Clamp(received - _dropped, 0, _held.Count);
        for (int i = 0; i < drop; i++) _heldBytes -= _held[i].Png?.Length ?? 0;
        _held.RemoveRange(0, drop);
        _dropped += drop;
        return _held.Count == 0 ? [] : [.. _held];
    }

    public Task DrainAsync() => Task.CompletedTask;

    public void Dispose() { }
}

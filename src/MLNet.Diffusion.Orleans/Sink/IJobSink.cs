namespace MLNet.Diffusion.Orleans;

/// <summary>
/// Where a job grain puts its rows' outcomes: it decides, on the grain's turn, whether a row is settled (so each row is
/// committed exactly once however often it was made), and holds or writes what it accepted. A job writes to a folder
/// (<see cref="FolderSink"/>) or holds its images for the caller (<see cref="CallerSink"/>).
/// </summary>
internal interface IJobSink : IDisposable
{
    /// <summary>Rows committed (for a folder: on disk, including those found when opening; for the caller: accepted).</summary>
    int CommittedCount { get; }

    /// <summary>Rows accepted and not yet written (always 0 for the caller: nothing is written).</summary>
    int PendingWrites { get; }

    /// <summary>Image bytes the job's silo holds for the sink (not yet on disk, or not yet taken by the caller): the job hands out no item while this exceeds <see cref="JobSpec.MaxPendingWriteBytes"/>.</summary>
    long PendingBytes { get; }

    /// <summary>Why the sink stopped working, naming what failed; null while it works.</summary>
    string? Error { get; }

    /// <summary>Rows recorded as failed.</summary>
    int FailedCount { get; }

    /// <summary>Whether table row <paramref name="row"/> is committed.</summary>
    bool IsCommitted(int row);

    /// <summary>Whether table row <paramref name="row"/> is committed or failed.</summary>
    bool IsSettled(int row);

    /// <summary>Takes <paramref name="row"/>'s image unless the row is already settled; returns whether it took it.</summary>
    bool Commit(GenerationRow row, byte[] png, string settings, double seconds);

    /// <summary>Records <paramref name="row"/> as failed with <paramref name="error"/> unless it is already settled.</summary>
    void Fail(GenerationRow row, string error);

    /// <summary>Waits until everything accepted is written (at once when nothing is written).</summary>
    Task DrainAsync();
}

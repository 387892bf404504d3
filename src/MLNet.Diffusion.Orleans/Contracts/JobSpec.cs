namespace MLNet.Diffusion.Orleans;

/// <summary>A generation job over a table: its rows, settings, how they are split and where results go.</summary>
[GenerateSerializer, Immutable]
public sealed class JobSpec
{
    /// <summary>The table's rows (each with its own <see cref="GenerationRow.Row"/> index, unique within the job).</summary>
    [Id(0)] public GenerationRow[] Rows { get; init; } = [];

    /// <summary>The settings every row shares.</summary>
    [Id(1)] public JobSettings Settings { get; init; } = new();

    /// <summary>Rows per work item (one engine call, one UNet batch). Results do not depend on it.</summary>
    [Id(2)] public int BatchSize { get; init; } = 8;

    /// <summary>
    /// The output folder (empty when <see cref="ReturnToCaller"/>), on storage the job's silo can write: an image per row (written to a temporary file, flushed, then
    /// renamed) and <c>manifest.csv</c> in the CLI batch's format, a line appended and flushed per finished row; failed rows go
    /// to <c>failures.csv</c> (row, prompt, seed, error).
    /// </summary>
    [Id(3)] public string OutputDirectory { get; init; } = "";

    /// <summary>
    /// How long a worker may hold an item before it is handed to another (an item of a silo that membership declares dead is
    /// re-issued at once). It must exceed the time one batch takes on the slowest device.
    /// </summary>
    [Id(4)] public TimeSpan LeaseTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Image bytes the job's silo may hold for the output folder before it hands out more items (default 256 MiB): when the
    /// folder's storage is slower than the workers, the job slows to the storage's pace instead of filling its silo's memory.
    /// </summary>
    [Id(5)] public long MaxPendingWriteBytes { get; init; } = 256L << 20;

    /// <summary>
    /// Whether the rows' images go back to the caller instead of to <see cref="OutputDirectory"/> (which must then be empty):
    /// the job grain holds each row's outcome, committed exactly once, until the caller takes it with
    /// <see cref="IGenerationJobGrain.TakeResults"/>; held bytes count against <see cref="MaxPendingWriteBytes"/>. Nothing is
    /// persisted: a caller whose job lost its grain (its silo died) starts it again with the rows it has not received.
    /// </summary>
    [Id(6)] public bool ReturnToCaller { get; init; }
}

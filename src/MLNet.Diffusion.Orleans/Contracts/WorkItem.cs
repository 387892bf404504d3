namespace MLNet.Diffusion.Orleans;

/// <summary>A slice of a job's rows, leased to one worker: the unit that is handed out, timed out and re-issued.</summary>
[GenerateSerializer, Immutable]
public sealed class WorkItem
{
    /// <summary>The job it belongs to.</summary>
    [Id(0)] public string JobId { get; init; } = "";

    /// <summary>The item's number within the job.</summary>
    [Id(1)] public int ItemId { get; init; }

    /// <summary>The lease this copy was handed out under (a re-issued item gets a new one).</summary>
    [Id(2)] public long LeaseId { get; init; }

    /// <summary>The job's settings.</summary>
    [Id(3)] public JobSettings Settings { get; init; } = new();

    /// <summary>The rows to generate, in one engine call.</summary>
    [Id(4)] public GenerationRow[] Rows { get; init; } = [];
}

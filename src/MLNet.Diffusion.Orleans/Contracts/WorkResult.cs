namespace MLNet.Diffusion.Orleans;

/// <summary>What a worker sends back for a <see cref="WorkItem"/>.</summary>
[GenerateSerializer, Immutable]
public sealed class WorkResult
{
    /// <summary>The item.</summary>
    [Id(0)] public int ItemId { get; init; }

    /// <summary>The lease it was computed under.</summary>
    [Id(1)] public long LeaseId { get; init; }

    /// <summary>Set when the worker could not take the item at all (its model does not load): the item goes back to the queue.</summary>
    [Id(2)] public string? WorkerError { get; init; }

    /// <summary>The manifest's settings cell for these rows (see <see cref="JobSettings.Describe"/>).</summary>
    [Id(3)] public string SettingsText { get; init; } = "";

    /// <summary>One result per row of the item, in its order.</summary>
    [Id(4)] public RowResult[] Rows { get; init; } = [];

    /// <summary>The worker that made it (silo and slot), for progress reports.</summary>
    [Id(5)] public string Worker { get; init; } = "";
}

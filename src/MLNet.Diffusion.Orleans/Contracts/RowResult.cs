namespace MLNet.Diffusion.Orleans;

/// <summary>One row's outcome: its image as PNG bytes, or the message of why it failed.</summary>
[GenerateSerializer, Immutable]
public sealed class RowResult
{
    /// <summary>The table row.</summary>
    [Id(0)] public int Row { get; init; }

    /// <summary>The image, PNG-encoded; null when the row failed.</summary>
    [Id(1)] public byte[]? Png { get; init; }

    /// <summary>Why the row failed (the engine's message, naming the setting or model file); null when it succeeded.</summary>
    [Id(2)] public string? Error { get; init; }

    /// <summary>Seconds spent per image of the engine call that made it.</summary>
    [Id(3)] public double Seconds { get; init; }
}

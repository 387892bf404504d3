namespace MLNet.Diffusion.Denoising;

/// <summary>
/// The shape a <see cref="UNetBinding"/>'s buffers are made for: UNet batch, latent height and width, token positions,
/// conditioning width and the width of each extra input. Two bindings of equal shapes are interchangeable, which is what
/// lets the <see cref="UNet"/> hand a finished generation's binding to the next generation of that shape.
/// </summary>
internal readonly struct BindingShape(int batch, int height, int width, int sequenceLength, int embeddingWidth, int[] extraWidths)
    : IEquatable<BindingShape>
{
    private readonly int[] _extraWidths = [.. extraWidths];

    public int Batch { get; } = batch;
    public int Height { get; } = height;
    public int Width { get; } = width;
    public int SequenceLength { get; } = sequenceLength;
    public int EmbeddingWidth { get; } = embeddingWidth;

    /// <summary>The width of each extra input, in <see cref="UNet.Extras"/> order (a copy).</summary>
    public int[] ExtraWidths => [.. _extraWidths];

    /// <inheritdoc />
    public bool Equals(BindingShape other) =>
        Batch == other.Batch && Height == other.Height && Width == other.Width && SequenceLength == other.SequenceLength
        && EmbeddingWidth == other.EmbeddingWidth && _extraWidths.AsSpan().SequenceEqual(other._extraWidths);

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is BindingShape other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Batch, Height, Width, SequenceLength, EmbeddingWidth, _extraWidths.Length);

    /// <inheritdoc />
    public override string ToString() =>
        $"[{Batch}, {Height}, {Width}; {SequenceLength} × {EmbeddingWidth}{(_extraWidths.Length == 0 ? "" : "; extras " + string.Join(", ", _extraWidths))}]";
}

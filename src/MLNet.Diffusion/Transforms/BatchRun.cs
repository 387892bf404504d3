using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// The run-time side of one batch: the options' cancellation token, and their progress sink wrapped so that the
/// engine's reports carry the batch's first row and size. Made per batch, so concurrent cursors never share one.
/// </summary>
internal sealed class BatchRun
{
    private BatchRun(CancellationToken cancellationToken, IProgress<DiffusionProgress>? progress)
    {
        CancellationToken = cancellationToken;
        Progress = progress;
    }

    /// <summary>Cancels the batch's model calls (checked before each, and passed to ONNX Runtime).</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>Receives the engine's reports for this batch; null when the options have no progress sink.</summary>
    public IProgress<DiffusionProgress>? Progress { get; }

    /// <summary>The context of a batch of <paramref name="slots"/> under <paramref name="options"/>.</summary>
    public static BatchRun For(IReadOnlyList<ImageSlot> slots, DiffusionOptions options) =>
        new(options.CancellationToken, options.Progress is { } sink && slots.Count > 0 ? new Relay(sink, slots[0].Row, slots.Count) : null);

    private sealed class Relay(IProgress<DiffusionBatchProgress> sink, long firstRow, int images) : IProgress<DiffusionProgress>
    {
        public void Report(DiffusionProgress value) => sink.Report(new DiffusionBatchProgress(firstRow, images, value));
    }
}

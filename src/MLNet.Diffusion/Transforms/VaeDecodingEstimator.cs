using Microsoft.ML;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion;

/// <summary>
/// The VAE-decoding stage: latents (Single vectors of 4·h·w) → images. Made by <c>mlContext.Transforms.DecodeLatents</c>.
/// The latents may come from <see cref="DenoisingTransformer"/> or from anywhere else (stored, edited, interpolated).
/// </summary>
public sealed class VaeDecodingEstimator : DiffusionEstimatorBase<VaeDecodingTransformer>
{
    private readonly string _latentsColumn;
    private readonly string _outputColumn;

    internal VaeDecodingEstimator(DiffusionHost host, DiffusionOptions options, string latentsColumn, string outputColumn)
        : base(host, options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(latentsColumn);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputColumn);
        _latentsColumn = latentsColumn;
        _outputColumn = outputColumn;
    }

    private protected override IEnumerable<InputColumn> ShapeInputs => [InputColumn.Vector(InputRole.Latents, _latentsColumn)];

    private protected override IEnumerable<SchemaShape.Column> ShapeOutputs => [ImageShape(_outputColumn)];

    private protected override VaeDecodingTransformer CreateTransformer() =>
        WithLease(lease => new VaeDecodingTransformer(lease, Settings, _latentsColumn, _outputColumn));

    internal VaeDecodingTransformer CreateForLoad() => CreateTransformer();
}

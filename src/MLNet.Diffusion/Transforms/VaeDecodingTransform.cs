using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
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

/// <summary>
/// Decodes each row's latents (Single vector of 4·h·w, scaled as the UNet sees them) with the model's VAE decoder into
/// an image column of <see cref="ImageDataViewType"/> holding RGBA <see cref="MLImage"/>s, which ML.NET's image
/// transforms (<c>ResizeImages</c>, <c>ExtractPixels</c>, …) take. Row-to-row; lazy; batches of
/// <see cref="DiffusionOptions.BatchSize"/>. Each getter call returns a new <see cref="MLImage"/>, which the caller
/// owns; as ML.NET's own image getters do, the getter disposes the image passed back in to it.
/// </summary>
public sealed class VaeDecodingTransformer : DiffusionTransformerBase
{
    internal VaeDecodingTransformer(ModelLease lease, DiffusionOptions options, string latentsColumn, string outputColumn)
        : base(lease, options)
    {
        LatentsColumnName = latentsColumn;
        OutputColumnName = outputColumn;
        Inputs = [InputColumn.Vector(InputRole.Latents, latentsColumn, Generation.LatentDimensions)];
        Outputs = [new OutputColumn(OutputRole.Image, outputColumn, new ImageDataViewType(Generation.Height, Generation.Width))];
    }

    /// <summary>The latents column.</summary>
    public string LatentsColumnName { get; }

    /// <summary>The image column.</summary>
    public string OutputColumnName { get; }

    internal override IReadOnlyList<InputColumn> Inputs { get; }

    internal override IReadOnlyList<OutputColumn> Outputs { get; }

    /// <summary>Decodes a batch of latents.</summary>
    internal ImagePixels[] Decode(IReadOnlyList<float[]> latents, BatchRun run) => Generation.Decode(latents, run);

    internal override SlotOutputs[] Compute(IReadOnlyList<ImageSlot> slots, OutputSet needed) =>
        Decode(slots.Select(s => s.Inputs.Latents!).ToArray(), BatchRun.For(slots, Settings)).Select(image => new SlotOutputs { Image = image }).ToArray();

    internal override SavedTransformer ToSaved() => new()
    {
        Stage = nameof(VaeDecodingTransformer),
        Options = Options,
        Columns = new() { ["latents"] = LatentsColumnName, ["output"] = OutputColumnName },
    };

    internal static VaeDecodingTransformer FromSaved(DiffusionHost host, SavedTransformer saved) =>
        new VaeDecodingEstimator(host, saved.Options, saved.Columns["latents"]!, saved.Columns["output"]!).CreateForLoad();
}

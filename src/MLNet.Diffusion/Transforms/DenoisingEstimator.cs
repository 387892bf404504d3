using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion;

/// <summary>
/// The denoising stage: text embeddings (+ seed, guidance, steps columns) → latents (Single vectors of 4·h·w).
/// Made by <c>mlContext.Transforms.DenoiseLatents</c>.
/// </summary>
public sealed class DenoisingEstimator : DiffusionEstimatorBase<DenoisingTransformer>
{
    private readonly string _embeddingColumn;
    private readonly string? _negativeEmbeddingColumn;
    private readonly string _outputColumn;

    internal DenoisingEstimator(DiffusionHost host, DiffusionOptions options, string embeddingColumn,
        string? negativeEmbeddingColumn, string outputColumn)
        : base(host, options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(embeddingColumn);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputColumn);
        _embeddingColumn = embeddingColumn;
        _negativeEmbeddingColumn = negativeEmbeddingColumn;
        _outputColumn = outputColumn;
    }

    private protected override IEnumerable<InputColumn> ShapeInputs
    {
        get
        {
            yield return InputColumn.Vector(InputRole.PromptEmbedding, _embeddingColumn);
            if (_negativeEmbeddingColumn is not null) yield return InputColumn.Vector(InputRole.NegativeEmbedding, _negativeEmbeddingColumn);
            foreach (var column in GenerationInputs()) yield return column;
        }
    }

    private protected override IEnumerable<SchemaShape.Column> ShapeOutputs =>
        [SchemaShapeColumns.Vector(_outputColumn, NumberDataViewType.Single), .. ImageIndexShape()];

    private protected override DenoisingTransformer CreateTransformer() =>
        WithLease(lease => new DenoisingTransformer(lease, Settings, _embeddingColumn, _negativeEmbeddingColumn, _outputColumn));

    internal DenoisingTransformer CreateForLoad() => CreateTransformer();
}

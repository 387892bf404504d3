using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion;

/// <summary>
/// The text-encoding stage: prompt (and negative prompt) text → embeddings (Single vectors of 77·D).
/// Made by <c>mlContext.Transforms.EncodePrompts</c>.
/// </summary>
public sealed class TextEncodingEstimator : DiffusionEstimatorBase<TextEncodingTransformer>
{
    private readonly string _promptColumn;
    private readonly string _outputColumn;
    private readonly string? _negativeOutputColumn;

    internal TextEncodingEstimator(DiffusionHost host, DiffusionOptions options, string promptColumn,
        string outputColumn, string? negativeOutputColumn)
        : base(host, options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(promptColumn);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputColumn);
        _promptColumn = promptColumn;
        _outputColumn = outputColumn;
        _negativeOutputColumn = negativeOutputColumn;
    }

    private protected override IEnumerable<InputColumn> ShapeInputs
    {
        get
        {
            yield return InputColumn.Text(InputRole.Prompt, _promptColumn);
            if (Settings.NegativePromptColumnName is { } negative) yield return InputColumn.Text(InputRole.NegativePrompt, negative);
        }
    }

    private protected override IEnumerable<SchemaShape.Column> ShapeOutputs
    {
        get
        {
            yield return SchemaShapeColumns.Vector(_outputColumn, NumberDataViewType.Single);
            if (_negativeOutputColumn is not null) yield return SchemaShapeColumns.Vector(_negativeOutputColumn, NumberDataViewType.Single);
        }
    }

    private protected override TextEncodingTransformer CreateTransformer() =>
        WithLease(lease => new TextEncodingTransformer(lease, Settings, _promptColumn, _outputColumn, _negativeOutputColumn));

    internal TextEncodingTransformer CreateForLoad() => CreateTransformer();
}

using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// Text-to-image generation in an ML.NET pipeline: a prompt column in, an image column out
/// (<c>mlContext.Transforms.GenerateImages</c>, or <c>.Append(new DiffusionEstimator(mlContext, options))</c>).
/// Fitting trains nothing: it loads the model and checks the input schema. See <see cref="DiffusionTransformer"/>.
/// </summary>
public sealed class DiffusionEstimator : DiffusionEstimatorBase<DiffusionTransformer>
{
    private readonly string _promptColumn;
    private readonly string _outputColumn;

    /// <summary>Creates the estimator.</summary>
    /// <param name="context">The ML.NET context: its <c>GpuDeviceId</c> and <c>FallbackToCpu</c> choose the device (unless the options do), and its log receives the engine's messages.</param>
    /// <param name="options">Model folder, generation settings and per-row columns.</param>
    /// <param name="promptColumn">The text column of prompts.</param>
    /// <param name="outputColumn">The image column.</param>
    /// <exception cref="ArgumentException">A setting is out of range (named in the message).</exception>
    /// <exception cref="FileNotFoundException">The model folder lacks a component (named in the message).</exception>
    public DiffusionEstimator(MLContext context, DiffusionOptions options, string promptColumn = DiffusionColumnNames.Prompt, string outputColumn = DiffusionColumnNames.Image)
        : this(DiffusionHost.From(context), options, promptColumn, outputColumn)
    {
    }

    internal DiffusionEstimator(DiffusionHost host, DiffusionOptions options, string promptColumn, string outputColumn)
        : base(host, options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(promptColumn);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputColumn);
        _promptColumn = promptColumn;
        _outputColumn = outputColumn;
    }

    private protected override IEnumerable<InputColumn> ShapeInputs
    {
        get
        {
            yield return InputColumn.Text(InputRole.Prompt, _promptColumn);
            if (Settings.NegativePromptColumnName is { } negative) yield return InputColumn.Text(InputRole.NegativePrompt, negative);
            foreach (var column in GenerationInputs()) yield return column;
        }
    }

    private protected override IEnumerable<SchemaShape.Column> ShapeOutputs
    {
        get
        {
            if (Settings.PromptEmbeddingColumnName is { } embedding) yield return SchemaShapeColumns.Vector(embedding, NumberDataViewType.Single);
            if (Settings.LatentsColumnName is { } latents) yield return SchemaShapeColumns.Vector(latents, NumberDataViewType.Single);
            yield return ImageShape(_outputColumn);
            foreach (var column in ImageIndexShape()) yield return column;
        }
    }

    private protected override DiffusionTransformer CreateTransformer()
    {
        // The stages are internal to the composite; their column names are never bound.
        var stages = new List<DiffusionTransformerBase>();
        try
        {
            var text = WithLease(lease => new TextEncodingTransformer(lease, Settings, _promptColumn, DiffusionColumnNames.PromptEmbedding, DiffusionColumnNames.NegativePromptEmbedding));
            stages.Add(text);
            var denoising = WithLease(lease => new DenoisingTransformer(lease, Settings, DiffusionColumnNames.PromptEmbedding, DiffusionColumnNames.NegativePromptEmbedding, DiffusionColumnNames.Latents));
            stages.Add(denoising);
            var decoding = WithLease(lease => new VaeDecodingTransformer(lease, Settings, DiffusionColumnNames.Latents, _outputColumn));
            stages.Add(decoding);
            return WithLease(lease => new DiffusionTransformer(lease, Settings, _promptColumn, _outputColumn, text, denoising, decoding));
        }
        catch
        {
            foreach (var stage in stages) stage.Dispose();
            throw;
        }
    }

    internal DiffusionTransformer CreateForLoad() => CreateTransformer();
}

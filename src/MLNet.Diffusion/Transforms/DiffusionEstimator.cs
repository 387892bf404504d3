using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion;

/// <summary>
/// Text-to-image generation in an ML.NET pipeline: a prompt column in, an image column out
/// (<c>mlContext.Transforms.GenerateImages</c>, or <c>.Append(new DiffusionEstimator())</c>).
/// Fitting trains nothing: it loads the model and checks the input schema. See <see cref="DiffusionTransformer"/>.
/// </summary>
public sealed class DiffusionEstimator : DiffusionEstimatorBase<DiffusionTransformer>
{
    private readonly string _promptColumn;
    private readonly string _outputColumn;

    /// <summary>
    /// Generates the <c>Image</c> column from the <c>Prompt</c> column with the built-in demo model (built on first use into
    /// <see cref="DemoModel.Directory"/>) and the default settings: <c>pipeline.Append(new DiffusionEstimator())</c>.
    /// </summary>
    public DiffusionEstimator()
        : this(new DiffusionOptions())
    {
    }

    /// <summary>Generates the <c>Image</c> column from the <c>Prompt</c> column with <paramref name="options"/>, in a new
    /// <see cref="MLContext"/> (CPU, unless the options name a GPU).</summary>
    /// <param name="options">Model folder (null: the demo model), generation settings and per-row columns.</param>
    /// <exception cref="ArgumentException">A setting is out of range (named in the message).</exception>
    /// <exception cref="FileNotFoundException">The model folder lacks a component (named in the message).</exception>
    public DiffusionEstimator(DiffusionOptions options)
        : this(DiffusionHost.From(new MLContext()), options, DiffusionColumnNames.Prompt, DiffusionColumnNames.Image)
    {
    }

    /// <summary>Generates <paramref name="outputColumnName"/> from <paramref name="inputColumnName"/> in <paramref name="context"/>.</summary>
    /// <param name="context">The ML.NET context: its <c>GpuDeviceId</c> and <c>FallbackToCpu</c> choose the device (unless the options do), and its log receives the engine's messages.</param>
    /// <param name="outputColumnName">The image column.</param>
    /// <param name="inputColumnName">The text column of prompts.</param>
    /// <param name="options">Model folder (null: the demo model), generation settings and per-row columns; null for the defaults.</param>
    /// <exception cref="ArgumentException">A setting is out of range (named in the message).</exception>
    /// <exception cref="FileNotFoundException">The model folder lacks a component (named in the message).</exception>
    public DiffusionEstimator(MLContext context, string outputColumnName = DiffusionColumnNames.Image, string inputColumnName = DiffusionColumnNames.Prompt,
        DiffusionOptions? options = null)
        : this(DiffusionHost.From(context), options ?? new DiffusionOptions(), inputColumnName, outputColumnName)
    {
    }

    /// <summary>Generates the <c>Image</c> column from the <c>Prompt</c> column in <paramref name="context"/> with <paramref name="options"/>.</summary>
    /// <param name="context">The ML.NET context (device settings and log).</param>
    /// <param name="options">Model folder (null: the demo model), generation settings and per-row columns.</param>
    public DiffusionEstimator(MLContext context, DiffusionOptions options)
        : this(context, DiffusionColumnNames.Image, DiffusionColumnNames.Prompt, options)
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

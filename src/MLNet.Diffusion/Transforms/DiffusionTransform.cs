using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using Microsoft.ML;
using MLNet.Diffusion.TextEncoding;
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

/// <summary>
/// Text-to-image generation as one transform: prompt text (+ optional negative prompt, seed, guidance and steps
/// columns) → an image column. It chains its three stages (<see cref="TextEncoding"/>, <see cref="Denoising"/>,
/// <see cref="Decoding"/>) batch by batch, end to end: for each batch of <see cref="DiffusionOptions.BatchSize"/>
/// images the prompts are encoded, denoised and decoded in memory, and the embeddings and latents become output
/// columns only when <see cref="DiffusionOptions.PromptEmbeddingColumnName"/> or
/// <see cref="DiffusionOptions.LatentsColumnName"/> name them. Nothing is generated for cursors that do not read a
/// generated column.
/// </summary>
/// <remarks>
/// With <see cref="DiffusionOptions.ImagesPerPrompt"/> = k &gt; 1 the output has k rows per input row (input values
/// repeated, <see cref="DiffusionOptions.ImageIndexColumnName"/> = 0 … k − 1) and the transform is not row-to-row.
/// Seeds follow the formula in <see cref="DiffusionOptions"/>.
/// </remarks>
public sealed class DiffusionTransformer : DiffusionTransformerBase
{
    internal DiffusionTransformer(ModelLease lease, DiffusionOptions options, string promptColumn, string outputColumn,
        TextEncodingTransformer textEncoding, DenoisingTransformer denoising, VaeDecodingTransformer decoding)
        : base(lease, options)
    {
        PromptColumnName = promptColumn;
        OutputColumnName = outputColumn;
        TextEncoding = textEncoding;
        Denoising = denoising;
        Decoding = decoding;
        var inputs = new List<InputColumn> { InputColumn.Text(InputRole.Prompt, promptColumn) };
        if (options.NegativePromptColumnName is { } negative) inputs.Add(InputColumn.Text(InputRole.NegativePrompt, negative));
        if (options.SeedColumnName is { } seed) inputs.Add(InputColumn.Seed(seed));
        if (options.GuidanceScaleColumnName is { } guidance) inputs.Add(InputColumn.Single(InputRole.GuidanceScale, guidance));
        if (options.StepsColumnName is { } steps) inputs.Add(InputColumn.Int32(InputRole.Steps, steps));
        inputs.AddRange(InputColumn.ImageToImage(options));
        inputs.AddRange(InputColumn.Control(options));
        Inputs = inputs;
        var outputs = new List<OutputColumn>();
        if (options.PromptEmbeddingColumnName is { } embedding)
        {
            outputs.Add(new(OutputRole.PromptEmbedding, embedding, new VectorDataViewType(NumberDataViewType.Single, Generation.EmbeddingDimensions)));
            if (Generation.HasPooled) // SDXL: the pooled embedding goes with it, as EncodePrompts writes it
                outputs.Add(new(OutputRole.PooledEmbedding, DiffusionOptions.PooledColumnOf(options.PooledEmbeddingColumnName, embedding),
                    new VectorDataViewType(NumberDataViewType.Single, Generation.PooledWidth)));
        }
        if (options.LatentsColumnName is { } latents)
            outputs.Add(new(OutputRole.Latents, latents, new VectorDataViewType(NumberDataViewType.Single, Generation.LatentDimensions)));
        outputs.Add(new(OutputRole.Image, outputColumn, new ImageDataViewType(Generation.Height, Generation.Width)));
        outputs.AddRange(ImageIndexColumn());
        Outputs = outputs;
    }

    /// <summary>The text column of prompts.</summary>
    public string PromptColumnName { get; }

    /// <summary>The image column.</summary>
    public string OutputColumnName { get; }

    /// <summary>The text-encoding stage.</summary>
    public TextEncodingTransformer TextEncoding { get; }

    /// <summary>The denoising stage.</summary>
    public DenoisingTransformer Denoising { get; }

    /// <summary>The VAE-decoding stage.</summary>
    public VaeDecodingTransformer Decoding { get; }

    internal override int ImagesPerRow => Settings.ImagesPerPrompt;

    internal override IReadOnlyList<InputColumn> Inputs { get; }

    internal override IReadOnlyList<OutputColumn> Outputs { get; }

    internal override SlotOutputs[] Compute(IReadOnlyList<ImageSlot> slots, OutputSet needed)
    {
        var run = BatchRun.For(slots, Settings);
        if ((needed & (OutputSet.Latents | OutputSet.Image)) != 0)
            return Generation.Generate(slots, decode: needed.HasFlag(OutputSet.Image), run);
        // Only the prompt embeddings: no setting is read and nothing is denoised.
        var encoded = Generation.Encode([.. slots.Select(s => s.Inputs.Prompt)], [.. slots.Select(s => TextOwner.PromptOf(Generation.RowName(s)))], run);
        return [.. encoded.Select(e => new SlotOutputs { PromptEmbedding = e.Hidden, PooledEmbedding = e.Pooled })];
    }

    internal override SavedTransformer ToSaved() => new()
    {
        Stage = nameof(DiffusionTransformer),
        Options = Options,
        Columns = new() { ["prompt"] = PromptColumnName, ["output"] = OutputColumnName },
    };

    internal static DiffusionTransformer FromSaved(DiffusionHost host, SavedTransformer saved) =>
        new DiffusionEstimator(host, saved.Options, saved.Columns["prompt"]!, saved.Columns["output"]!).CreateForLoad();

    /// <summary>Releases this transformer's and its stages' hold on the model.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            TextEncoding.Dispose();
            Denoising.Dispose();
            Decoding.Dispose();
        }
        base.Dispose(disposing);
    }
}

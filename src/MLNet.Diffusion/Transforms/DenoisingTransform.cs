using Microsoft.ML.Data;
using Microsoft.ML;
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

/// <summary>
/// Runs the denoising loop (UNet + scheduler, classifier-free guidance) from each row's text embeddings and seed to
/// final latents, a Single vector of 4·h·w values (<c>[4, h, w]</c>, h and w the image size ÷ 8; scaled as the UNet sees
/// them). Images are generated <see cref="DiffusionOptions.BatchSize"/> per UNet batch, lazily. With
/// <see cref="DiffusionOptions.ImagesPerPrompt"/> = k &gt; 1 the output has k rows per input row and an image-index
/// column, and the transform is not row-to-row.
/// </summary>
public sealed class DenoisingTransformer : DiffusionTransformerBase
{
    internal DenoisingTransformer(ModelLease lease, DiffusionOptions options, string embeddingColumn, string? negativeEmbeddingColumn, string outputColumn)
        : base(lease, options)
    {
        EmbeddingColumnName = embeddingColumn;
        NegativeEmbeddingColumnName = negativeEmbeddingColumn;
        OutputColumnName = outputColumn;
        var dims = Generation.EmbeddingDimensions;
        var inputs = new List<InputColumn> { InputColumn.Vector(InputRole.PromptEmbedding, embeddingColumn, dims) };
        if (negativeEmbeddingColumn is not null) inputs.Add(InputColumn.Vector(InputRole.NegativeEmbedding, negativeEmbeddingColumn, dims));
        if (Generation.HasPooled)
        {
            // The UNet takes a pooled text embedding (SDXL): each embeddings column comes with its pooled column.
            PooledEmbeddingColumnName = DiffusionOptions.PooledColumnOf(options.PooledEmbeddingColumnName, embeddingColumn);
            inputs.Add(PooledInput(InputRole.PooledEmbedding, PooledEmbeddingColumnName, embeddingColumn, nameof(DiffusionOptions.PooledEmbeddingColumnName)));
            if (negativeEmbeddingColumn is not null)
            {
                NegativePooledEmbeddingColumnName = DiffusionOptions.PooledColumnOf(options.NegativePooledEmbeddingColumnName, negativeEmbeddingColumn);
                inputs.Add(PooledInput(InputRole.NegativePooledEmbedding, NegativePooledEmbeddingColumnName, negativeEmbeddingColumn, nameof(DiffusionOptions.NegativePooledEmbeddingColumnName)));
            }
        }
        if (options.SeedColumnName is { } seed) inputs.Add(InputColumn.Seed(seed));
        if (options.GuidanceScaleColumnName is { } guidance) inputs.Add(InputColumn.Single(InputRole.GuidanceScale, guidance));
        if (options.StepsColumnName is { } steps) inputs.Add(InputColumn.Int32(InputRole.Steps, steps));
        inputs.AddRange(InputColumn.ImageToImage(options));
        inputs.AddRange(InputColumn.Control(options));
        Inputs = inputs;
        Outputs = [new OutputColumn(OutputRole.Latents, outputColumn, new VectorDataViewType(NumberDataViewType.Single, Generation.LatentDimensions)), .. ImageIndexColumn()];
    }

    /// <summary>The prompt embeddings column.</summary>
    public string EmbeddingColumnName { get; }

    /// <summary>The negative-prompt embeddings column, or null to use the empty prompt's embeddings.</summary>
    public string? NegativeEmbeddingColumnName { get; }

    /// <summary>The latents column.</summary>
    public string OutputColumnName { get; }

    /// <summary>The pooled prompt embeddings column, read when the model's UNet takes a pooled text embedding (SDXL); else null.</summary>
    public string? PooledEmbeddingColumnName { get; }

    /// <summary>The pooled negative-prompt embeddings column, read with <see cref="NegativeEmbeddingColumnName"/> when the model's UNet takes a pooled text embedding; else null.</summary>
    public string? NegativePooledEmbeddingColumnName { get; }

    private InputColumn PooledInput(InputRole role, string name, string embeddingColumn, string option) =>
        InputColumn.Vector(role, name, Generation.PooledWidth).WithHint(
            $"The model '{Pipeline.Folder.Directory}' has a UNet that takes a pooled text embedding (SDXL), so the embeddings in column '{embeddingColumn}' " +
            $"need their pooled embeddings beside them: EncodePrompts writes them to '{name}' with the same DiffusionOptions, " +
            $"or name the column that holds them with DiffusionOptions.{option}");

    /// <summary>The latents' size: 4·h·w.</summary>
    public int LatentSize => Generation.LatentChannels * Generation.LatentHeight * Generation.LatentWidth;

    internal override int ImagesPerRow => Settings.ImagesPerPrompt;

    internal override IReadOnlyList<InputColumn> Inputs { get; }

    internal override IReadOnlyList<OutputColumn> Outputs { get; }

    internal override SlotOutputs[] Compute(IReadOnlyList<ImageSlot> slots, OutputSet needed) =>
        [.. Generation.Denoise(slots, BatchRun.For(slots, Settings)).Select(latents => new SlotOutputs { Latents = latents })];

    internal override SavedTransformer ToSaved() => new()
    {
        Stage = nameof(DenoisingTransformer),
        Options = Options,
        Columns = new() { ["embedding"] = EmbeddingColumnName, ["negativeEmbedding"] = NegativeEmbeddingColumnName, ["output"] = OutputColumnName },
    };

    internal static DenoisingTransformer FromSaved(DiffusionHost host, SavedTransformer saved) =>
        new DenoisingEstimator(host, saved.Options, saved.Columns["embedding"]!, saved.Columns["negativeEmbedding"], saved.Columns["output"]!).CreateForLoad();
}

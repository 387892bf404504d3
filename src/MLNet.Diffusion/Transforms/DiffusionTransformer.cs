using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion;

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
        Inputs = inputs;
        var outputs = new List<OutputColumn>();
        if (options.PromptEmbeddingColumnName is { } embedding)
            outputs.Add(new(OutputRole.PromptEmbedding, embedding, new VectorDataViewType(NumberDataViewType.Single, Generation.EmbeddingDimensions)));
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
        var encoded = Generation.Encode([.. slots.Select(s => s.Inputs.Prompt)], run);
        return [.. encoded.Select(e => new SlotOutputs { PromptEmbedding = e })];
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

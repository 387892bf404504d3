using Microsoft.ML.Data;
using Microsoft.ML;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.TextEncoding;
using MLNet.Diffusion.Transforms;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion;

/// <summary>
/// The text-encoding stage: prompt (and negative prompt) text → embeddings (Single vectors of 77·D) and, for models
/// whose UNet takes a pooled text embedding (SDXL), pooled embeddings (Single vectors of P).
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

/// <summary>
/// Encodes each row's prompt (and negative prompt) with the model's CLIP text encoder(s) into a Single vector of 77·D
/// values (<c>[77, D]</c>, D = 768 for SD 1.x, 1024 for SD 2.x, 768 + 1280 = 2048 for SDXL, whose two encoders' states
/// are concatenated, 1280 for its refiner). For models whose UNet takes a pooled text embedding (SDXL) it also writes
/// each embeddings column's pooled embedding, a Single vector of P (1280), under
/// <see cref="DiffusionOptions.PooledEmbeddingColumnName"/> and <see cref="DiffusionOptions.NegativePooledEmbeddingColumnName"/>
/// (by default the embeddings column's name followed by "Pooled"). Row-to-row; rows are encoded
/// <see cref="DiffusionOptions.BatchSize"/> at a time, lazily. The embeddings can be cached or stored and fed to
/// <see cref="DenoisingTransformer"/> later.
/// </summary>
public sealed class TextEncodingTransformer : DiffusionTransformerBase
{
    internal TextEncodingTransformer(ModelLease lease, DiffusionOptions options, string promptColumn, string outputColumn, string? negativeOutputColumn)
        : base(lease, options)
    {
        PromptColumnName = promptColumn;
        OutputColumnName = outputColumn;
        NegativeOutputColumnName = negativeOutputColumn;
        var dims = Generation.EmbeddingDimensions;
        var type = new VectorDataViewType(NumberDataViewType.Single, dims);
        var inputs = new List<InputColumn> { InputColumn.Text(InputRole.Prompt, promptColumn) };
        if (options.NegativePromptColumnName is { } negative) inputs.Add(InputColumn.Text(InputRole.NegativePrompt, negative));
        Inputs = inputs;
        var outputs = new List<OutputColumn> { new(OutputRole.PromptEmbedding, outputColumn, type) };
        if (negativeOutputColumn is not null) outputs.Add(new(OutputRole.NegativeEmbedding, negativeOutputColumn, type));
        if (Generation.HasPooled)
        {
            var pooled = new VectorDataViewType(NumberDataViewType.Single, Generation.PooledWidth);
            PooledOutputColumnName = DiffusionOptions.PooledColumnOf(options.PooledEmbeddingColumnName, outputColumn);
            outputs.Add(new(OutputRole.PooledEmbedding, PooledOutputColumnName, pooled));
            if (negativeOutputColumn is not null)
            {
                NegativePooledOutputColumnName = DiffusionOptions.PooledColumnOf(options.NegativePooledEmbeddingColumnName, negativeOutputColumn);
                outputs.Add(new(OutputRole.NegativePooledEmbedding, NegativePooledOutputColumnName, pooled));
            }
        }
        Outputs = outputs;
    }

    /// <summary>The text column of prompts.</summary>
    public string PromptColumnName { get; }

    /// <summary>The prompt embeddings column.</summary>
    public string OutputColumnName { get; }

    /// <summary>The negative-prompt embeddings column (the empty prompt's embeddings where no negative prompt column is given), or null when not produced.</summary>
    public string? NegativeOutputColumnName { get; }

    /// <summary>The pooled prompt embeddings column, written when the model's UNet takes a pooled text embedding (SDXL); else null.</summary>
    public string? PooledOutputColumnName { get; }

    /// <summary>The pooled negative-prompt embeddings column, written with <see cref="NegativeOutputColumnName"/> when the model's UNet takes a pooled text embedding; else null.</summary>
    public string? NegativePooledOutputColumnName { get; }

    /// <summary>The pooled embeddings' size P (1280 for SDXL), or 0 when the model has none.</summary>
    public int PooledEmbeddingSize => Generation.PooledWidth;

    /// <summary>The embeddings' size: 77·D.</summary>
    public int EmbeddingSize => Generation.SequenceLength * Generation.EmbeddingWidth;

    internal override IReadOnlyList<InputColumn> Inputs { get; }

    internal override IReadOnlyList<OutputColumn> Outputs { get; }

    /// <summary>
    /// Prompt editing and alternation (<c>[from:to:when]</c>, <c>[a|b]</c>) change the conditioning from one UNet call to the
    /// next, which one embedding per row cannot hold: this stage refuses them, naming the column and row, rather than
    /// encoding their brackets as emphasis. The whole <c>GenerateImages</c> stage follows such schedules.
    /// </summary>
    private void RefuseScheduledPrompts(IReadOnlyList<ImageSlot> slots, bool prompts, IReadOnlyList<ImageSlot> negativeSlots)
    {
        foreach (var (column, slot, text) in (prompts ? slots.Select(s => (PromptColumnName, s, s.Inputs.Prompt)) : [])
                     .Concat(negativeSlots.Select(s => (Settings.NegativePromptColumnName!, s, s.Inputs.NegativePrompt!))))
        {
            if (!PromptSchedule.IsScheduled(text)) continue;
            string row = Generation.RowName(slot);
            throw new ArgumentException(
                    $"{char.ToUpperInvariant(row[0])}{row[1..]}: the text in column '{column}' uses prompt editing or alternation (\"{text}\"), which changes the " +
                    "conditioning during denoising; the text-encoding stage makes one embedding per row. Generate with the GenerateImages stage, " +
                    "which encodes and denoises together and follows the schedule, or write a literal bracket as \\[ and \\].");
        }
    }

    internal override SlotOutputs[] Compute(IReadOnlyList<ImageSlot> slots, OutputSet needed)
    {
        var result = slots.Select(_ => new SlotOutputs()).ToArray();
        bool prompts = needed.HasFlag(OutputSet.PromptEmbedding);
        bool negatives = needed.HasFlag(OutputSet.NegativeEmbedding) && Settings.NegativePromptColumnName is not null;
        // Prompts and negative prompts in one text-encoder run (each distinct text once).
        var texts = new List<string>();
        var owners = new List<TextOwner>();
        if (prompts)
        {
            texts.AddRange(slots.Select(s => s.Inputs.Prompt));
            owners.AddRange(slots.Select(s => TextOwner.PromptOf(Generation.RowName(s))));
        }
        // An empty negative prompt is no negative prompt: the model's unconditional default, as the engine takes it
        // (the empty prompt's embeddings, or zeros when the folder sets force_zeros_for_empty_prompt).
        var negativeSlots = negatives ? slots.Where(s => !StableDiffusionPipeline.IsNoNegativePrompt(s.Inputs.NegativePrompt)).ToArray() : [];
        texts.AddRange(negativeSlots.Select(s => s.Inputs.NegativePrompt));
        owners.AddRange(negativeSlots.Select(s => TextOwner.NegativePromptOf(Generation.RowName(s))));
        RefuseScheduledPrompts(slots, prompts, negativeSlots);
        var encoded = Generation.Encode(texts, owners, BatchRun.For(slots, Settings));
        int negative = prompts ? result.Length : 0;
        for (int i = 0; i < result.Length; i++)
        {
            if (prompts)
            {
                result[i].PromptEmbedding = encoded[i].Hidden;
                result[i].PooledEmbedding = encoded[i].Pooled;
            }
            if (needed.HasFlag(OutputSet.NegativeEmbedding))
            {
                var e = negatives && !StableDiffusionPipeline.IsNoNegativePrompt(slots[i].Inputs.NegativePrompt) ? encoded[negative++] : Generation.UnconditionalEmbedding;
                result[i].NegativeEmbedding = e.Hidden;
                result[i].NegativePooledEmbedding = e.Pooled;
            }
        }
        return result;
    }

    internal override SavedTransformer ToSaved() => new()
    {
        Stage = nameof(TextEncodingTransformer),
        Options = Options,
        Columns = new() { ["prompt"] = PromptColumnName, ["output"] = OutputColumnName, ["negativeOutput"] = NegativeOutputColumnName },
    };

    internal static TextEncodingTransformer FromSaved(DiffusionHost host, SavedTransformer saved) =>
        new TextEncodingEstimator(host, saved.Options, saved.Columns["prompt"]!, saved.Columns["output"]!, saved.Columns["negativeOutput"]).CreateForLoad();
}

using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.TextEncoding;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// The transforms' adapter to the engine: it turns a batch of image slots into <see cref="ImagePrompt"/>s (the seed
/// formula, and the per-row columns checked with their row and column named) and calls the engine, which groups them into
/// UNet batches and encodes each distinct text once. It also knows the shapes the transforms' schemas declare.
/// </summary>
internal sealed class BatchedGeneration
{
    private readonly StableDiffusionPipeline _pipeline;
    private readonly DiffusionOptions _options;
    private readonly GenerationOptions _generation;

    public BatchedGeneration(StableDiffusionPipeline pipeline, DiffusionOptions options)
    {
        _pipeline = pipeline;
        _options = options;
        Width = options.Width ?? pipeline.DefaultSize;
        Height = options.Height ?? pipeline.DefaultSize;
        _generation = options.ToGenerationOptions(options.Steps, Width, Height);
        SequenceLength = pipeline.ConditioningLength; // 77 (SD3: 77 + T, FLUX.1: T)
        LatentChannels = pipeline.UNet.LatentChannels;
        if (options.InitImageColumnName is { } init && pipeline.VaeEncoder is null)
            throw new InvalidOperationException(
                $"The init-image column '{init}' needs a VAE encoder, and the model folder '{pipeline.Folder.Directory}' has no vae_encoder/model.onnx. Export the model with its encoder, or leave DiffusionOptions.InitImageColumnName null.");
        // SDXL concatenates its encoders' states: the width is their sum (the UNet's encoder_hidden_states width).
        EmbeddingWidth = pipeline.PromptEncoder.EmbeddingWidth > 0 ? pipeline.PromptEncoder.EmbeddingWidth
            : pipeline.UNet.EmbeddingWidth > 0 ? pipeline.UNet.EmbeddingWidth
            : pipeline.UnconditionalEmbedding.Hidden.Length / SequenceLength; // symbolic in both models: measure once
        if (pipeline.UNet.TextEmbeds is { } pooled)
            PooledWidth = pooled.Width > 0 ? pooled.Width
                : pipeline.PromptEncoder.PooledWidth > 0 ? pipeline.PromptEncoder.PooledWidth
                : pipeline.UnconditionalEmbedding.Pooled?.Length ?? 0; // symbolic in both models: measure once
    }

    public int Width { get; }
    public int Height { get; }
    public int LatentHeight => Height / 8;
    public int LatentWidth => Width / 8;
    public int SequenceLength { get; }
    public int EmbeddingWidth { get; }
    public int[] EmbeddingDimensions => [SequenceLength, EmbeddingWidth];
    public int LatentChannels { get; }
    public int[] LatentDimensions => [LatentChannels, LatentHeight, LatentWidth];

    /// <summary>The pooled text embedding's width P when the model's UNet takes one (SDXL: <c>text_embeds</c>), else 0.</summary>
    public int PooledWidth { get; }

    /// <summary>Whether the model's UNet takes a pooled text embedding, so the stages carry a pooled column beside each embedding column.</summary>
    public bool HasPooled => PooledWidth > 0;

    /// <summary>
    /// The model's unconditional default: the empty prompt's embeddings (zeros when the folder sets
    /// <c>force_zeros_for_empty_prompt</c>), the unconditional half of guidance when no negative prompt is given.
    /// </summary>
    public TextEmbedding UnconditionalEmbedding => _pipeline.UnconditionalEmbedding;

    /// <summary>A slot as users count rows in messages: "data row 8" (1-based), with the image when a row makes several.</summary>
    public string RowName(ImageSlot slot) =>
        _options.ImagesPerPrompt > 1 ? $"data row {slot.Row + 1} (image {slot.ImageIndex + 1})" : $"data row {slot.Row + 1}";

    /// <summary>Seed of image j of row r: (the row's seed column value, else Seed + r·ImagesPerPrompt) + j.</summary>
    public long SeedOf(in ImageSlot slot) =>
        unchecked((slot.Inputs.Seed ?? _options.Seed + slot.Row * _options.ImagesPerPrompt) + slot.ImageIndex);

    /// <summary>Encodes texts in one text-encoder run, each distinct text once; per text its [77·D] embeddings and, for models with one, pooled [P], shared between equal texts (read-only).</summary>
    /// <param name="texts">The texts.</param>
    /// <param name="owners">Whose each text is (e.g. <c>TextOwner.PromptOf(RowName(slot))</c>), for the truncation and
    /// empty-prompt messages.</param>
    /// <param name="run">Progress and cancellation.</param>
    public TextEmbedding[] Encode(IReadOnlyList<string> texts, IReadOnlyList<TextOwner> owners, BatchRun run)
    {
        if (texts.Count == 0) return [];
        var encoded = _pipeline.EncodeTexts(texts, owners, run.CancellationToken);
        run.Progress?.Report(new DiffusionProgress(DiffusionStage.EncodingText, texts.Count, texts.Count));
        return encoded;
    }

    /// <summary>
    /// Generates the slots from their rows' prompts (the engine encodes, denoises and, with <paramref name="decode"/>,
    /// decodes); each slot gets its prompt embeddings, latents and image. With <see cref="DiffusionOptions.ImageGenerator"/>
    /// set, the generator makes the images instead (<see cref="RemoteGeneration"/>) and the slots get only their image.
    /// </summary>
    public SlotOutputs[] Generate(IReadOnlyList<ImageSlot> slots, bool decode, BatchRun run)
    {
        var owned = new List<MLImage>();
        try
        {
            var requests = slots.Select(slot => RequestOf(slot, owned)).ToArray();
            if (_options.ImageGenerator is { } generator) // DiffusionOptions.Validate refused every output but the image
                return RemoteGeneration.Generate(generator, _options, Width, Height, requests, [.. slots.Select(RowName)], run);
            var output = _pipeline.Run(requests, _generation, decode, run.Progress, run.CancellationToken, [.. slots.Select(RowName)]);
            var images = output.Images is { } decoded ? Keep(decoded) : null;
            return [.. Enumerable.Range(0, slots.Count).Select(i => new SlotOutputs
            {
                PromptEmbedding = output.Embeddings[i].Conditional,
                PooledEmbedding = output.Embeddings[i].ConditionalPooled,
                Latents = output.Latents[i],
                Image = images?[i],
            })];
        }
        finally
        {
            foreach (var image in owned) image.Dispose();
        }
    }

    /// <summary>Denoises the slots from their rows' embeddings and, for models with one, pooled embeddings (the model's
    /// unconditional default where a row has no negative-prompt embeddings); each slot's latents [4·h·w].</summary>
    public float[][] Denoise(IReadOnlyList<ImageSlot> slots, BatchRun run)
    {
        var owned = new List<MLImage>();
        try
        {
            var requests = slots.Select(slot => RequestOf(slot, owned)).ToArray();
            var embeddings = slots.Select(slot => new PromptEmbedding(slot.Inputs.PromptEmbedding!, slot.Inputs.NegativeEmbedding)
            {
                ConditionalPooled = slot.Inputs.PooledEmbedding,
                UnconditionalPooled = slot.Inputs.NegativePooledEmbedding,
            }).ToArray();
            return _pipeline.Denoise(requests, embeddings, _generation, run.Progress, run.CancellationToken);
        }
        finally
        {
            foreach (var image in owned) image.Dispose();
        }
    }

    /// <summary>Decodes latents [4·h·w] each into images.</summary>
    public ImagePixels[] Decode(IReadOnlyList<float[]> latents, BatchRun run)
    {
        if (latents.Count == 0) return [];
        int per = latents[0].Length;
        var all = new float[latents.Count * per];
        for (int i = 0; i < latents.Count; i++) latents[i].CopyTo(all, i * per);
        return Keep(_pipeline.Decode(all, latents.Count, LatentHeight, LatentWidth, run.Progress, run.CancellationToken));
    }

    /// <summary>
    /// The engine request of a slot: its row's prompt texts (empty when the transform reads embeddings instead), seed,
    /// steps, guidance scale, init image, mask, strength, control image and control scale. The row's values are checked here, so that an error names the
    /// row and the column; what the row leaves out is the options'. Init images and masks are added to
    /// <paramref name="owned"/>, for the caller to dispose.
    /// </summary>
    private ImagePrompt RequestOf(in ImageSlot slot, List<MLImage> owned)
    {
        var row = slot.Inputs;
        if (row.Steps is int steps && SettingLimits.Steps($"{DataRow(slot)}: the steps column '{_options.StepsColumnName}'", steps) is { } badSteps)
            throw new ArgumentOutOfRangeException(_options.StepsColumnName, badSteps + " (0 takes DiffusionOptions.Steps)");
        if (row.GuidanceScale is float guidance && SettingLimits.GuidanceScale($"{DataRow(slot)}: the guidance scale column '{_options.GuidanceScaleColumnName}'", guidance) is { } badGuidance)
            throw new ArgumentOutOfRangeException(_options.GuidanceScaleColumnName, badGuidance + " (NaN takes DiffusionOptions.GuidanceScale)");
        var (init, mask, strength) = ImageInputsOf(slot);
        if (SettingLimits.ControlScale($"{DataRow(slot)}: the control scale column '{_options.ControlScaleColumnName}'", row.ControlScale) is { } badScale)
            throw new ArgumentOutOfRangeException(_options.ControlScaleColumnName, badScale + " (NaN takes each ControlNetInput.Scale)");
        return new ImagePrompt(row.Prompt, SeedOf(slot))
        {
            ControlImages = row.ControlImage is null ? null : [Materialize(row.ControlImage, owned)],
            ControlScale = row.ControlScale,
            NegativePrompt = row.NegativePrompt,
            Steps = row.Steps,
            GuidanceScale = row.GuidanceScale,
            InitImage = Materialize(init, owned),
            Mask = Materialize(mask, owned),
            Strength = strength,
        };
    }

    /// <summary>A slot's row as users count rows in messages: 1-based, in the input view.</summary>
    private static string DataRow(in ImageSlot slot) => $"Data row {slot.Row + 1}";

    /// <summary>
    /// A slot's init image, mask and strength (the row's values, else <see cref="DiffusionOptions.Strength"/>); the
    /// strength is dropped when the row has no init image. Rows that the engine would refuse are reported here with
    /// their row number and column names.
    /// </summary>
    private (ImagePixels? InitImage, ImagePixels? Mask, float? Strength) ImageInputsOf(in ImageSlot slot)
    {
        var init = slot.Inputs.InitImage;
        var mask = slot.Inputs.Mask;
        if (init is null)
        {
            if (mask is not null)
                throw new ArgumentException($"{DataRow(slot)}: the mask column '{_options.MaskColumnName}' holds an image but the init-image column '{_options.InitImageColumnName}' holds none; a mask needs an init image.");
            return (null, null, null);
        }
        if (mask is not null && (mask.Width != init.Width || mask.Height != init.Height))
            throw new ArgumentException($"{DataRow(slot)}: the mask in column '{_options.MaskColumnName}' is {mask.Width}×{mask.Height} but the init image in column '{_options.InitImageColumnName}' is {init.Width}×{init.Height}; the mask must have the init image's size.");
        float? strength = slot.Inputs.Strength ?? _options.Strength;
        if (SettingLimits.Strength($"{DataRow(slot)}: the strength column '{_options.StrengthColumnName}'", strength) is { } badStrength)
            throw new ArgumentOutOfRangeException(_options.StrengthColumnName, badStrength + " (NaN takes DiffusionOptions.Strength)");
        return (init, mask, strength);
    }

    private static MLImage? Materialize(ImagePixels? pixels, List<MLImage> owned)
    {
        if (pixels is null) return null;
        var image = pixels.ToImage();
        owned.Add(image);
        return image;
    }

    /// <summary>Copies decoded images into <see cref="ImagePixels"/> and disposes them.</summary>
    private static ImagePixels[] Keep(MLImage[] images)
    {
        try
        {
            return [.. images.Select(image => new ImagePixels(image))];
        }
        finally
        {
            foreach (var image in images) image.Dispose();
        }
    }
}

/// <summary>
/// The run-time side of one batch: the options' cancellation token, and their progress sink wrapped so that the
/// engine's reports carry the batch's first row and size. Made per batch, so concurrent cursors never share one.
/// </summary>
internal sealed class BatchRun
{
    private BatchRun(CancellationToken cancellationToken, IProgress<DiffusionProgress>? progress)
    {
        CancellationToken = cancellationToken;
        Progress = progress;
    }

    /// <summary>Cancels the batch's model calls (checked before each, and passed to ONNX Runtime).</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>Receives the engine's reports for this batch; null when the options have no progress sink.</summary>
    public IProgress<DiffusionProgress>? Progress { get; }

    /// <summary>The context of a batch of <paramref name="slots"/> under <paramref name="options"/>.</summary>
    public static BatchRun For(IReadOnlyList<ImageSlot> slots, DiffusionOptions options) =>
        new(options.CancellationToken, options.Progress is { } sink && slots.Count > 0 ? new Relay(sink, slots[0].Row, slots.Count) : null);

    private sealed class Relay(IProgress<DiffusionBatchProgress> sink, long firstRow, int images) : IProgress<DiffusionProgress>
    {
        public void Report(DiffusionProgress value) => sink.Report(new DiffusionBatchProgress(firstRow, images, value));
    }
}

using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Transforms;

/// <summary>One image to denoise: its conditioning, seed and settings, and optionally an init image, mask and strength.</summary>
internal readonly record struct DenoiseRequest(float[] Conditional, float[]? Unconditional, long Seed, float GuidanceScale, int Steps,
    ImagePixels? InitImage = null, ImagePixels? Mask = null, float? Strength = null);

/// <summary>
/// The engine calls behind the transforms, for a batch of images at a time: text encoding, denoising grouped by
/// (steps, guidance on/off), and decoding; plus the per-image settings (seed formula, per-row steps and guidance).
/// </summary>
internal sealed class BatchedGeneration
{
    private readonly StableDiffusionPipeline _pipeline;
    private readonly DiffusionOptions _options;
    private readonly Lazy<float[]> _emptyPrompt;

    public BatchedGeneration(StableDiffusionPipeline pipeline, DiffusionOptions options)
    {
        _pipeline = pipeline;
        _options = options;
        _emptyPrompt = new Lazy<float[]>(() => pipeline.EncodeText([""]), LazyThreadSafetyMode.ExecutionAndPublication);
        Width = options.Width ?? pipeline.DefaultSize;
        Height = options.Height ?? pipeline.DefaultSize;
        SequenceLength = pipeline.TextEncoder.SequenceLength;
        if (options.InitImageColumnName is { } init && pipeline.VaeEncoder is null)
            throw new InvalidOperationException(
                $"The init-image column '{init}' needs a VAE encoder, and the model folder '{pipeline.Folder.Directory}' has no vae_encoder/model.onnx. Export the model with its encoder, or leave DiffusionOptions.InitImageColumnName null.");
        EmbeddingWidth = pipeline.TextEncoder.EmbeddingWidth > 0 ? pipeline.TextEncoder.EmbeddingWidth
            : pipeline.UNet.EmbeddingWidth > 0 ? pipeline.UNet.EmbeddingWidth
            : _emptyPrompt.Value.Length / SequenceLength; // symbolic in both models: measure once
    }

    public int Width { get; }
    public int Height { get; }
    public int LatentHeight => Height / 8;
    public int LatentWidth => Width / 8;
    public int SequenceLength { get; }
    public int EmbeddingWidth { get; }
    public int[] EmbeddingDimensions => [SequenceLength, EmbeddingWidth];
    public int[] LatentDimensions => [4, LatentHeight, LatentWidth];

    /// <summary>The empty prompt's embeddings: the unconditional half of guidance when no negative prompt is given.</summary>
    public float[] EmptyPromptEmbedding => _emptyPrompt.Value;

    /// <summary>Seed of image j of row r: (the row's seed column value, else Seed + r·ImagesPerPrompt) + j.</summary>
    public long SeedOf(in ImageSlot slot) =>
        unchecked((slot.Inputs.Seed ?? _options.Seed + slot.Row * _options.ImagesPerPrompt) + slot.ImageIndex);

    /// <summary>A slot's row as users count rows in messages: 1-based, in the input view.</summary>
    private static string DataRow(in ImageSlot slot) => $"Data row {slot.Row + 1}";

    /// <summary>The steps and guidance scale of a slot: the row's column values, else the options'.</summary>
    public (int Steps, float GuidanceScale) SettingsOf(in ImageSlot slot)
    {
        int steps = slot.Inputs.Steps ?? _options.Steps;
        if (SettingLimits.Steps($"{DataRow(slot)}: the steps column '{_options.StepsColumnName}'", steps) is { } badSteps)
            throw new ArgumentOutOfRangeException(_options.StepsColumnName, badSteps + " (0 takes DiffusionOptions.Steps)");
        float guidance = slot.Inputs.GuidanceScale ?? _options.GuidanceScale;
        if (SettingLimits.GuidanceScale($"{DataRow(slot)}: the guidance scale column '{_options.GuidanceScaleColumnName}'", guidance) is { } badGuidance)
            throw new ArgumentOutOfRangeException(_options.GuidanceScaleColumnName, badGuidance + " (NaN takes DiffusionOptions.GuidanceScale)");
        return (steps, guidance);
    }

    /// <summary>
    /// A slot's init image, mask and strength (the row's values, else <see cref="DiffusionOptions.Strength"/>); the
    /// strength is dropped when the row has no init image. Rows that the engine would refuse are reported here with
    /// their row number and column names.
    /// </summary>
    public (ImagePixels? InitImage, ImagePixels? Mask, float? Strength) ImageInputsOf(in ImageSlot slot)
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

    /// <summary>
    /// Encodes prompts in one text-encoder run, each distinct text once (a column of one negative prompt, or rows that
    /// repeat a prompt, cost one row); one [77·D] array per prompt, shared between equal texts (read-only).
    /// </summary>
    public float[][] Encode(IReadOnlyList<string> prompts, BatchRun run)
    {
        if (prompts.Count == 0) return [];
        var distinct = new List<string>();
        var rowOf = new Dictionary<string, int>(StringComparer.Ordinal);
        var rows = new int[prompts.Count];
        for (int i = 0; i < rows.Length; i++)
        {
            if (!rowOf.TryGetValue(prompts[i], out rows[i]))
            {
                rows[i] = distinct.Count;
                rowOf.Add(prompts[i], rows[i]);
                distinct.Add(prompts[i]);
            }
        }
        var all = _pipeline.EncodeText(distinct, run.CancellationToken);
        run.Progress?.Report(new DiffusionProgress(DiffusionStage.EncodingText, prompts.Count, prompts.Count));
        int per = all.Length / distinct.Count;
        var encoded = new float[distinct.Count][];
        for (int i = 0; i < encoded.Length; i++) encoded[i] = all.AsSpan(i * per, per).ToArray();
        var result = new float[prompts.Count][];
        for (int i = 0; i < result.Length; i++) result[i] = encoded[rows[i]];
        return result;
    }

    /// <summary>
    /// Denoises the requests, one engine <c>Denoise</c> call per (steps, guidance &gt; 1) group in order of first
    /// appearance (the engine splits a call further into one UNet batch per start step, i.e. per distinct
    /// skipped-step count of the init images' strengths); returns each request's latents [4·h·w] in request order.
    /// </summary>
    public float[][] Denoise(IReadOnlyList<DenoiseRequest> requests, BatchRun run)
    {
        var result = new float[requests.Count][];
        foreach (var group in Enumerable.Range(0, requests.Count).GroupBy(i => (requests[i].Steps, Guided: requests[i].GuidanceScale > 1)))
        {
            var members = group.ToArray();
            int per = requests[members[0]].Conditional.Length;
            var cond = new float[members.Length * per];
            var uncond = group.Key.Guided ? new float[cond.Length] : [];
            float[] latents;
            var prompts = new ImagePrompt[members.Length];
            var images = new List<MLImage>();
            try
            {
                for (int m = 0; m < members.Length; m++)
                {
                    var r = requests[members[m]];
                    r.Conditional.CopyTo(cond, m * per);
                    if (group.Key.Guided) (r.Unconditional ?? EmptyPromptEmbedding).CopyTo(uncond, m * per);
                    prompts[m] = new ImagePrompt("", r.Seed)
                    {
                        GuidanceScale = r.GuidanceScale,
                        InitImage = Materialize(r.InitImage, images),
                        Mask = Materialize(r.Mask, images),
                        Strength = r.InitImage is null ? null : r.Strength,
                    };
                }
                latents = _pipeline.Denoise(cond, uncond, prompts, Width, Height, _options.ToGenerationOptions(group.Key.Steps, Width, Height),
                    run.Progress, run.CancellationToken);
            }
            finally
            {
                foreach (var image in images) image.Dispose();
            }
            int size = latents.Length / members.Length;
            for (int m = 0; m < members.Length; m++) result[members[m]] = latents.AsSpan(m * size, size).ToArray();
        }
        return result;
    }

    private static MLImage? Materialize(ImagePixels? pixels, List<MLImage> owned)
    {
        if (pixels is null) return null;
        var image = pixels.ToImage();
        owned.Add(image);
        return image;
    }

    /// <summary>Decodes latents [4·h·w] each into images.</summary>
    public ImagePixels[] Decode(IReadOnlyList<float[]> latents, BatchRun run)
    {
        if (latents.Count == 0) return [];
        int per = latents[0].Length;
        var all = new float[latents.Count * per];
        for (int i = 0; i < latents.Count; i++) latents[i].CopyTo(all, i * per);
        var images = _pipeline.Decode(all, latents.Count, LatentHeight, LatentWidth, run.Progress, run.CancellationToken);
        try
        {
            return images.Select(image => new ImagePixels(image)).ToArray();
        }
        finally
        {
            foreach (var image in images) image.Dispose();
        }
    }
}

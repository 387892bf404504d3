using System.Text.Json.Serialization;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion;

/// <summary>
/// Settings of the ML.NET diffusion transforms (<c>GenerateImages</c>, <c>EncodePrompts</c>, <c>DenoiseLatents</c>,
/// <c>DecodeLatents</c>): the model folder, the generation settings every row shares unless a per-row column
/// overrides them, batching, and the device.
/// </summary>
/// <remarks>
/// <para><b>Seeds.</b> Image <c>j</c> (0 ≤ j &lt; <see cref="ImagesPerPrompt"/>) of input row <c>r</c> (the row's
/// 0-based position in the input view) uses seed <c>s + j</c>, where <c>s</c> is the row's value in
/// <see cref="SeedColumnName"/> when that column is given, else <c>Seed + r·ImagesPerPrompt</c>. So a rerun over
/// the same rows gives the same images, and without a seed column no two images of one pass share a seed.</para>
/// <para><b>Batches.</b> Images are generated <see cref="BatchSize"/> at a time (one UNet batch of
/// <see cref="BatchSize"/> images, twice that with guidance): a batch is the next <see cref="BatchSize"/>
/// consecutive images of the view. Images of one batch whose steps differ, or of which some use guidance
/// (scale &gt; 1) and others do not, cannot share a UNet call: the batch is split into one call per
/// (steps, guidance on/off) group, in order of first appearance (the image size is one setting for the whole
/// transform, so it never splits a batch). An image's pixels do not depend on its batch.</para>
/// <para><b>Image-to-image and inpainting.</b> <see cref="InitImageColumnName"/> names an image column
/// (<c>ImageDataViewType</c> of <c>MLImage</c>, e.g. from <c>LoadImages</c>) whose rows start from that image instead of
/// noise; <see cref="MaskColumnName"/> an image column of what to repaint (white) in it; <see cref="StrengthColumnName"/>
/// a Single column of each row's strength. They become the engine's <see cref="ImagePrompt.InitImage"/>,
/// <see cref="ImagePrompt.Mask"/> and <see cref="ImagePrompt.Strength"/>: init images of any size are stretched to the
/// generation size, a mask must have its init image's size, and a row whose init image is null (or empty) is
/// generated from text alone (its mask must then be null too; its strength is ignored). Rows with different strengths
/// still share one batch: the engine runs the images that start at the same step together, so a batch of k distinct
/// start steps makes k UNet batches per step, and an image's pixels still do not depend on its batch. The pixels are copied when a row is read, so the image column's
/// upstream transforms run once per batch read.</para>
/// </remarks>
public sealed class DiffusionOptions
{
    /// <summary>
    /// The Stable Diffusion ONNX export folder (diffusers/Optimum layout). Null or empty: the built-in demo model, built on
    /// first use into <see cref="DemoModel.Directory"/> (the context's log says so).
    /// </summary>
    public string? ModelPath { get; set; }

    /// <summary>Inference steps (1–1000) for rows without a per-row value. Default 25.</summary>
    public int Steps { get; set; } = 25;

    /// <summary>Classifier-free guidance scale for rows without a per-row value; at 1 or below guidance is off. Default 7.5.</summary>
    public float GuidanceScale { get; set; } = 7.5f;

    /// <summary>Image width in pixels (a multiple of 8); null takes the model's default size.</summary>
    public int? Width { get; set; }

    /// <summary>Image height in pixels (a multiple of 8); null takes the model's default size.</summary>
    public int? Height { get; set; }

    /// <summary>A scheduler to use instead of the folder's (e.g. <c>euler-a</c>, <c>ddim</c>, or a diffusers class name); null keeps the folder's.</summary>
    public string? Scheduler { get; set; }

    /// <summary>DDIM's η (0–1); ignored by other schedulers.</summary>
    public float Eta { get; set; }

    /// <summary>Guidance rescale φ (0–1; <see cref="GenerationOptions.GuidanceRescale"/>). Default 0: plain guidance.</summary>
    public float GuidanceRescale { get; set; }

    /// <summary>The base seed for rows without a seed column (see the remarks for the formula). Default 0.</summary>
    public long Seed { get; set; }

    /// <summary>
    /// Images per input row (1–64). Above 1 the output view has this many rows per input row, in order, with an
    /// <see cref="ImageIndexColumnName"/> column (0 … ImagesPerPrompt − 1) and each input column repeated; the
    /// transform is then not row-to-row (no <c>PredictionEngine</c>). Default 1.
    /// </summary>
    public int ImagesPerPrompt { get; set; } = 1;

    /// <summary>Images per UNet batch (1–256); larger batches are faster on a GPU and need more memory. Default 1.</summary>
    public int BatchSize { get; set; } = 1;

    /// <summary>A text column with each row's negative prompt (what the image should not show); null for none (the empty prompt).</summary>
    public string? NegativePromptColumnName { get; set; }

    /// <summary>A seed column (Int64, Int32 or UInt32) giving each row its seed; null derives seeds from <see cref="Seed"/>.</summary>
    public string? SeedColumnName { get; set; }

    /// <summary>A Single column with each row's guidance scale (NaN takes <see cref="GuidanceScale"/>); null for none.</summary>
    public string? GuidanceScaleColumnName { get; set; }

    /// <summary>An Int32 column with each row's step count (0 takes <see cref="Steps"/>); null for none.</summary>
    public string? StepsColumnName { get; set; }

    /// <summary>
    /// An image column (<c>MLImage</c>) of init images for image-to-image: each row's image is noised to its
    /// strength and denoised towards its prompt. A null or empty image generates that row from text alone. Needs a
    /// model folder with <c>vae_encoder/model.onnx</c> (checked when the transform is fitted). Null (default): text-to-image.
    /// </summary>
    public string? InitImageColumnName { get; set; }

    /// <summary>
    /// An image column (<c>MLImage</c>) of inpainting masks, white (grey level ≥ ½) where the init image is repainted;
    /// each must have its row's init image's size (a null mask repaints everything at the strength). Needs
    /// <see cref="InitImageColumnName"/>. Null (default): no masks.
    /// </summary>
    public string? MaskColumnName { get; set; }

    /// <summary>
    /// A Single column with each row's strength, from 0 to 1 (NaN takes <see cref="Strength"/>); see
    /// <see cref="ImagePrompt.Strength"/>. Needs <see cref="InitImageColumnName"/>. Null (default): none.
    /// </summary>
    public string? StrengthColumnName { get; set; }

    /// <summary>
    /// The strength of rows with an init image and no per-row value (0–1); null (default) takes the engine's defaults,
    /// <see cref="ImagePrompt.DefaultStrength"/> (0.8), or <see cref="ImagePrompt.DefaultInpaintingStrength"/> (1) with a mask.
    /// </summary>
    public float? Strength { get; set; }

    /// <summary>
    /// The ControlNets that steer generation (<see cref="GenerationOptions.ControlNets"/>); empty (default): none. Not saved
    /// by <see cref="DiffusionModelSaver"/>, since they hold images (pass them again through the <c>configure</c> argument of
    /// its <c>Load</c>).
    /// </summary>
    [JsonIgnore]
    public IList<ControlNetInput> ControlNets { get; set; } = new List<ControlNetInput>();

    /// <summary>ControlNet guess mode (<see cref="GenerationOptions.ControlGuessMode"/>). Default false.</summary>
    public bool ControlGuessMode { get; set; }

    /// <summary>
    /// An image column (<c>MLImage</c>) with each row's control image for the first of <see cref="ControlNets"/> (any size:
    /// resized to the generation size); a null or empty image takes that ControlNet's <see cref="ControlNetInput.Image"/>.
    /// Needs <see cref="ControlNets"/>. Null (default): none.
    /// </summary>
    public string? ControlImageColumnName { get; set; }

    /// <summary>
    /// A Single column with each row's ControlNet conditioning scale for every ControlNet (NaN takes each
    /// <see cref="ControlNetInput.Scale"/>); rows with different scales run in different UNet batches. Needs
    /// <see cref="ControlNets"/>. Null (default): none.
    /// </summary>
    public string? ControlScaleColumnName { get; set; }

    /// <summary>The Int32 output column that numbers a row's images when <see cref="ImagesPerPrompt"/> &gt; 1. Default "ImageIndex".</summary>
    public string ImageIndexColumnName { get; set; } = DiffusionColumnNames.ImageIndex;

    /// <summary>
    /// <c>GenerateImages</c> only: also output the prompt embeddings (Single vector of 77·D) under this name, and for
    /// models whose UNet takes a pooled text embedding (SDXL) the pooled ones under
    /// <see cref="PooledEmbeddingColumnName"/>; null (default) keeps them internal.
    /// </summary>
    public string? PromptEmbeddingColumnName { get; set; }

    /// <summary>
    /// <c>EncodePrompts</c> and <c>DenoiseLatents</c>, for models whose UNet takes a pooled text embedding (SDXL,
    /// its refiner and Turbo): the column of the prompts' pooled embeddings (Single vector of P, 1280 for SDXL), which
    /// the text-encoding stage writes beside the prompt embeddings and the denoising stage reads. Null (default): the
    /// prompt embeddings column's name followed by "Pooled" (e.g. "PromptEmbeddingPooled"). Ignored for other models.
    /// </summary>
    public string? PooledEmbeddingColumnName { get; set; }

    /// <summary>
    /// As <see cref="PooledEmbeddingColumnName"/>, for the negative prompts' pooled embeddings, used with a negative
    /// embeddings column. Null (default): that column's name followed by "Pooled" (e.g. "NegativePromptEmbeddingPooled").
    /// </summary>
    public string? NegativePooledEmbeddingColumnName { get; set; }

    /// <summary><c>GenerateImages</c> only: also output the final latents (Single vector of 4·h·w) under this name; null (default) keeps them internal.</summary>
    public string? LatentsColumnName { get; set; }

    /// <summary>The CUDA device to run on; null (default) takes <c>MLContext.GpuDeviceId</c>, and when both are null the CPU is used.</summary>
    public int? GpuDeviceId { get; set; }

    /// <summary>Whether to fall back to the CPU when CUDA cannot be used; null (default) takes <c>MLContext.FallbackToCpu</c>.</summary>
    public bool? FallbackToCpu { get; set; }

    /// <summary>ONNX Runtime threads inside one operator; 0 (default) lets ONNX Runtime decide.</summary>
    public int IntraOpThreads { get; set; }

    /// <summary>Load the text encoders and the VAE only for their stage and release them after it, keeping only the UNet
    /// loaded, without ONNX Runtime's CPU arena (<see cref="DiffusionRuntimeOptions.LowMemory"/>). Default false.</summary>
    public bool LowMemory { get; set; }

    /// <summary>Stable Diffusion 3 without its T5 encoder: zeros take its place (<see cref="DiffusionRuntimeOptions.WithoutT5"/>). Default false.</summary>
    public bool WithoutT5 { get; set; }

    /// <summary>T5's tokens per prompt for SD3 and FLUX.1, 1 to 512, or null for the model's default
    /// (<see cref="DiffusionRuntimeOptions.MaxSequenceLength"/>).</summary>
    public int? MaxSequenceLength { get; set; }

    /// <summary>
    /// Textual-inversion embedding files to load with the model: path → trigger word, or null for the file's own
    /// (<see cref="DiffusionRuntimeOptions.TextualInversions"/>). Default: none. Saved by <see cref="DiffusionModelSaver"/>
    /// as given (the files are read again when the model is loaded back).
    /// </summary>
    public IDictionary<string, string?> TextualInversions { get; set; } = new Dictionary<string, string?>();

    /// <summary>
    /// <c>GenerateImages</c> only: an image generator (Microsoft.Extensions.AI) that makes the images instead of the local
    /// device, for example a cluster's (<c>MLNet.Diffusion.Orleans.ClusterImageGenerator</c>). Each batch's images are sent
    /// as one request per image, all of the batch in flight together: the row's prompt, and as
    /// <c>ImageGenerationOptions.AdditionalProperties</c> under <see cref="StableDiffusionImageGenerator"/>'s names its seed
    /// (the seed formula above), steps, guidance scale and negative prompt, and the shared settings that differ from their
    /// defaults (scheduler, η, guidance rescale, noise, guidance window, aesthetic scores); the image size is
    /// <c>ImageGenerationOptions.ImageSize</c>. The first image of each response (PNG) becomes the row's image. Null
    /// (default): the local pipeline makes them.
    /// <para>The model folder is still opened and loaded locally to declare the output schema (image size); it should be the
    /// same model the generator serves, or the images differ from a local run. Only the image column can be made this way:
    /// <see cref="LatentsColumnName"/>, <see cref="PromptEmbeddingColumnName"/>, init images, masks, ControlNets and the SDXL
    /// time ids (original/target size, crop) are refused, as are the stage transforms (<c>EncodePrompts</c>,
    /// <c>DenoiseLatents</c>, <c>DecodeLatents</c>). A request that fails is reported naming its data row. Not saved by
    /// <see cref="DiffusionModelSaver"/> (pass it again through the <c>configure</c> argument of its <c>Load</c>).</para>
    /// </summary>
    [JsonIgnore]
#pragma warning disable MEAI001 // Microsoft.Extensions.AI's IImageGenerator is marked experimental.
    public Microsoft.Extensions.AI.IImageGenerator? ImageGenerator { get; set; }
#pragma warning restore MEAI001

    /// <summary>
    /// Receives progress while batches are generated: the batch's first row and size, and the engine's stage and step
    /// (one report per UNet call). Reports come on the thread that reads the generated column. Not saved by
    /// <see cref="DiffusionModelSaver"/> (pass it again through the <c>configure</c> argument of its <c>Load</c>).
    /// </summary>
    [JsonIgnore]
    public IProgress<DiffusionBatchProgress>? Progress { get; set; }

    /// <summary>
    /// Cancels generation: once it is signalled, reading a generated column throws
    /// <see cref="OperationCanceledException"/> before the next model call, and a running ONNX Runtime call is asked
    /// to stop. Values already read stay valid; the cursor can still be disposed. Not saved by
    /// <see cref="DiffusionModelSaver"/> (pass it again through the <c>configure</c> argument of its <c>Load</c>).
    /// </summary>
    [JsonIgnore]
    public CancellationToken CancellationToken { get; set; }

    /// <summary>
    /// Whether the images read from the image column belong to the caller (default false). ML.NET's image getters, and
    /// this one by default, dispose the image they handed out at the previous read, so an image kept from
    /// <c>CreateEnumerable(reuseRowObject: false)</c>, <c>GetColumn</c> or a <c>PredictionEngine</c> is disposed by the next
    /// row. Set this to keep them: every read then gives a new image that only the caller disposes. Leave it off when the
    /// column only feeds other transforms (<c>ResizeImages</c>, <c>ExtractPixels</c>), which read each image once.
    /// </summary>
    public bool CallerOwnsImages { get; set; }

    /// <summary>The pooled column that goes with embeddings column <paramref name="embeddingColumn"/>: <paramref name="configured"/>, else "{embeddingColumn}Pooled".</summary>
    internal static string PooledColumnOf(string? configured, string embeddingColumn) =>
        string.IsNullOrWhiteSpace(configured) ? embeddingColumn + "Pooled" : configured;

    /// <summary>A shallow copy, except that <see cref="TextualInversions"/> is copied.</summary>
    public DiffusionOptions Clone()
    {
        var copy = (DiffusionOptions)MemberwiseClone();
        copy.TextualInversions = TextualInversions is null ? new Dictionary<string, string?>() : new Dictionary<string, string?>(TextualInversions);
        return copy;
    }

    internal GenerationOptions ToGenerationOptions(int steps, int? width, int? height) =>
        new()
        {
            Steps = steps, Width = width, Height = height, Scheduler = Scheduler, Eta = Eta, GuidanceScale = GuidanceScale, GuidanceRescale = GuidanceRescale,
            GuidanceIntervalLow = GuidanceIntervalLow, GuidanceIntervalHigh = GuidanceIntervalHigh, GuidanceEnd = GuidanceEnd, VaeTiling = VaeTiling, Noise = Noise,
            OriginalWidth = OriginalWidth, OriginalHeight = OriginalHeight, CropTop = CropTop, CropLeft = CropLeft, TargetWidth = TargetWidth,
            TargetHeight = TargetHeight, AestheticScore = AestheticScore, NegativeAestheticScore = NegativeAestheticScore,
            ControlNets = [.. ControlNets ?? []], ControlGuessMode = ControlGuessMode,
        };

    /// <summary>Guidance only for noise levels σ above this (<see cref="GenerationOptions.GuidanceIntervalLow"/>); null: no lower end.</summary>
    public float? GuidanceIntervalLow { get; set; }

    /// <summary>Guidance only for noise levels σ up to this (<see cref="GenerationOptions.GuidanceIntervalHigh"/>); null: no upper end.</summary>
    public float? GuidanceIntervalHigh { get; set; }

    /// <summary>Guidance for this fraction of the model calls only (<see cref="GenerationOptions.GuidanceEnd"/>); null: every call.</summary>
    public float? GuidanceEnd { get; set; }

    /// <summary>Tiled VAE decoding and encoding (<see cref="GenerationOptions.VaeTiling"/>). Default <see cref="VaeTiling.Auto"/>.</summary>
    public VaeTiling VaeTiling { get; set; } = VaeTiling.Auto;

    /// <summary>The generator that turns each row's seed into its noise (<see cref="GenerationOptions.Noise"/>): <see cref="NoiseKind.Torch"/>
    /// for diffusers' latents for the same seed. Default <see cref="NoiseKind.Default"/>, the library's own.</summary>
    public NoiseKind Noise { get; set; } = NoiseKind.Default;

    /// <summary>SDXL: the original width in the time ids (<see cref="GenerationOptions.OriginalWidth"/>); null: the image width.</summary>
    public int? OriginalWidth { get; set; }

    /// <summary>SDXL: the original height in the time ids (<see cref="GenerationOptions.OriginalHeight"/>); null: the image height.</summary>
    public int? OriginalHeight { get; set; }

    /// <summary>SDXL: the crop top in the time ids (<see cref="GenerationOptions.CropTop"/>). Default 0.</summary>
    public int CropTop { get; set; }

    /// <summary>SDXL: the crop left in the time ids (<see cref="GenerationOptions.CropLeft"/>). Default 0.</summary>
    public int CropLeft { get; set; }

    /// <summary>SDXL base: the target width in the time ids (<see cref="GenerationOptions.TargetWidth"/>); null: the image width.</summary>
    public int? TargetWidth { get; set; }

    /// <summary>SDXL base: the target height in the time ids (<see cref="GenerationOptions.TargetHeight"/>); null: the image height.</summary>
    public int? TargetHeight { get; set; }

    /// <summary>SDXL refiner: the aesthetic score, 0–10 (<see cref="GenerationOptions.AestheticScore"/>). Default 6.</summary>
    public float AestheticScore { get; set; } = 6f;

    /// <summary>SDXL refiner: the negative half's aesthetic score, 0–10 (<see cref="GenerationOptions.NegativeAestheticScore"/>). Default 2.5.</summary>
    public float NegativeAestheticScore { get; set; } = 2.5f;

    /// <summary>Checks the settings; the exception names the one that is out of range.</summary>
    internal void Validate()
    {
        const string type = nameof(DiffusionOptions);
        SettingLimits.ThrowIfAny(SettingLimits.Problems(ToGenerationOptions(Steps, Width, Height), type), nameof(DiffusionOptions));
        SettingLimits.ThrowIf(SettingLimits.Count($"{type}.{nameof(ImagesPerPrompt)}", ImagesPerPrompt, 1, SettingLimits.MaxImagesPerPrompt), nameof(ImagesPerPrompt));
        SettingLimits.ThrowIf(SettingLimits.Count($"{type}.{nameof(BatchSize)}", BatchSize, 1, SettingLimits.MaxBatchSize), nameof(BatchSize));
        SettingLimits.ThrowIf(SettingLimits.Strength($"{type}.{nameof(Strength)}", Strength), nameof(Strength));
        if (GpuDeviceId is int gpu) SettingLimits.ThrowIf(SettingLimits.DeviceId($"{type}.{nameof(GpuDeviceId)}", gpu), nameof(GpuDeviceId));
        SettingLimits.ThrowIf(SettingLimits.Threads($"{type}.{nameof(IntraOpThreads)}", IntraOpThreads), nameof(IntraOpThreads));
        SettingLimits.ThrowIf(SettingLimits.MaxSequenceLength($"{type}.{nameof(MaxSequenceLength)}", MaxSequenceLength), nameof(MaxSequenceLength));
        if (InitImageColumnName is null && MaskColumnName is not null)
            throw new ArgumentException($"MaskColumnName ('{MaskColumnName}') needs InitImageColumnName: a mask says what to repaint in an init image.", nameof(MaskColumnName));
        if (InitImageColumnName is null && StrengthColumnName is not null)
            throw new ArgumentException($"StrengthColumnName ('{StrengthColumnName}') needs InitImageColumnName: strength says how much of an init image is regenerated.", nameof(StrengthColumnName));
        foreach (var (column, name) in new[] { (ControlImageColumnName, nameof(ControlImageColumnName)), (ControlScaleColumnName, nameof(ControlScaleColumnName)) })
            if (column is not null && ControlNets is not { Count: > 0 })
                throw new ArgumentException($"{name} ('{column}') needs DiffusionOptions.ControlNets: the column steers a ControlNet, and none is set " +
                    "(for a saved model, set them in the configure argument of DiffusionModelSaver.Load).", name);
        if (ImageGenerator is not null) ValidateRemote();
        if (ImagesPerPrompt > 1 && string.IsNullOrWhiteSpace(ImageIndexColumnName))
            throw new ArgumentException("ImageIndexColumnName must name a column when ImagesPerPrompt is above 1.", nameof(ImageIndexColumnName));
    }

    /// <summary>With <see cref="ImageGenerator"/> set: refuses what a generator cannot return or take (it returns images only).</summary>
    private void ValidateRemote()
    {
        const string why = "DiffusionOptions.ImageGenerator is set, and an image generator returns images only";
        foreach (var (column, name) in new[] { (LatentsColumnName, nameof(LatentsColumnName)), (PromptEmbeddingColumnName, nameof(PromptEmbeddingColumnName)) })
            if (column is not null)
                throw new ArgumentException($"{name} names the output column '{column}', which cannot be made remotely: {why}. Leave {name} null, or leave ImageGenerator null to generate on the local device.", name);
        foreach (var (column, name) in new[] { (InitImageColumnName, nameof(InitImageColumnName)), (MaskColumnName, nameof(MaskColumnName)), (ControlImageColumnName, nameof(ControlImageColumnName)) })
            if (column is not null)
                throw new ArgumentException($"{name} names the input column '{column}', which cannot be sent to DiffusionOptions.ImageGenerator (it takes text prompts only). Leave {name} null, or leave ImageGenerator null to generate on the local device.", name);
        if (ControlNets is { Count: > 0 })
            throw new ArgumentException("DiffusionOptions.ControlNets cannot be sent to DiffusionOptions.ImageGenerator (it takes text prompts only). Remove the ControlNets, or leave ImageGenerator null.", nameof(ControlNets));
        foreach (var (value, name) in new[] { (OriginalWidth, nameof(OriginalWidth)), (OriginalHeight, nameof(OriginalHeight)), (TargetWidth, nameof(TargetWidth)), (TargetHeight, nameof(TargetHeight)),
                     ((int?)(CropTop == 0 ? null : CropTop), nameof(CropTop)), ((int?)(CropLeft == 0 ? null : CropLeft), nameof(CropLeft)) })
            if (value is not null)
                throw new ArgumentException($"DiffusionOptions.{name} is {value}, an SDXL time id that DiffusionOptions.ImageGenerator has no setting for. Leave it at its default, or leave ImageGenerator null.", name);
    }
}

/// <summary>
/// Progress of the ML.NET diffusion transforms, reported through <see cref="DiffusionOptions.Progress"/>: the batch
/// being generated (its first input row and how many images it holds) and where the engine is within it (text
/// encoding, one report per UNet call while denoising, one per decoded image).
/// </summary>
/// <param name="FirstRow">The 0-based position, in the input view, of the batch's first row.</param>
/// <param name="Images">Images in the batch (at most <see cref="DiffusionOptions.BatchSize"/>).</param>
/// <param name="Stage">The engine's stage and step within the batch. A batch whose images differ in steps or in
/// guidance on/off runs one denoising pass per group, each counting its own steps.</param>
public readonly record struct DiffusionBatchProgress(long FirstRow, int Images, DiffusionProgress Stage);

/// <summary>The default column names of the diffusion transforms.</summary>
public static class DiffusionColumnNames
{
    /// <summary>"Prompt": the text input.</summary>
    public const string Prompt = "Prompt";

    /// <summary>"Image": the generated <c>MLImage</c>.</summary>
    public const string Image = "Image";

    /// <summary>"PromptEmbedding": text embeddings of the prompt (Single vector of 77·D).</summary>
    public const string PromptEmbedding = "PromptEmbedding";

    /// <summary>"NegativePromptEmbedding": text embeddings of the negative prompt (Single vector of 77·D).</summary>
    public const string NegativePromptEmbedding = "NegativePromptEmbedding";

    /// <summary>"Latents": denoised latents (Single vector of 4·h·w).</summary>
    public const string Latents = "Latents";

    /// <summary>"ImageIndex": which of a row's images an output row holds, when a row gives several.</summary>
    public const string ImageIndex = "ImageIndex";
}

using Microsoft.Extensions.Logging;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Imaging;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.TextEncoding;
using MLNet.Diffusion.Tokenization;
using MLNet.Diffusion.Vae;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion;

/// <summary>
/// Text-to-image, image-to-image and inpainting with a Stable Diffusion ONNX folder: text encoding, the
/// denoising loop with classifier-free guidance, and VAE decoding (and encoding, for init images). Each stage
/// is also callable alone (<see cref="EncodeText"/>, <see cref="EncodeImage"/>, <see cref="Denoise(ReadOnlySpan{float}, ReadOnlySpan{float}, IReadOnlyList{ImagePrompt}, GenerationOptions, IProgress{DiffusionProgress}?, CancellationToken)"/>,
/// <see cref="Decode"/>), which is what the ML.NET transforms build on. One instance holds one ONNX Runtime
/// session per component; it is safe to call from several threads at once (each call has its own scheduler
/// and buffers), and <see cref="Dispose"/> releases the sessions only once no call is running on them.
/// </summary>
public sealed partial class StableDiffusionPipeline : IDisposable
{
    private readonly ILogger? _logger;
    private readonly LoadedModelStore.Lease _model;
    private readonly Lazy<TextEmbedding> _emptyPrompt;
    private readonly Lazy<TextEmbedding> _unconditional;

    private StableDiffusionPipeline(LoadedModelStore.Lease model, ILogger? logger, int? maxSequenceLength)
    {
        _model = model;
        _logger = logger;
        T5Length = model.Model.PromptEncoder.Layout == ConditioningLayout.Clip ? 0 : ResolveT5Length(maxSequenceLength);
        _emptyPrompt = new(EncodeEmptyPrompt, LazyThreadSafetyMode.ExecutionAndPublication);
        _unconditional = new(UnconditionalDefault, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>
    /// Opens a model folder and loads its components, or shares them: every pipeline loaded from the same folder (however
    /// it is spelled) with the same runtime settings, in this process, uses one set of ONNX Runtime sessions, which are
    /// released when the last of those pipelines is disposed. The dependency-injection registrations and the ML.NET
    /// transforms load through the same store.
    /// </summary>
    /// <param name="modelDirectory">A diffusers/Optimum ONNX export folder.</param>
    /// <param name="options">Device, fallback, threads and logging; null for CPU defaults. The logger receives this
    /// pipeline's messages (and the loading messages, when this call loads the model).</param>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">A component is missing (named in the message).</exception>
    /// <exception cref="InvalidDataException">A component does not fit the contract (named in the message).</exception>
    public static StableDiffusionPipeline Load(string modelDirectory, DiffusionRuntimeOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDirectory);
        options ??= new DiffusionRuntimeOptions();
        SettingLimits.ThrowIf(SettingLimits.MaxSequenceLength($"{nameof(DiffusionRuntimeOptions)}.{nameof(DiffusionRuntimeOptions.MaxSequenceLength)}", options.MaxSequenceLength), nameof(options));
        var lease = LoadedModelStore.Acquire(modelDirectory, options);
        try
        {
            return new(lease, options.Logger, options.MaxSequenceLength);
        }
        catch
        {
            lease.Dispose();
            throw;
        }
    }

    /// <summary>
    /// T5's tokens per prompt (SD3, FLUX.1; 0 for the CLIP families): the requested length, else the one the transformer's
    /// fixed sequence axis implies, else the family's default (256 for SD3 and FLUX.1-schnell, 512 for FLUX.1-dev, as their
    /// model cards use). A request that contradicts a fixed axis is refused, naming the model file.
    /// </summary>
    internal int T5Length { get; }

    private int ResolveT5Length(int? requested)
    {
        var encoder = _model.Model.PromptEncoder;
        int clipPart = encoder.ConditioningLength(0), fixedLength = UNet.FixedSequenceLength;
        int? fixedT5 = fixedLength > 0 ? fixedLength - clipPart : encoder.T5?.FixedSequenceLength > 0 ? encoder.T5.FixedSequenceLength : null;
        if (encoder.T5 is null) return fixedT5 ?? requested ?? DefaultT5Length; // SD3 without T5: zeros of T positions
        if (fixedT5 is int t && requested is int r && r != t)
            throw new ArgumentException($"The {UNet.ComponentName} model '{UNet.ModelPath}' fixes encoder_hidden_states' sequence axis to {fixedLength} positions, " +
                $"so it takes {t} T5 tokens; {r} were asked for. Leave the max sequence length unset (DiffusionRuntimeOptions.MaxSequenceLength, the CLI's --max-sequence-length) or set it to {t}.");
        if (fixedT5 is int f && f is < 1 or > SettingLimits.MaxT5Tokens)
            throw new InvalidDataException($"The {UNet.ComponentName} model '{UNet.ModelPath}' fixes encoder_hidden_states' sequence axis to {fixedLength} positions, which leaves {f} for T5 (1 to {SettingLimits.MaxT5Tokens}).");
        int length = fixedT5 ?? requested ?? DefaultT5Length;
        encoder.T5.CheckSequenceLength(length);
        return length;
    }

    /// <summary>256 for SD3 and FLUX.1-schnell, 512 for FLUX.1-dev (which takes the guidance scale as an input).</summary>
    private int DefaultT5Length => Family == ModelFamily.Flux && UNet.Guidance is not null ? 512 : 256;

    /// <summary>The model folder, checked and opened.</summary>
    internal DiffusionModelFolder Folder => _model.Model.Folder;

    /// <summary>The model folder's full path.</summary>
    public string ModelDirectory => Folder.Directory;

    /// <summary>The folder's scheduler configuration.</summary>
    public SchedulerConfig SchedulerConfig => _model.Model.SchedulerConfig;

    /// <summary>The text encoders (one, or SDXL's two) with their tokenizers. In low-memory mode this describes them
    /// (widths, sequence length) but its sessions are released: runs go through <see cref="LoadedModel.PromptEncoders"/>.</summary>
    internal PromptEncoder PromptEncoder => _model.Model.PromptEncoder;

    /// <summary>The first text encoder (with its tokenizer): it names the sequence length and, unless in low-memory mode, counts the runs.</summary>
    internal TextEncoder TextEncoder => PromptEncoder.Primary;

    /// <summary>The UNet.</summary>
    internal UNet UNet => _model.Model.UNet;

    /// <summary>The VAE decoder (in low-memory mode, its description: runs go through <see cref="LoadedModel.VaeDecoders"/>).</summary>
    internal VaeDecoder VaeDecoder => _model.Model.VaeDecoders.Description;

    /// <summary>The VAE encoder, when the folder has one (in low-memory mode, its description: runs go through <see cref="LoadedModel.VaeEncoders"/>).</summary>
    internal VaeEncoder? VaeEncoder => _model.Model.VaeEncoders?.Description;

    /// <summary>The shared model's components (tests: whether on-demand ones are loaded).</summary>
    internal LoadedModel Model => _model.Model;

    /// <summary>The model's family (SD 1.x, 2.x, SDXL, the SDXL refiner, SD3 or FLUX.1), read from its components.</summary>
    public ModelFamily Family => _model.Model.Family;

    /// <summary>
    /// Whether the model takes the guidance scale as an input instead of classifier-free guidance: a latent consistency
    /// model's guidance embedding (<c>timestep_cond</c>), FLUX.1-dev's <c>guidance</c>; FLUX.1-schnell, distilled without
    /// guidance, too. Such a model runs once per image at any guidance scale.
    /// </summary>
    public bool UsesGuidanceEmbedding => UNet.TakesGuidanceWithoutCfg;

    /// <summary>The device the components run on.</summary>
    public ExecutionDevice Device => _model.Model.Device;

    /// <summary>Why the requested CUDA device was not used, if it was not.</summary>
    public string? FallbackReason => _model.Model.FallbackReason;

    /// <summary>The default image size: the denoiser's <c>sample_size</c> × 8, else its fixed input size × 8, else 1024 for
    /// FLUX.1 (diffusers' <c>default_sample_size</c> 128), else 512.</summary>
    public int DefaultSize => Folder.UnetSampleSize is int s ? s * 8
        : !UNet.IsPacked && UNet.SampleSpec.Dimensions[2] > 0 ? UNet.SampleSpec.Dimensions[2] * 8
        : Family == ModelFamily.Flux ? 1024 : 512;

    /// <summary>Generates one image.</summary>
    public GeneratedImage Generate(string prompt, long seed = 0, GenerationOptions? options = null, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Generate([new ImagePrompt(prompt, seed)], options, progress, cancellationToken)[0];

    /// <summary>
    /// Generates one image per entry of <paramref name="images"/>, in the same order: from noise, or from an entry's
    /// <see cref="ImagePrompt.InitImage"/> (image-to-image, and inpainting with a <see cref="ImagePrompt.Mask"/>). Each
    /// entry may set its own steps, size, guidance scale and strength; what it leaves null comes from
    /// <paramref name="options"/>. Entries with the same steps, size, guidance on or off, and start step (all text-to-image
    /// ones, and init images whose strengths skip the same number of steps) share one UNet batch; with guidance the
    /// unconditional and conditional halves of every image share each UNet call. Every distinct prompt and negative prompt
    /// is encoded once, all in one text-encoder run. An image's result does not depend on the other entries.
    /// </summary>
    /// <exception cref="ArgumentException">A setting is out of range, or an image request is inconsistent (a mask without an init image or of another size); the message names it.</exception>
    /// <exception cref="InvalidOperationException">An init image is given but the folder has no VAE encoder.</exception>
    /// <exception cref="NotSupportedException">The UNet is an inpainting UNet and an entry has no init image.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled; no partial result is returned.</exception>
    public IReadOnlyList<GeneratedImage> Generate(IReadOnlyList<ImagePrompt> images, GenerationOptions? options = null, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(images);
        var output = Run(images, options ?? new GenerationOptions(), decode: true, progress, cancellationToken);
        var result = new GeneratedImage[images.Count];
        for (int i = 0; i < result.Length; i++) result[i] = new GeneratedImage(output.Images![i], images[i], output.Latents[i]);
        return result;
    }

    /// <summary>
    /// One generation call, in the order of diffusers' <c>StableDiffusionPipeline.__call__</c>: check the inputs, encode the
    /// prompts, then for each UNet batch prepare the timesteps and the latents and run the denoising loop, and decode. The
    /// ML.NET transforms call this with the requests they build from rows.
    /// </summary>
    /// <param name="requests">The images to generate.</param>
    /// <param name="options">The settings the requests leave null, and the scheduler, η and guidance rescale.</param>
    /// <param name="decode">False stops at the latents: the output has no images.</param>
    /// <param name="progress">Receives the stages' reports.</param>
    /// <param name="cancellationToken">Checked before every model call and passed to ONNX Runtime.</param>
    /// <param name="requestNames">What to call each request in messages (the ML.NET layer: "data row 8"); null: "image i".</param>
    internal GenerationOutput Run(IReadOnlyList<ImagePrompt> requests, GenerationOptions options, bool decode, IProgress<DiffusionProgress>? progress,
        CancellationToken cancellationToken, IReadOnlyList<string>? requestNames = null)
    {
        using var lease = Enter();
        // 0. check_inputs: every request, before any model runs; group the requests into UNet batches.
        var plan = Plan(requests, options);
        if (plan.Count == 0) return GenerationOutput.Empty;
        // 1. encode_prompt: each distinct prompt and negative prompt once.
        var embeddings = EncodePrompts(plan, requestNames, progress, cancellationToken);
        // 2–4. per UNet batch: set_timesteps, prepare_latents, the denoising loop.
        var latents = DenoiseCore(plan, embeddings, progress, cancellationToken);
        // 5. vae.decode, each image at its own size.
        var images = decode ? DecodeCore(latents, i => LatentSize(plan.Resolved[i].Batch), options.VaeTiling, progress, cancellationToken) : null;
        return new GenerationOutput(embeddings, latents, images);
    }

    /// <summary>
    /// Encodes prompts into [N, 77·k, D] text embeddings (flattened): a prompt longer than 75 tokens (or with
    /// <c>BREAK</c>) takes k chunks of 77 positions, as AUTOMATIC1111 splits it, where the UNet's sequence axis is dynamic.
    /// </summary>
    /// <exception cref="ArgumentException">The prompts take different numbers of chunks (one array cannot hold them: encode
    /// them in separate calls), or a prompt is longer than the UNet takes.</exception>
    /// <exception cref="NonFiniteLatentsException">The text encoder returned NaN or ±Infinity.</exception>
    public float[] EncodeText(IReadOnlyList<string> prompts, CancellationToken cancellationToken = default)
    {
        using var lease = Enter();
        var encoded = EncodeTextCore(prompts, null, cancellationToken);
        if (encoded.ChunkCounts.Length > 1 && encoded.ChunkCounts.Any(k => k != encoded.ChunkCounts[0]))
            throw new ArgumentException(
                $"The prompts take different numbers of chunks of {TextEncoder.SequenceLength - 2} tokens ({string.Join(", ", encoded.ChunkCounts)}), so their " +
                $"embeddings do not form one [N, {TextEncoder.SequenceLength}·k, D] array. Encode them in separate calls, or generate with Generate, which batches them by length.", nameof(prompts));
        return encoded.Hidden;
    }

    /// <summary>
    /// Encodes <paramref name="texts"/> in one text-encoder run, each distinct text once; equal texts share one [77·k·D]
    /// array (read-only; k chunks of a long prompt). The ML.NET text-encoding stage calls this.
    /// </summary>
    internal TextEmbedding[] EncodeTexts(IReadOnlyList<string> texts, IReadOnlyList<TextOwner>? owners, CancellationToken cancellationToken)
    {
        using var lease = Enter();
        return EncodeDistinct(texts, owners, cancellationToken);
    }

    /// <summary>
    /// The unconditional half of guidance for a request without a negative prompt, made once per pipeline: the empty
    /// prompt's embeddings [77·D] (and pooled [P]), or zeros of those sizes when the folder's <c>model_index.json</c> sets
    /// <c>force_zeros_for_empty_prompt</c> (SDXL; diffusers' <c>StableDiffusionXLPipeline.encode_prompt</c>).
    /// </summary>
    internal TextEmbedding UnconditionalEmbedding
    {
        get
        {
            using var lease = Enter();
            return _unconditional.Value;
        }
    }

    private TextEmbedding UnconditionalDefault() => Folder.ForceZerosForEmptyPrompt ? ZerosLike(_emptyPrompt.Value) : _emptyPrompt.Value;

    /// <summary>The empty prompt's embeddings [77·D] (and pooled [P]), made once: what pads a shorter prompt or negative
    /// prompt to the other's number of chunks (AUTOMATIC1111's <c>cond_stage_model_empty_prompt</c>).</summary>
    private TextEmbedding EncodeEmptyPrompt()
    {
        var empty = EncodeTextCore([""], null, CancellationToken.None);
        return new TextEmbedding(empty.Hidden, empty.Pooled);
    }

    private static TextEmbedding ZerosLike(TextEmbedding e) => new(new float[e.Hidden.Length], e.Pooled is null ? null : new float[e.Pooled.Length]);

    /// <summary>Whether a request's negative prompt stands for "no negative prompt", which takes <see cref="UnconditionalEmbedding"/>.</summary>
    internal static bool IsNoNegativePrompt(string? negativePrompt) => string.IsNullOrEmpty(negativePrompt);

    private EncodedTexts EncodeTextCore(IReadOnlyList<string> prompts, IReadOnlyList<TextOwner>? owners, CancellationToken cancellationToken)
    {
        using var hold = _model.Model.PromptEncoders.Acquire();
        var encoder = hold.Value;
        // The UNet's sequence axis decides whether a prompt may take more than one chunk: refused before any model runs.
        int chunkLength = encoder.SequenceLength;
        var embeddings = encoder.Encode(prompts, cancellationToken, _logger, owners,
            (owner, chunks) => UNet.CheckPromptLength(owner.SentenceStart, chunks.TokenCount, chunks.ChunkCount, chunkLength), T5Length);
        if (embeddings.Hidden.Length > 0)
        {
            int chunkRows = embeddings.ChunkCounts.Sum();
            var rowToPrompt = new int[chunkRows];
            for (int i = 0, row = 0; i < embeddings.ChunkCounts.Length; row += embeddings.ChunkCounts[i++]) rowToPrompt.AsSpan(row, embeddings.ChunkCounts[i]).Fill(i);
            NonFiniteLatentsException.ThrowIfNonFinite(embeddings.Hidden, DiffusionStage.EncodingText, "text encoder output", 0, prompts.Count, null, embeddings.Hidden.Length / chunkRows,
                rowToPrompt, source: new NonFiniteSource(encoder.Primary, inputIsIds: true));
        }
        if (embeddings.Pooled is { Length: > 0 } pooled)
            NonFiniteLatentsException.ThrowIfNonFinite(pooled, DiffusionStage.EncodingText, "pooled text encoder output", 0, prompts.Count, null, pooled.Length / prompts.Count,
                source: new NonFiniteSource(encoder.Encoders[^1], inputIsIds: true));
        return embeddings;
    }

    /// <summary>
    /// Encode the prompts: each request's prompt and, when its guidance is on, its negative prompt (null reads as empty).
    /// Every distinct text is encoded once, all in one text-encoder run; the encoder treats batch rows independently, so N
    /// seeds of one prompt with the empty negative prompt cost two rows, not 2N. A text with prompt editing or alternation
    /// stands for each of its scheduled texts (<see cref="PromptSchedule"/>); its embedding is its first call's, and its
    /// <see cref="ConditioningSchedule"/> the rest.
    /// </summary>
    private PromptEmbedding[] EncodePrompts(GenerationPlan plan, IReadOnlyList<string>? requestNames, IProgress<DiffusionProgress>? progress,
        CancellationToken cancellationToken)
    {
        progress?.Report(new DiffusionProgress(DiffusionStage.EncodingText, 0, 1));
        int n = plan.Count;
        string NameOf(int i) => requestNames?[i] ?? $"image {i + 1}";
        var texts = new List<string>(2 * n);
        var owners = new List<TextOwner>(2 * n);
        // A guided request without a negative prompt takes the model's unconditional default (the empty prompt's
        // embeddings, or zeros with force_zeros_for_empty_prompt), made once per pipeline.
        bool zeros = Folder.ForceZerosForEmptyPrompt;
        string? NegativeOf(int i) =>
            !plan.Resolved[i].Batch.Guided || zeros && IsNoNegativePrompt(plan.Requests[i].NegativePrompt) ? null : plan.Requests[i].NegativePrompt ?? "";
        // Prompt editing and alternation: a scheduled text stands for its scheduled texts, each encoded here.
        var scheduled = ScheduleTexts(plan, NegativeOf);
        var promptAt = new int[n];
        for (int i = 0; i < n; i++)
        {
            promptAt[i] = texts.Count;
            AddTexts(texts, owners, plan.Requests[i].Prompt ?? throw new ArgumentNullException("images", $"The prompt of {NameOf(i)} is null."),
                scheduled[i].Prompt, TextOwner.PromptOf(NameOf(i)));
        }
        var negativeAt = new int[n];
        for (int i = 0; i < n; i++)
        {
            negativeAt[i] = -1;
            if (NegativeOf(i) is not { } negative) continue;
            negativeAt[i] = texts.Count;
            AddTexts(texts, owners, negative, scheduled[i].Negative, TextOwner.NegativePromptOf(NameOf(i)));
        }
        var encoded = EncodeDistinct(texts, owners, cancellationToken);
        var result = new PromptEmbedding[n];
        var zeroEmbeddings = new Dictionary<int, TextEmbedding>(); // by size (chunk count), from this call's embeddings, so no extra encoder run is needed
        for (int i = 0; i < n; i++)
        {
            var cond = encoded[promptAt[i]];
            TextEmbedding? uncond = !plan.Resolved[i].Batch.Guided ? null
                : negativeAt[i] < 0
                    ? zeroEmbeddings.TryGetValue(cond.Hidden.Length, out var z) ? z : zeroEmbeddings[cond.Hidden.Length] = ZerosLike(cond)
                : encoded[negativeAt[i]];
            result[i] = new PromptEmbedding(cond.Hidden, uncond?.Hidden)
            {
                ConditionalPooled = cond.Pooled,
                UnconditionalPooled = uncond?.Pooled,
                Schedule = ScheduleOf(scheduled[i].Prompt, encoded, promptAt[i], scheduled[i].Calls),
                NegativeSchedule = negativeAt[i] < 0 ? null : ScheduleOf(scheduled[i].Negative, encoded, negativeAt[i], scheduled[i].Calls),
            };
        }
        progress?.Report(new DiffusionProgress(DiffusionStage.EncodingText, 1, 1));
        return result;
    }

    /// <summary>Encodes each distinct text of <paramref name="texts"/> once, in one run; equal texts share one array.</summary>
    /// <param name="texts">The texts.</param>
    /// <param name="owners">Whose each text is (one per text; null: by position); a text shared by several owners is
    /// named by all of them.</param>
    /// <param name="cancellationToken">Cancels the run.</param>
    private TextEmbedding[] EncodeDistinct(IReadOnlyList<string> texts, IReadOnlyList<TextOwner>? owners, CancellationToken cancellationToken)
    {
        if (texts.Count == 0) return [];
        var distinct = new List<string>();
        var indexOf = new Dictionary<string, int>(StringComparer.Ordinal);
        var rows = new int[texts.Count];
        for (int i = 0; i < rows.Length; i++)
        {
            if (indexOf.TryGetValue(texts[i], out rows[i])) continue;
            rows[i] = distinct.Count;
            indexOf.Add(texts[i], rows[i]);
            distinct.Add(texts[i]);
        }
        List<TextOwner>[]? ownersOf = null;
        if (owners is not null)
        {
            ownersOf = new List<TextOwner>[distinct.Count];
            for (int i = 0; i < rows.Length; i++) (ownersOf[rows[i]] ??= []).Add(owners[i]);
        }
        var all = EncodeTextCore(distinct, ownersOf?.Select(TextOwner.Merge).ToArray(), cancellationToken);
        int perChunk = all.Hidden.Length / all.ChunkCounts.Sum(), pooledPer = (all.Pooled?.Length ?? 0) / distinct.Count;
        var encoded = new TextEmbedding[distinct.Count];
        for (int i = 0, offset = 0; i < encoded.Length; offset += all.ChunkCounts[i++] * perChunk)
            encoded[i] = new TextEmbedding(all.Hidden.AsSpan(offset, all.ChunkCounts[i] * perChunk).ToArray(), all.Pooled?.AsSpan(i * pooledPer, pooledPer).ToArray());
        var result = new TextEmbedding[texts.Count];
        for (int i = 0; i < result.Length; i++) result[i] = encoded[rows[i]];
        return result;
    }

    /// <summary>
    /// The denoising loop from seeded noise to final latents [N, 4, h, w] (text-to-image): the <see cref="ImagePrompt"/>
    /// overload with requests that carry only a seed and a guidance scale.
    /// </summary>
    /// <param name="conditional">Prompt embeddings [N, 77·k, D] (k chunks of 77 positions, as <see cref="EncodeText"/> gives them; one k for all).</param>
    /// <param name="unconditional">Negative-prompt embeddings [N, 77·k, D]; needed when any guidance scale is above 1.</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="guidanceScales">One guidance scale per image.</param>
    /// <param name="options">Size, steps, scheduler, η.</param>
    /// <param name="progress">Receives one report per UNet call.</param>
    /// <param name="cancellationToken">Checked before every UNet call and passed to ONNX Runtime.</param>
    public float[] Denoise(ReadOnlySpan<float> conditional, ReadOnlySpan<float> unconditional, IReadOnlyList<long> seeds, IReadOnlyList<float> guidanceScales,
        GenerationOptions options, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        ArgumentNullException.ThrowIfNull(guidanceScales);
        int n = seeds.Count;
        if (guidanceScales.Count != n) throw new ArgumentException($"{guidanceScales.Count} guidance scales for {n} images.", nameof(guidanceScales));
        var requests = new ImagePrompt[n];
        for (int i = 0; i < n; i++) requests[i] = new ImagePrompt(Prompt: "", seeds[i]) { GuidanceScale = guidanceScales[i] };
        return Denoise(conditional, unconditional, requests, options, progress, cancellationToken);
    }

    /// <summary>
    /// The denoising for N images described by <paramref name="images"/>, from given embeddings: each one's seed, steps,
    /// size and guidance scale (each else <paramref name="options"/>') and, optionally, init image, mask and strength;
    /// their prompt texts are not read. Returns the final latents in request order, each image's [4, h/8, w/8] after the
    /// previous one's ([N, 4, h, w] when the images share a size). Images are batched as
    /// <see cref="Generate(IReadOnlyList{ImagePrompt}, GenerationOptions?, IProgress{DiffusionProgress}?, CancellationToken)"/> batches them.
    /// </summary>
    /// <remarks>
    /// Each image's own generator (its seed) first draws the initial noise ε, then the VAE encoder's samples
    /// (Optimum's <c>latent_parameters</c> form), then the stochastic schedulers' noise. A text-to-image entry, and
    /// an init image at strength 1 without a mask, start from ε × <see cref="DiffusionScheduler.InitNoiseSigma"/>
    /// without encoding anything, so they give exactly the text-to-image result for the seed.
    /// </remarks>
    /// <param name="conditional">Prompt embeddings [N, 77·k, D] (k chunks of 77 positions, as <see cref="EncodeText"/> gives them; one k for all).</param>
    /// <param name="unconditional">Negative-prompt embeddings [N, 77·k, D]; needed when any guidance scale is above 1.</param>
    /// <param name="images">One entry per image.</param>
    /// <param name="options">Size, steps, scheduler, η, default guidance; init images and masks are stretched to the size.</param>
    /// <param name="progress">Receives one report per encoded image and per UNet call.</param>
    /// <param name="cancellationToken">Checked before every model call and passed to ONNX Runtime.</param>
    /// <exception cref="ArgumentException">A setting or an image request is invalid; the message names it.</exception>
    /// <exception cref="InvalidOperationException">An init image is given but the folder has no VAE encoder.</exception>
    /// <exception cref="NotSupportedException">The UNet is an inpainting UNet and an entry has no init image.</exception>
    public float[] Denoise(ReadOnlySpan<float> conditional, ReadOnlySpan<float> unconditional, IReadOnlyList<ImagePrompt> images,
        GenerationOptions options, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        using var lease = Enter();
        ArgumentNullException.ThrowIfNull(images);
        var plan = Plan(images, options);
        if (plan.Count == 0) return [];
        var latents = DenoiseCore(plan, SplitEmbeddings(conditional, unconditional, plan), progress, cancellationToken);
        var result = new float[latents.Sum(l => l.Length)];
        for (int i = 0, offset = 0; i < latents.Length; offset += latents[i++].Length) latents[i].CopyTo(result, offset);
        return result;
    }

    /// <summary>The denoising from embeddings given per request (the ML.NET denoising stage): each request's final latents, in request order.</summary>
    internal float[][] Denoise(IReadOnlyList<ImagePrompt> requests, PromptEmbedding[] embeddings, GenerationOptions options, IProgress<DiffusionProgress>? progress, CancellationToken cancellationToken)
    {
        using var lease = Enter();
        var plan = Plan(requests, options);
        if (embeddings.Length != plan.Count) throw new ArgumentException($"{embeddings.Length} prompt embeddings for {plan.Count} images.", nameof(embeddings));
        return plan.Count == 0 ? [] : DenoiseCore(plan, embeddings, progress, cancellationToken);
    }

    /// <summary>Cuts [N, 77·k, D] prompt and negative-prompt embeddings into each request's rows.</summary>
    private PromptEmbedding[] SplitEmbeddings(ReadOnlySpan<float> conditional, ReadOnlySpan<float> unconditional, GenerationPlan plan)
    {
        int n = plan.Count, seqLen = ConditioningLength;
        if (conditional.Length == 0 || conditional.Length % (n * seqLen) != 0)
            throw new ArgumentException($"Prompt embeddings have {conditional.Length} values, which is not {n} × {seqLen} × D.", nameof(conditional));
        if (plan.Resolved.Any(r => r.Batch.Guided) && unconditional.Length != conditional.Length)
            throw new ArgumentException($"Guidance above 1 needs negative-prompt embeddings of the same size as the prompt embeddings ({conditional.Length} values), got {unconditional.Length}.", nameof(unconditional));
        int row = conditional.Length / n;
        var result = new PromptEmbedding[n];
        for (int i = 0; i < n; i++)
            result[i] = new PromptEmbedding(conditional.Slice(i * row, row).ToArray(), plan.Resolved[i].Batch.Guided ? unconditional.Slice(i * row, row).ToArray() : null);
        return result;
    }

    /// <summary>Decodes latents [N, 4, h, w] into N images.</summary>
    public MLImage[] Decode(ReadOnlySpan<float> latents, int count, int latentHeight, int latentWidth, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        using var lease = Enter();
        if (latentHeight < 1 || latentWidth < 1 || latentHeight > 512 || latentWidth > 512)
            throw new ArgumentOutOfRangeException(latentHeight < 1 || latentHeight > 512 ? nameof(latentHeight) : nameof(latentWidth),
                $"Latent height and width must be from 1 to 512 (images of 8 to 4096 pixels); got {latentHeight}×{latentWidth}.");
        int LatentChannels = UNet.LatentChannels;
        if (count < 1 || latents.Length != (long)count * LatentChannels * latentHeight * latentWidth)
            throw new ArgumentException($"{latents.Length} latent values do not form [{count}, {LatentChannels}, {latentHeight}, {latentWidth}].", nameof(latents));
        int per = latents.Length / count;
        var each = new float[count][];
        for (int i = 0; i < count; i++) each[i] = latents.Slice(i * per, per).ToArray();
        return DecodeCore(each, _ => (latentHeight, latentWidth), VaeTiling.Auto, progress, cancellationToken);
    }

    /// <summary>Decode: image i from <paramref name="latents"/>[i] at latent size <paramref name="latentSizeOf"/>(i), one VAE decoder run each.</summary>
    private MLImage[] DecodeCore(float[][] latents, Func<int, (int Height, int Width)> latentSizeOf, VaeTiling tiling, IProgress<DiffusionProgress>? progress, CancellationToken cancellationToken)
    {
        int count = latents.Length;
        var images = new MLImage[count];
        try
        {
            using var hold = _model.Model.VaeDecoders.Acquire();
            var decoder = hold.Value;
            for (int i = 0; i < count; i++)
            {
                var (latentHeight, latentWidth) = latentSizeOf(i);
                var pixels = decoder.Decode(latents[i], latentHeight, latentWidth, out int height, out int width, cancellationToken, tiling);
                NonFiniteLatentsException.ThrowIfNonFinite(pixels, DiffusionStage.Decoding, "VAE decoder output", i + 1, count, null, pixels.Length, imageOffset: i,
                    source: new NonFiniteSource(decoder, latents[i]));
                images[i] = ImageTensor.ToImage(pixels, width, height);
                progress?.Report(new DiffusionProgress(DiffusionStage.Decoding, i + 1, count));
            }
        }
        catch (Exception e)
        {
            foreach (var image in images) image?.Dispose();
            if (e is OnnxRuntimeException && cancellationToken.IsCancellationRequested)
                throw new OperationCanceledException("Generation was cancelled during VAE decoding.", cancellationToken);
            throw;
        }
        return images;
    }

    /// <summary>The latent size of a batch's images.</summary>
    private static (int Height, int Width) LatentSize(BatchKey key) => (key.Height / BatchShape.VaeScale, key.Width / BatchShape.VaeScale);

    /// <summary>The size's limits, then whether this model makes it (a UNet with a fixed latent size makes one size):
    /// checked before any model runs, so the refusal comes before text encoding, in pixels.</summary>
    private void ValidateSize(int width, int height)
    {
        ValidateSizeLimits(width, height);
        UNet.CheckImageSize(width, height);
    }

    /// <summary>Width and height within <see cref="SettingLimits"/>' size limits (any model).</summary>
    private static void ValidateSizeLimits(int width, int height)
    {
        SettingLimits.ThrowIf(SettingLimits.Size("width", width), "width");
        SettingLimits.ThrowIf(SettingLimits.Size("height", height), "height");
    }

    private static void ValidateCommon(GenerationOptions options) =>
        SettingLimits.ThrowIfAny(SettingLimits.Problems(options, nameof(GenerationOptions)), nameof(options));

    private readonly object _gate = new();
    private int _activeCalls;
    private bool _disposed, _released;

    /// <summary>Marks a call in progress, so that <see cref="Dispose"/> cannot release sessions under it.</summary>
    /// <exception cref="ObjectDisposedException">The pipeline has been disposed.</exception>
    private CallLease Enter()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _activeCalls++;
        }
        return new CallLease(this);
    }

    private void Exit()
    {
        bool release;
        lock (_gate)
        {
            _activeCalls--;
            release = _disposed && _activeCalls == 0 && !_released;
            if (release) _released = true;
        }
        if (release) ReleaseComponents();
    }

    private readonly struct CallLease(StableDiffusionPipeline pipeline) : IDisposable
    {
        public void Dispose() => pipeline.Exit();
    }

    /// <summary>
    /// Releases this pipeline's hold on the shared sessions (they are released when no pipeline holds them). Calls
    /// already running on other threads finish first (or stop when their tokens are cancelled): the hold is released when
    /// the last of them returns, never under a running model. Calls that start afterwards throw
    /// <see cref="ObjectDisposedException"/>.
    /// </summary>
    public void Dispose()
    {
        bool release;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            release = _activeCalls == 0 && !_released;
            if (release) _released = true;
        }
        if (release) ReleaseComponents();
    }

    private void ReleaseComponents() => _model.Dispose();
}

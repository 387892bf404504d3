using System.Numerics.Tensors;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Imaging;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Noise;
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
/// is also callable alone (<see cref="EncodeText"/>, <see cref="EncodeImage"/>, <see cref="Denoise(ReadOnlySpan{float}, ReadOnlySpan{float}, IReadOnlyList{ImagePrompt}, int, int, GenerationOptions, IProgress{DiffusionProgress}?, CancellationToken)"/>,
/// <see cref="Decode"/>), which is what the ML.NET transforms build on. One instance holds one ONNX Runtime
/// session per component; it is safe to call from several threads at once (each call has its own scheduler
/// and buffers), and <see cref="Dispose"/> releases the sessions only once no call is running on them.
/// </summary>
public sealed partial class StableDiffusionPipeline : IDisposable
{
    private readonly ILogger? _logger;
    private readonly LoadedModelStore.Lease _model;

    private StableDiffusionPipeline(LoadedModelStore.Lease model, ILogger? logger)
    {
        _model = model;
        _logger = logger;
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
        return new(LoadedModelStore.Acquire(modelDirectory, options), options.Logger);
    }

    /// <summary>The model folder, checked and opened.</summary>
    internal DiffusionModelFolder Folder => _model.Model.Folder;

    /// <summary>The model folder's full path.</summary>
    public string ModelDirectory => Folder.Directory;

    /// <summary>The folder's scheduler configuration.</summary>
    public SchedulerConfig SchedulerConfig => _model.Model.SchedulerConfig;

    /// <summary>The text encoder (with its tokenizer).</summary>
    internal TextEncoder TextEncoder => _model.Model.TextEncoder;

    /// <summary>The UNet.</summary>
    internal UNet UNet => _model.Model.UNet;

    /// <summary>The VAE decoder.</summary>
    internal VaeDecoder VaeDecoder => _model.Model.VaeDecoder;

    /// <summary>The VAE encoder, when the folder has one.</summary>
    internal VaeEncoder? VaeEncoder => _model.Model.VaeEncoder;

    /// <summary>The device the components run on.</summary>
    public ExecutionDevice Device => _model.Model.Device;

    /// <summary>Why the requested CUDA device was not used, if it was not.</summary>
    public string? FallbackReason => _model.Model.FallbackReason;

    /// <summary>The default image size: the UNet's <c>sample_size</c> × 8, else its fixed input size × 8, else 512.</summary>
    public int DefaultSize => Folder.UnetSampleSize is int s ? s * 8 : UNet.SampleSpec.Dimensions[2] > 0 ? UNet.SampleSpec.Dimensions[2] * 8 : 512;

    /// <summary>Generates one image.</summary>
    public GeneratedImage Generate(string prompt, long seed = 0, GenerationOptions? options = null, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Generate([new ImagePrompt(prompt, seed)], options, progress, cancellationToken)[0];

    /// <summary>
    /// Generates one image per entry of <paramref name="images"/>: from noise, or from an entry's
    /// <see cref="ImagePrompt.InitImage"/> (image-to-image, and inpainting with a <see cref="ImagePrompt.Mask"/>).
    /// Images that start at the same step (all text-to-image ones, and init images whose strengths skip the same
    /// number of steps) share one UNet batch; with guidance the unconditional and conditional halves of every
    /// image share each UNet call.
    /// </summary>
    /// <exception cref="ArgumentException">A setting is out of range, or an image request is inconsistent (a mask without an init image or of another size); the message names it.</exception>
    /// <exception cref="InvalidOperationException">An init image is given but the folder has no VAE encoder.</exception>
    /// <exception cref="NotSupportedException">The UNet is an inpainting UNet and an entry has no init image.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled; no partial result is returned.</exception>
    public IReadOnlyList<GeneratedImage> Generate(IReadOnlyList<ImagePrompt> images, GenerationOptions? options = null, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        using var lease = Enter();
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0) return [];
        options ??= new GenerationOptions();
        var (width, height) = ResolveSize(options);
        ValidateCommon(options);
        int n = images.Count;
        var plan = PlanImages(images, options); // every request checked before any model runs
        bool cfg = plan.Any(p => p.Guidance > 1);

        progress?.Report(new DiffusionProgress(DiffusionStage.EncodingText, 0, 1));
        // Every distinct text, prompt or negative prompt, is encoded once and all in one text-encoder run: N seeds of one
        // prompt with the empty negative prompt cost two rows, not 2N (the encoder treats batch rows independently).
        var texts = new List<string>();
        var rowOf = new Dictionary<string, int>(StringComparer.Ordinal);
        int RowOf(string text)
        {
            if (rowOf.TryGetValue(text, out int row)) return row;
            rowOf.Add(text, texts.Count);
            texts.Add(text);
            return texts.Count - 1;
        }
        int[] promptRows = images.Select((image, i) => RowOf(image.Prompt ?? throw new ArgumentNullException(nameof(images), $"Prompt {i} is null."))).ToArray();
        int[]? negativeRows = cfg ? images.Select(i => RowOf(i.NegativePrompt ?? "")).ToArray() : null;
        float[] encoded = EncodeTextCore(texts, cancellationToken);
        float[] cond = RowsOf(encoded, texts.Count, promptRows);
        float[]? uncond = negativeRows is null ? null : RowsOf(encoded, texts.Count, negativeRows);
        progress?.Report(new DiffusionProgress(DiffusionStage.EncodingText, 1, 1));

        var latents = DenoiseCore(cond, uncond, images, width, height, options, progress, cancellationToken);
        var decoded = DecodeCore(latents, n, height / 8, width / 8, progress, cancellationToken);
        int per = latents.Length / n;
        var result = new GeneratedImage[n];
        for (int i = 0; i < n; i++)
            result[i] = new GeneratedImage(decoded[i], images[i], latents.AsSpan(i * per, per).ToArray());
        return result;
    }

    /// <summary>The rows <paramref name="rows"/> of [count, …] <paramref name="encoded"/>, in that order, as one flat array.</summary>
    private static float[] RowsOf(float[] encoded, int count, int[] rows)
    {
        int per = encoded.Length / count;
        var result = new float[rows.Length * per];
        for (int i = 0; i < rows.Length; i++) encoded.AsSpan(rows[i] * per, per).CopyTo(result.AsSpan(i * per));
        return result;
    }

    /// <summary>Encodes prompts into [N, 77, D] text embeddings (flattened).</summary>
    /// <exception cref="NonFiniteLatentsException">The text encoder returned NaN or ±Infinity.</exception>
    public float[] EncodeText(IReadOnlyList<string> prompts, CancellationToken cancellationToken = default)
    {
        using var lease = Enter();
        return EncodeTextCore(prompts, cancellationToken);
    }

    private float[] EncodeTextCore(IReadOnlyList<string> prompts, CancellationToken cancellationToken)
    {
        var embeddings = TextEncoder.Encode(prompts, cancellationToken, _logger);
        if (embeddings.Length > 0)
            NonFiniteLatentsException.ThrowIfNonFinite(embeddings, DiffusionStage.EncodingText, "text encoder output", 0, prompts.Count, null, embeddings.Length / prompts.Count,
                source: new NonFiniteSource(TextEncoder, inputIsIds: true));
        return embeddings;
    }

    /// <summary>
    /// The denoising loop: from seeded noise to final latents [N, 4, h, w] for N images (text-to-image).
    /// The same as the <see cref="ImagePrompt"/> overload with prompts that carry only a seed and a guidance scale.
    /// </summary>
    /// <param name="conditional">Prompt embeddings [N, 77, D].</param>
    /// <param name="unconditional">Negative-prompt embeddings [N, 77, D]; needed when any guidance scale is above 1.</param>
    /// <param name="seeds">One seed per image.</param>
    /// <param name="guidanceScales">One guidance scale per image.</param>
    /// <param name="width">Image width (multiple of 8).</param>
    /// <param name="height">Image height (multiple of 8).</param>
    /// <param name="options">Steps, scheduler, η.</param>
    /// <param name="progress">Receives one report per UNet call.</param>
    /// <param name="cancellationToken">Checked before every UNet call and passed to ONNX Runtime.</param>
    public float[] Denoise(ReadOnlySpan<float> conditional, ReadOnlySpan<float> unconditional, IReadOnlyList<long> seeds, IReadOnlyList<float> guidanceScales,
        int width, int height, GenerationOptions options, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(seeds);
        ArgumentNullException.ThrowIfNull(guidanceScales);
        int n = seeds.Count;
        if (guidanceScales.Count != n) throw new ArgumentException($"{guidanceScales.Count} guidance scales for {n} images.", nameof(guidanceScales));
        var prompts = new ImagePrompt[n];
        for (int i = 0; i < n; i++) prompts[i] = new ImagePrompt("", seeds[i]) { GuidanceScale = guidanceScales[i] };
        return Denoise(conditional, unconditional, prompts, width, height, options, progress, cancellationToken);
    }

    /// <summary>
    /// The denoising loop for N images described by <paramref name="images"/>: each one's seed, guidance scale
    /// (else <see cref="GenerationOptions.GuidanceScale"/>) and, optionally, init image, mask and strength (their
    /// prompt texts are not read: the embeddings are given). Returns the final latents [N, 4, h, w] in request
    /// order. Images are grouped by the step they start at; each group is one UNet batch.
    /// </summary>
    /// <remarks>
    /// Each image's own generator (its seed) first draws the initial noise ε, then the VAE encoder's samples
    /// (Optimum's <c>latent_parameters</c> form), then the stochastic schedulers' noise. A text-to-image entry, and
    /// an init image at strength 1 without a mask, start from ε × <see cref="DiffusionScheduler.InitNoiseSigma"/>
    /// without encoding anything, so they give exactly the text-to-image result for the seed.
    /// </remarks>
    /// <param name="conditional">Prompt embeddings [N, 77, D].</param>
    /// <param name="unconditional">Negative-prompt embeddings [N, 77, D]; needed when any guidance scale is above 1.</param>
    /// <param name="images">One entry per image.</param>
    /// <param name="width">Image width (multiple of 8); init images and masks are stretched to it.</param>
    /// <param name="height">Image height (multiple of 8).</param>
    /// <param name="options">Steps, scheduler, η, default guidance.</param>
    /// <param name="progress">Receives one report per encoded image and per UNet call.</param>
    /// <param name="cancellationToken">Checked before every model call and passed to ONNX Runtime.</param>
    /// <exception cref="ArgumentException">A setting or an image request is invalid; the message names it.</exception>
    /// <exception cref="InvalidOperationException">An init image is given but the folder has no VAE encoder.</exception>
    /// <exception cref="NotSupportedException">The UNet is an inpainting UNet and an entry has no init image.</exception>
    public float[] Denoise(ReadOnlySpan<float> conditional, ReadOnlySpan<float> unconditional, IReadOnlyList<ImagePrompt> images,
        int width, int height, GenerationOptions options, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        using var lease = Enter();
        return DenoiseCore(conditional, unconditional, images, width, height, options, progress, cancellationToken);
    }

    private float[] DenoiseCore(ReadOnlySpan<float> conditional, ReadOnlySpan<float> unconditional, IReadOnlyList<ImagePrompt> images,
        int width, int height, GenerationOptions options, IProgress<DiffusionProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(options);
        ValidateSize(width, height);
        ValidateCommon(options);
        int n = images.Count;
        if (n == 0) return [];
        var plan = PlanImages(images, options);
        int seqLen = TextEncoder.SequenceLength;
        if (conditional.Length == 0 || conditional.Length % (n * seqLen) != 0)
            throw new ArgumentException($"Prompt embeddings have {conditional.Length} values, which is not {n} × {seqLen} × D.", nameof(conditional));
        int d = conditional.Length / (n * seqLen), rowLength = seqLen * d;
        bool cfg = plan.Any(p => p.Guidance > 1);
        if (cfg && unconditional.Length != conditional.Length)
            throw new ArgumentException($"Guidance above 1 needs negative-prompt embeddings of the same size as the prompt embeddings ({conditional.Length} values), got {unconditional.Length}.", nameof(unconditional));

        // Group by start step, in order of first appearance; each group gets its own scheduler.
        var groups = Enumerable.Range(0, n).GroupBy(i => plan[i].StartStep).Select(g => g.ToArray()).ToArray();
        var schedulers = new DiffusionScheduler[groups.Length];
        int totalCalls = 0, totalEncodes = 0;
        for (int g = 0; g < groups.Length; g++)
        {
            schedulers[g] = CreateScheduler(options);
            totalCalls += schedulers[g].CallCount - schedulers[g].FirstCallOfStep(plan[groups[g][0]].StartStep);
            totalEncodes += groups[g].Count(i => NeedsEncoding(images[i], plan[i].StartStep));
        }
        var counter = new ProgressCounter(progress, totalCalls, totalEncodes);

        int h = height / 8, w = width / 8, per = 4 * h * w;
        var result = new float[n * per];
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        try
        {
            for (int g = 0; g < groups.Length; g++)
            {
                var rows = groups[g];
                bool groupCfg = rows.Any(i => plan[i].Guidance > 1);
                var cond = new float[rows.Length * rowLength];
                var uncond = groupCfg ? new float[rows.Length * rowLength] : null;
                for (int j = 0; j < rows.Length; j++)
                {
                    conditional.Slice(rows[j] * rowLength, rowLength).CopyTo(cond.AsSpan(j * rowLength));
                    if (uncond is not null) unconditional.Slice(rows[j] * rowLength, rowLength).CopyTo(uncond.AsSpan(j * rowLength));
                }
                var items = rows.Select(i => images[i]).ToArray();
                var guidance = rows.Select(i => plan[i].Guidance).ToArray();
                var latents = DenoiseGroup(cond, uncond, d, rows, items, guidance, options.GuidanceRescale, plan[rows[0]].StartStep, schedulers[g], width, height, counter, runOptions, cancellationToken);
                for (int j = 0; j < rows.Length; j++)
                    latents.AsSpan(j * per, per).CopyTo(result.AsSpan(rows[j] * per));
            }
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("Generation was cancelled during a model call.", cancellationToken);
        }
        return result;
    }

    private DiffusionScheduler CreateScheduler(GenerationOptions options)
    {
        var scheduler = SchedulerFactory.Create(options.Scheduler, SchedulerConfig);
        if (scheduler is DdimScheduler ddim) ddim.Eta = options.Eta;
        scheduler.SetTimesteps(options.Steps);
        return scheduler;
    }

    /// <summary>
    /// One UNet batch of images that start at the same step: initial latents (noise, or the init images'
    /// latents noised to the first kept call), the model calls with guidance, and for masked images on a
    /// 4-channel UNet the blend that keeps the init image outside the mask.
    /// </summary>
    private float[] DenoiseGroup(float[] conditional, float[]? unconditional, int d, int[] rows, ImagePrompt[] items, float[] guidance, float guidanceRescale,
        int startStep, DiffusionScheduler scheduler, int width, int height, ProgressCounter counter, RunOptions runOptions, CancellationToken cancellationToken)
    {
        int n = items.Length, seqLen = TextEncoder.SequenceLength;
        bool cfg = unconditional is not null;
        int h = height / 8, w = width / 8, hw = h * w, per = 4 * hw, total = n * per;
        int begin = scheduler.FirstCallOfStep(startStep), calls = scheduler.CallCount;

        var generators = new GaussianNoise[n];
        for (int i = 0; i < n; i++) generators[i] = new GaussianNoise(items[i].Seed);
        var noise = new BatchNoise(generators);
        var initialNoise = new float[total];
        noise.Fill(initialNoise); // the first draw of every image's generator, as in text-to-image

        var images = PrepareImages(rows, items, startStep, width, height, generators, counter, cancellationToken);
        var latents = new float[total];
        if (startStep == 0)
            TensorPrimitives.Multiply(initialNoise, scheduler.InitNoiseSigma, latents);
        else if (begin == calls)
            images.Latents!.CopyTo(latents, 0); // strength 0: nothing to denoise
        else
            scheduler.AddNoise(images.Latents!, initialNoise, begin, latents);
        if (begin > 0) scheduler.SetBeginIndex(begin);

        bool inpaintUnet = UNet.InChannels == 9;
        using var binding = UNet.Bind(cfg ? 2 * n : n, h, w, seqLen, d);
        if (unconditional is not null)
        {
            var hidden = new float[2 * conditional.Length];
            unconditional.CopyTo(hidden, 0);
            conditional.CopyTo(hidden, conditional.Length);
            binding.SetHiddenStates(hidden);
        }
        else
        {
            binding.SetHiddenStates(conditional);
        }
        int rowStride = UNet.InChannels * hw, batch = binding.Batch;
        if (inpaintUnet)
        {
            // diffusers' StableDiffusionInpaintPipeline: sample = scaled latents ++ mask ++ masked-image latents,
            // the last two the same for both guidance halves.
            for (int r = 0; r < batch; r++)
            {
                binding.WriteSample(images.LatentMasks!.AsSpan(r % n * hw, hw), r * rowStride + per);
                binding.WriteSample(images.MaskedLatents!.AsSpan(r % n * per, per), r * rowStride + per + hw);
            }
        }
        var scaled = new float[total];
        var prediction = new float[binding.OutputLength];
        var guided = cfg ? new float[total] : prediction;
        var known = images.Blend ? new float[total] : null;

        while (scheduler.StepIndex < calls)
        {
            cancellationToken.ThrowIfCancellationRequested();
            float t = scheduler.Timesteps[scheduler.StepIndex];
            scheduler.ScaleModelInput(latents, scaled);
            if (inpaintUnet)
            {
                for (int r = 0; r < batch; r++) binding.WriteSample(scaled.AsSpan(r % n * per, per), r * rowStride);
            }
            else
            {
                binding.WriteSample(scaled, 0);
                if (cfg) binding.WriteSample(scaled, total);
            }
            binding.Run(t, prediction, runOptions);
            if (cfg) ClassifierFreeGuidance.Apply(prediction, guided, n, per, guidance, guidanceRescale);
            // One vectorised pass each over the model output and the new latents: a NaN or ±Infinity (fp16 overflow)
            // is reported at the call where it appears rather than decoded into a black image.
            int call = scheduler.StepIndex + 1;
            NonFiniteLatentsException.ThrowIfNonFinite(guided.AsSpan(0, total), DiffusionStage.Denoising, "UNet output", call, calls, t, per, rows,
                source: new NonFiniteSource(UNet, scaled, modelOutput: prediction, derivedBy: cfg ? "classifier-free guidance" : null, scheduler: scheduler));
            scheduler.Step(guided, latents, noise);
            if (known is not null)
            {
                // diffusers' 4-channel inpainting: outside the mask, the init latents noised (with the initial
                // noise) to the level of the next call; after the last call, the init latents themselves.
                if (scheduler.StepIndex < calls) scheduler.AddNoise(images.Latents!, initialNoise, scheduler.StepIndex, known);
                else images.Latents!.CopyTo(known, 0);
                BlendOutsideMasks(latents, known, images, hw);
            }
            NonFiniteLatentsException.ThrowIfNonFinite(latents, DiffusionStage.Denoising, "latents after the scheduler step", call, calls, t, per, rows,
                source: new NonFiniteSource(UNet, modelOutput: guided.AsSpan(0, total), derivedBy: "the scheduler step", scheduler: scheduler));
            counter.Step();
        }
        return latents;
    }

    /// <summary>Decodes latents [N, 4, h, w] into N images.</summary>
    public Microsoft.ML.Data.MLImage[] Decode(ReadOnlySpan<float> latents, int count, int latentHeight, int latentWidth, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        using var lease = Enter();
        return DecodeCore(latents, count, latentHeight, latentWidth, progress, cancellationToken);
    }

    private Microsoft.ML.Data.MLImage[] DecodeCore(ReadOnlySpan<float> latents, int count, int latentHeight, int latentWidth, IProgress<DiffusionProgress>? progress, CancellationToken cancellationToken)
    {
        if (latentHeight < 1 || latentWidth < 1 || latentHeight > 512 || latentWidth > 512)
            throw new ArgumentOutOfRangeException(latentHeight < 1 || latentHeight > 512 ? nameof(latentHeight) : nameof(latentWidth),
                $"Latent height and width must be from 1 to 512 (images of 8 to 4096 pixels); got {latentHeight}×{latentWidth}.");
        if (count < 1 || latents.Length != (long)count * 4 * latentHeight * latentWidth)
            throw new ArgumentException($"{latents.Length} latent values do not form [{count}, 4, {latentHeight}, {latentWidth}].", nameof(latents));
        int per = latents.Length / count;
        var images = new Microsoft.ML.Data.MLImage[count];
        try
        {
            for (int i = 0; i < count; i++)
            {
                var pixels = VaeDecoder.Decode(latents.Slice(i * per, per), latentHeight, latentWidth, out int height, out int width, cancellationToken);
                NonFiniteLatentsException.ThrowIfNonFinite(pixels, DiffusionStage.Decoding, "VAE decoder output", i + 1, count, null, pixels.Length, imageOffset: i,
                    source: new NonFiniteSource(VaeDecoder, latents.Slice(i * per, per)));
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

    private (int Width, int Height) ResolveSize(GenerationOptions options)
    {
        int width = options.Width ?? DefaultSize, height = options.Height ?? DefaultSize;
        ValidateSize(width, height);
        return (width, height);
    }

    private static void ValidateSize(int width, int height)
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

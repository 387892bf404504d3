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

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// Text-to-image generation with a Stable Diffusion ONNX folder: text encoding, the denoising loop with
/// classifier-free guidance, and VAE decoding. Each stage is also callable alone
/// (<see cref="EncodeText"/>, <see cref="Denoise"/>, <see cref="Decode"/>), which is what the ML.NET
/// transforms build on. One instance holds one ONNX Runtime session per component; it is safe to call
/// from several threads at once (each call has its own scheduler and buffers).
/// </summary>
public sealed class StableDiffusionPipeline : IDisposable
{
    private readonly ILogger? _logger;

    private StableDiffusionPipeline(DiffusionModelFolder folder, DiffusionRuntimeOptions options)
    {
        Folder = folder;
        _logger = options.Logger;
        SchedulerConfig = SchedulerConfig.Load(folder.SchedulerConfigPath);
        SchedulerFactory.Create(null, SchedulerConfig); // fail at load time on an unknown or broken scheduler
        var tokenizer = ClipTokenizer.Load(folder.TokenizerDirectory);
        var sessions = new OnnxSessionFactory(options);
        var loaded = new List<IDisposable>();
        try
        {
            TextEncoder = new TextEncoder(folder.TextEncoderPath, tokenizer, sessions, _logger);
            loaded.Add(TextEncoder);
            UNet = new UNet(folder.UnetPath, sessions);
            loaded.Add(UNet);
            VaeDecoder = new VaeDecoder(folder.VaeDecoderPath, sessions, folder.VaeScalingFactor);
            loaded.Add(VaeDecoder);
            if (folder.VaeEncoderPath is { } encoderPath)
            {
                VaeEncoder = new VaeEncoder(encoderPath, sessions, folder.VaeScalingFactor);
                loaded.Add(VaeEncoder);
            }
        }
        catch
        {
            foreach (var d in loaded) d.Dispose();
            throw;
        }
        if (TextEncoder.EmbeddingWidth > 0 && UNet.EmbeddingWidth > 0 && TextEncoder.EmbeddingWidth != UNet.EmbeddingWidth)
        {
            Dispose();
            throw new InvalidDataException($"Model folder '{folder.Directory}': the text encoder gives embeddings of width {TextEncoder.EmbeddingWidth} but the UNet's encoder_hidden_states takes {UNet.EmbeddingWidth}.");
        }
        Device = UNet.Device;
        FallbackReason = sessions.FallbackReason;
        _logger?.LogInformation("Loaded {Folder} on {Device}{Fallback}.", folder.Directory, Device, FallbackReason is null ? "" : $" ({FallbackReason})");
    }

    /// <summary>Opens a model folder and loads its components.</summary>
    /// <param name="modelDirectory">A diffusers/Optimum ONNX export folder.</param>
    /// <param name="options">Device, fallback, threads and logging; null for CPU defaults.</param>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">A component is missing (named in the message).</exception>
    /// <exception cref="InvalidDataException">A component does not fit the contract (named in the message).</exception>
    public static StableDiffusionPipeline Load(string modelDirectory, DiffusionRuntimeOptions? options = null) =>
        new(DiffusionModelFolder.Open(modelDirectory), options ?? new DiffusionRuntimeOptions());

    /// <summary>The model folder.</summary>
    public DiffusionModelFolder Folder { get; }

    /// <summary>The folder's scheduler configuration.</summary>
    public SchedulerConfig SchedulerConfig { get; }

    /// <summary>The text encoder (with its tokenizer).</summary>
    public TextEncoder TextEncoder { get; }

    /// <summary>The UNet.</summary>
    public UNet UNet { get; }

    /// <summary>The VAE decoder.</summary>
    public VaeDecoder VaeDecoder { get; }

    /// <summary>The VAE encoder, when the folder has one.</summary>
    public VaeEncoder? VaeEncoder { get; }

    /// <summary>The device the components run on.</summary>
    public ExecutionDevice Device { get; }

    /// <summary>Why the requested CUDA device was not used, if it was not.</summary>
    public string? FallbackReason { get; }

    /// <summary>The default image size: the UNet's <c>sample_size</c> × 8, else its fixed input size × 8, else 512.</summary>
    public int DefaultSize => Folder.UnetSampleSize is int s ? s * 8 : UNet.SampleSpec.Dimensions[2] > 0 ? UNet.SampleSpec.Dimensions[2] * 8 : 512;

    /// <summary>Generates one image.</summary>
    public GeneratedImage Generate(string prompt, long seed = 0, GenerationOptions? options = null, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Generate([new ImagePrompt(prompt, seed)], options, progress, cancellationToken)[0];

    /// <summary>
    /// Generates one image per entry of <paramref name="images"/>, all in one UNet batch (with guidance,
    /// the unconditional and conditional halves of every image share each UNet call).
    /// </summary>
    /// <exception cref="ArgumentException">A setting is out of range; the message names it.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled; no partial result is returned.</exception>
    public IReadOnlyList<GeneratedImage> Generate(IReadOnlyList<ImagePrompt> images, GenerationOptions? options = null, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0) return [];
        options ??= new GenerationOptions();
        var (width, height) = ResolveSize(options);
        ValidateCommon(options);
        int n = images.Count;
        var guidance = new float[n];
        for (int i = 0; i < n; i++)
        {
            if (images[i] is null) throw new ArgumentNullException(nameof(images), $"Image request {i} is null.");
            guidance[i] = images[i].GuidanceScale ?? options.GuidanceScale;
            if (!float.IsFinite(guidance[i])) throw new ArgumentOutOfRangeException(nameof(images), guidance[i], $"Image {i}: the guidance scale must be a finite number.");
        }
        bool cfg = guidance.Any(g => g > 1);

        progress?.Report(new DiffusionProgress(DiffusionStage.EncodingText, 0, 1));
        var prompts = images.Select(i => i.Prompt).ToArray();
        float[] cond = EncodeText(prompts, cancellationToken);
        float[]? uncond = cfg ? EncodeText(images.Select(i => i.NegativePrompt ?? "").ToArray(), cancellationToken) : null;
        progress?.Report(new DiffusionProgress(DiffusionStage.EncodingText, 1, 1));

        var latents = Denoise(cond, uncond, images.Select(i => i.Seed).ToArray(), guidance, width, height, options, progress, cancellationToken);
        var decoded = Decode(latents, n, height / 8, width / 8, progress, cancellationToken);
        int per = latents.Length / n;
        var result = new GeneratedImage[n];
        for (int i = 0; i < n; i++)
            result[i] = new GeneratedImage(decoded[i], images[i], latents.AsSpan(i * per, per).ToArray());
        return result;
    }

    /// <summary>Encodes prompts into [N, 77, D] text embeddings (flattened).</summary>
    public float[] EncodeText(IReadOnlyList<string> prompts, CancellationToken cancellationToken = default) =>
        TextEncoder.Encode(prompts, cancellationToken);

    /// <summary>
    /// The denoising loop: from seeded noise to final latents [N, 4, h, w] for N images.
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
        ArgumentNullException.ThrowIfNull(options);
        ValidateSize(width, height);
        ValidateCommon(options);
        int n = seeds.Count;
        if (n == 0) return [];
        if (guidanceScales.Count != n) throw new ArgumentException($"{guidanceScales.Count} guidance scales for {n} images.", nameof(guidanceScales));
        if (UNet.InChannels != 4)
            throw new NotSupportedException($"The unet model '{UNet.ModelPath}' is an inpainting UNet ({UNet.InChannels} input channels); text-to-image needs a 4-channel UNet.");
        int seqLen = TextEncoder.SequenceLength;
        if (conditional.Length == 0 || conditional.Length % (n * seqLen) != 0)
            throw new ArgumentException($"Prompt embeddings have {conditional.Length} values, which is not {n} × {seqLen} × D.", nameof(conditional));
        int d = conditional.Length / (n * seqLen);
        bool cfg = false;
        for (int i = 0; i < n; i++) cfg |= guidanceScales[i] > 1;
        if (cfg && unconditional.Length != conditional.Length)
            throw new ArgumentException($"Guidance above 1 needs negative-prompt embeddings of the same size as the prompt embeddings ({conditional.Length} values), got {unconditional.Length}.", nameof(unconditional));

        var scheduler = SchedulerFactory.Create(options.Scheduler, SchedulerConfig);
        if (scheduler is DdimScheduler ddim) ddim.Eta = options.Eta;
        scheduler.SetTimesteps(options.Steps);

        int h = height / 8, w = width / 8, per = 4 * h * w, total = n * per;
        var noise = new BatchNoise(seeds);
        var latents = new float[total];
        noise.Fill(latents);
        TensorPrimitives.Multiply(latents, scheduler.InitNoiseSigma, latents);

        using var binding = UNet.Bind(cfg ? 2 * n : n, h, w, seqLen, d);
        if (cfg)
        {
            var hidden = new float[2 * conditional.Length];
            unconditional.CopyTo(hidden);
            conditional.CopyTo(hidden.AsSpan(conditional.Length));
            binding.SetHiddenStates(hidden);
        }
        else
        {
            binding.SetHiddenStates(conditional);
        }
        var scaled = new float[total];
        var prediction = new float[binding.OutputLength];
        var guided = cfg ? new float[total] : prediction;

        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        int calls = scheduler.CallCount;
        try
        {
            while (scheduler.StepIndex < calls)
            {
                cancellationToken.ThrowIfCancellationRequested();
                float t = scheduler.Timesteps[scheduler.StepIndex];
                scheduler.ScaleModelInput(latents, scaled);
                binding.WriteSample(scaled, 0);
                if (cfg) binding.WriteSample(scaled, total);
                binding.Run(t, prediction, runOptions);
                if (cfg) ApplyGuidance(prediction, guided, n, per, guidanceScales);
                scheduler.Step(guided, latents, noise);
                progress?.Report(new DiffusionProgress(DiffusionStage.Denoising, scheduler.StepIndex, calls));
            }
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("Generation was cancelled during a UNet call.", cancellationToken);
        }
        return latents;
    }

    /// <summary>
    /// Classifier-free guidance (Ho and Salimans 2022): ε = ε_u + g·(ε_c − ε_u), per image, from a UNet batch
    /// whose first half is unconditional and second half conditional.
    /// </summary>
    private static void ApplyGuidance(ReadOnlySpan<float> prediction, Span<float> guided, int n, int per, IReadOnlyList<float> scales)
    {
        int half = n * per;
        for (int i = 0; i < n; i++)
        {
            var u = prediction.Slice(i * per, per);
            var c = prediction.Slice(half + i * per, per);
            var g = guided.Slice(i * per, per);
            TensorPrimitives.Subtract(c, u, g);
            TensorPrimitives.MultiplyAdd(g, scales[i], u, g);
        }
    }

    /// <summary>Decodes latents [N, 4, h, w] into N images.</summary>
    public Microsoft.ML.Data.MLImage[] Decode(ReadOnlySpan<float> latents, int count, int latentHeight, int latentWidth, IProgress<DiffusionProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (count < 1 || latents.Length != count * 4 * latentHeight * latentWidth)
            throw new ArgumentException($"{latents.Length} latent values do not form [{count}, 4, {latentHeight}, {latentWidth}].", nameof(latents));
        int per = latents.Length / count;
        var images = new Microsoft.ML.Data.MLImage[count];
        try
        {
            for (int i = 0; i < count; i++)
            {
                var pixels = VaeDecoder.Decode(latents.Slice(i * per, per), latentHeight, latentWidth, out int height, out int width, cancellationToken);
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
        if (width < 8 || height < 8 || width > 4096 || height > 4096 || width % 8 != 0 || height % 8 != 0)
            throw new ArgumentOutOfRangeException(width % 8 != 0 || width < 8 || width > 4096 ? "width" : "height",
                $"Width and height must be multiples of 8 from 8 to 4096 (the VAE works on 8×8 pixel blocks); got {width}×{height}.");
    }

    private static void ValidateCommon(GenerationOptions options)
    {
        if (options.Steps < 1 || options.Steps > 1000)
            throw new ArgumentOutOfRangeException(nameof(options), options.Steps, $"Steps must be from 1 to 1000; got {options.Steps}.");
        if (!float.IsFinite(options.GuidanceScale))
            throw new ArgumentOutOfRangeException(nameof(options), options.GuidanceScale, "GuidanceScale must be a finite number.");
        if (!(options.Eta >= 0 && options.Eta <= 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.Eta, $"Eta must be from 0 to 1; got {options.Eta}.");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        TextEncoder?.Dispose();
        UNet?.Dispose();
        VaeDecoder?.Dispose();
        VaeEncoder?.Dispose();
    }
}

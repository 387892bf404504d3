// Microsoft.Extensions.AI marks its image-generation abstraction experimental ([Experimental("MEAI001")]).
// This file implements that abstraction, so it opts in to MEAI001 here; nothing else is suppressed.
#pragma warning disable MEAI001

using System.Globalization;
using Microsoft.Extensions.AI;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Hosting;

namespace MLNet.Diffusion;

/// <summary>
/// Text-to-image generation behind Microsoft.Extensions.AI's <see cref="IImageGenerator"/>, over a (shared)
/// <see cref="StableDiffusionPipeline"/>. Images come back as <see cref="DataContent"/> holding PNG bytes
/// (<c>image/png</c>), each with its seed in <see cref="AIContent.AdditionalProperties"/> under
/// <see cref="SeedProperty"/> so that it can be made again. Thread-safe: concurrent requests share the pipeline.
/// </summary>
/// <remarks>
/// <para>From <see cref="ImageGenerationOptions"/>: <see cref="ImageGenerationOptions.Count"/> (images; image i takes
/// seed base + i), <see cref="ImageGenerationOptions.ImageSize"/> (each side a multiple of 8),
/// <see cref="ImageGenerationOptions.MediaType"/> (only <c>image/png</c>) and, in
/// <see cref="ImageGenerationOptions.AdditionalProperties"/>, the model's own settings: <see cref="SeedProperty"/>,
/// <see cref="StepsProperty"/>, <see cref="GuidanceScaleProperty"/>, <see cref="NegativePromptProperty"/>,
/// <see cref="SchedulerProperty"/>, <see cref="NoiseProperty"/>, <see cref="EtaProperty"/>, <see cref="GuidanceRescaleProperty"/>, the guidance window
/// (<see cref="GuidanceIntervalLowProperty"/>, <see cref="GuidanceIntervalHighProperty"/>, <see cref="GuidanceEndProperty"/>) and, for the SDXL
/// refiner, <see cref="AestheticScoreProperty"/> and <see cref="NegativeAestheticScoreProperty"/> (numbers may be given as numbers, numeric strings or
/// JSON elements). Other additional properties are ignored, as are <see cref="ImageGenerationOptions.ModelId"/> (the
/// model is the pipeline's folder), <see cref="ImageGenerationOptions.ResponseFormat"/> (the data is always inline;
/// <see cref="DataContent.Uri"/> gives it as a data URI) and <see cref="ImageGenerationOptions.StreamingCount"/>.
/// Unset settings come from <see cref="DefaultOptions"/>; with no seed given, a random base seed is drawn.</para>
/// <para>ControlNets: when <see cref="DefaultOptions"/> has <see cref="GenerationOptions.ControlNets"/>, the request's
/// <see cref="ImageGenerationRequest.OriginalImages"/> are their control images, one <see cref="DataContent"/> (image/png,
/// or another format <see cref="ImageLoader"/> reads) per ControlNet in order, and <see cref="ControlScaleProperty"/> sets
/// the conditioning scale of all of them. The ControlNet folders come from the defaults only: a request cannot name one.
/// Without ControlNets, original images are refused (image editing is not supported).</para>
/// <para>Disposing the generator does not dispose the pipeline: the pipeline's owner (the caller, or the
/// <see cref="IDiffusionPipelineProvider"/> in a service container) does.</para>
/// </remarks>
public sealed class StableDiffusionImageGenerator : IImageGenerator
{
    /// <summary>The provider name in <see cref="ImageGeneratorMetadata"/>.</summary>
    public const string ProviderName = "MLNet.Diffusion";

    /// <summary>The only media type produced.</summary>
    public const string PngMediaType = "image/png";

    /// <summary>Additional property: the base seed (integer); image i of a request uses seed + i.</summary>
    public const string SeedProperty = "seed";

    /// <summary>Additional property: inference steps (integer, 1–1000).</summary>
    public const string StepsProperty = "steps";

    /// <summary>Additional property: the classifier-free guidance scale (number; 1 or less turns guidance off).</summary>
    public const string GuidanceScaleProperty = "guidance_scale";

    /// <summary>Additional property: what the images should not show (string).</summary>
    public const string NegativePromptProperty = "negative_prompt";

    /// <summary>Additional property: the scheduler, a short name such as <c>euler-a</c> or a diffusers class name (string).</summary>
    public const string SchedulerProperty = "scheduler";

    /// <summary>Additional property: the generator that turns the seed into noise, <c>default</c>, <c>torch</c> (diffusers'
    /// latents for the seed), <c>numpy</c> or <c>cuda</c> (string; <see cref="GenerationOptions.Noise"/>).</summary>
    public const string NoiseProperty = "noise";

    /// <summary>Additional property: DDIM's η (number, 0–1).</summary>
    public const string EtaProperty = "eta";

    /// <summary>Additional property: the guidance rescale φ (number, 0–1; <see cref="GenerationOptions.GuidanceRescale"/>).</summary>
    public const string GuidanceRescaleProperty = "guidance_rescale";

    /// <summary>Additional property: SDXL refiner's aesthetic score of the prompt half (number, 0–10; <see cref="GenerationOptions.AestheticScore"/>).</summary>
    public const string AestheticScoreProperty = "aesthetic_score";

    /// <summary>Additional property: SDXL refiner's aesthetic score of the negative half (number, 0–10; <see cref="GenerationOptions.NegativeAestheticScore"/>).</summary>
    public const string NegativeAestheticScoreProperty = "negative_aesthetic_score";

    /// <summary>Additional property: the lower end σ_lo of the guidance interval (number ≥ 0; <see cref="GenerationOptions.GuidanceIntervalLow"/>).</summary>
    public const string GuidanceIntervalLowProperty = "guidance_interval_low";

    /// <summary>Additional property: the upper end σ_hi of the guidance interval (number &gt; σ_lo; <see cref="GenerationOptions.GuidanceIntervalHigh"/>).</summary>
    public const string GuidanceIntervalHighProperty = "guidance_interval_high";

    /// <summary>Additional property: the fraction of the model calls that are guided (number, 0–1; <see cref="GenerationOptions.GuidanceEnd"/>).</summary>
    public const string GuidanceEndProperty = "guidance_end";

    /// <summary>Additional property: the ControlNet conditioning scale of every ControlNet (number; <see cref="ImagePrompt.ControlScale"/>).</summary>
    public const string ControlScaleProperty = "control_scale";

    private readonly ImageGeneratorMetadata _metadata;
    private readonly GenerationOptions _defaults;
    private readonly int _maxBatchSize;

    /// <summary>A generator over <paramref name="pipeline"/>.</summary>
    /// <param name="pipeline">The pipeline; the generator uses it but does not own it.</param>
    /// <param name="defaults">Settings a request does not give (copied); null: <see cref="GenerationOptions"/>'s defaults.</param>
    /// <param name="maxBatchSize">The most images generated in one UNet batch; larger counts run in several batches
    /// (an image depends only on its seed, so the split does not change it). Default 4.</param>
    public StableDiffusionImageGenerator(StableDiffusionPipeline pipeline, GenerationOptions? defaults = null, int maxBatchSize = 4)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatchSize, 1);
        Pipeline = pipeline;
        _defaults = defaults?.Clone() ?? new GenerationOptions();
        _maxBatchSize = maxBatchSize;
        string folder = pipeline.Folder.Directory;
        _metadata = new ImageGeneratorMetadata(ProviderName, new Uri(folder), folder);
    }

    /// <summary>The pipeline the images come from.</summary>
    public StableDiffusionPipeline Pipeline { get; }

    /// <summary>The settings used where a request gives none (a copy; changing it does not change the generator).</summary>
    public GenerationOptions DefaultOptions => _defaults.Clone();

    /// <summary>Generates <see cref="ImageGenerationOptions.Count"/> images (default 1) for the request's prompt.</summary>
    /// <returns>One <see cref="DataContent"/> per image: PNG bytes, media type <c>image/png</c>, name
    /// <c>{seed}.png</c>, and the seed under <see cref="SeedProperty"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="request"/> is null.</exception>
    /// <exception cref="ArgumentException">The prompt is missing, or a size, count or additional property is out of
    /// range or of the wrong type (the message names it).</exception>
    /// <exception cref="NotSupportedException">A media type other than <c>image/png</c> was asked for, or the request
    /// has <see cref="ImageGenerationRequest.OriginalImages"/> (image editing is not supported).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled; checked before
    /// every UNet call, and a running call is terminated.</exception>
    public async Task<ImageGenerationResponse> GenerateAsync(ImageGenerationRequest request, ImageGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var plan = Plan(request, options);
        cancellationToken.ThrowIfCancellationRequested();
        var contents = await Task.Run(() => Generate(plan, cancellationToken), cancellationToken).ConfigureAwait(false);
        return new ImageGenerationResponse(contents);
    }

    /// <summary>What a request asks for: <see cref="Count"/> images of one prompt, seeds <see cref="Seed"/> + i.</summary>
    private readonly record struct Request(string Prompt, string NegativePrompt, long Seed, int Count, GenerationOptions Generation,
        IReadOnlyList<byte[]> ControlImages, float? ControlScale);

    private List<AIContent> Generate(Request request, CancellationToken cancellationToken)
    {
        var contents = new List<AIContent>(Math.Min(request.Count, 64));
        var controlImages = new List<Microsoft.ML.Data.MLImage>(request.ControlImages.Count);
        try
        {
            for (int k = 0; k < request.ControlImages.Count; k++)
                controlImages.Add(ImageLoader.Load(request.ControlImages[k], $"ImageGenerationRequest.OriginalImages[{k}] (the control image of ControlNet {k})"));
            GenerateBatches(request, controlImages, contents, cancellationToken);
        }
        finally
        {
            foreach (var image in controlImages) image.Dispose();
        }
        return contents;
    }

    private void GenerateBatches(Request request, IReadOnlyList<Microsoft.ML.Data.MLImage> controlImages, List<AIContent> contents, CancellationToken cancellationToken)
    {
        // Batch by batch, so that memory follows the batch size, not the count.
        for (int start = 0; start < request.Count; start += _maxBatchSize)
        {
            var batch = new ImagePrompt[Math.Min(_maxBatchSize, request.Count - start)];
            for (int i = 0; i < batch.Length; i++)
                batch[i] = new ImagePrompt(request.Prompt, unchecked(request.Seed + start + i))
                {
                    NegativePrompt = request.NegativePrompt,
                    ControlImages = controlImages.Count == 0 ? null : controlImages,
                    ControlScale = request.ControlScale,
                };
            var images = Pipeline.Generate(batch, request.Generation, null, cancellationToken);
            try
            {
                foreach (var image in images)
                {
                    contents.Add(new DataContent(PngEncoder.Encode(image.Image), PngMediaType)
                    {
                        Name = string.Create(CultureInfo.InvariantCulture, $"{image.Prompt.Seed}.png"),
                        AdditionalProperties = new AdditionalPropertiesDictionary { [SeedProperty] = image.Prompt.Seed },
                    });
                }
            }
            finally
            {
                foreach (var image in images) image.Image.Dispose();
            }
        }
    }

    /// <summary>Checks the request and the options and resolves them against the defaults.</summary>
    private Request Plan(ImageGenerationRequest request, ImageGenerationOptions? options)
    {
        if (request.Prompt is null)
            throw new ArgumentException("ImageGenerationRequest.Prompt is required (an empty string generates without a prompt).", nameof(request));
        var controlImages = ControlImagesOf(request);

        var generation = _defaults.Clone();
        int count = options?.Count ?? 1;
        if (count < 1)
            throw new ArgumentOutOfRangeException(nameof(options), count, $"ImageGenerationOptions.Count must be 1 or more; got {count}.");
        if (options?.ImageSize is { } size)
        {
            if ((SettingLimits.Size("ImageGenerationOptions.ImageSize.Width", size.Width)
                 ?? SettingLimits.Size("ImageGenerationOptions.ImageSize.Height", size.Height)) is { } problem)
                throw new ArgumentException($"{problem} The size asked for is {size.Width}×{size.Height}; the nearest valid size is {Nearest(size.Width)}×{Nearest(size.Height)}.", nameof(options));
            generation.Width = size.Width;
            generation.Height = size.Height;
        }
        if (options?.MediaType is { } mediaType && !string.IsNullOrWhiteSpace(mediaType) && !ImageGenerationOptionsReader.IsPng(mediaType))
            throw new NotSupportedException($"ImageGenerationOptions.MediaType '{mediaType}' is not supported: StableDiffusionImageGenerator produces {PngMediaType} only.");

        var extra = options?.AdditionalProperties;
        if (ImageGenerationOptionsReader.GetInteger(extra, StepsProperty) is long steps)
        {
            SettingLimits.ThrowIf(SettingLimits.Steps($"ImageGenerationOptions.AdditionalProperties[\"{StepsProperty}\"]", (int)Math.Clamp(steps, int.MinValue, int.MaxValue)), nameof(options));
            generation.Steps = (int)steps;
        }
        ReadNumber(extra, GuidanceScaleProperty, SettingLimits.GuidanceScale, v => generation.GuidanceScale = v);
        ReadNumber(extra, EtaProperty, SettingLimits.Eta, v => generation.Eta = v);
        ReadNumber(extra, GuidanceRescaleProperty, SettingLimits.GuidanceRescale, v => generation.GuidanceRescale = v);
        ReadNumber(extra, AestheticScoreProperty, SettingLimits.AestheticScore, v => generation.AestheticScore = v);
        ReadNumber(extra, NegativeAestheticScoreProperty, SettingLimits.AestheticScore, v => generation.NegativeAestheticScore = v);
        ReadNumber(extra, GuidanceEndProperty, (name, v) => SettingLimits.GuidanceEnd(name, v), v => generation.GuidanceEnd = v);
        const string prefix = "ImageGenerationOptions.AdditionalProperties";
        if (ImageGenerationOptionsReader.GetNumber(extra, GuidanceIntervalLowProperty) is double low) generation.GuidanceIntervalLow = (float)low;
        if (ImageGenerationOptionsReader.GetNumber(extra, GuidanceIntervalHighProperty) is double high) generation.GuidanceIntervalHigh = (float)high;
        SettingLimits.ThrowIf(SettingLimits.GuidanceInterval($"{prefix}[\"{GuidanceIntervalLowProperty}\"]", $"{prefix}[\"{GuidanceIntervalHighProperty}\"]",
            generation.GuidanceIntervalLow, generation.GuidanceIntervalHigh), nameof(options));
        if (ImageGenerationOptionsReader.GetString(extra, SchedulerProperty) is { } scheduler && !string.IsNullOrWhiteSpace(scheduler))
            generation.Scheduler = scheduler;
        if (ImageGenerationOptionsReader.GetString(extra, NoiseProperty) is { } noise && !string.IsNullOrWhiteSpace(noise))
        {
            SettingLimits.ThrowIf(SettingLimits.NoiseName($"{prefix}[\"{NoiseProperty}\"]", noise), nameof(options));
            generation.Noise = MLNet.Diffusion.Noise.NoiseKindNames.Parse(noise)!.Value;
        }
        float? controlScale = null;
        if (ImageGenerationOptionsReader.GetNumber(extra, ControlScaleProperty) is double scale)
        {
            if (_defaults.ControlNets.Count == 0)
                throw new ArgumentException($"{prefix}[\"{ControlScaleProperty}\"] is set, but the generator has no ControlNets (GenerationOptions.ControlNets of its defaults).", nameof(options));
            SettingLimits.ThrowIf(SettingLimits.ControlScale($"{prefix}[\"{ControlScaleProperty}\"]", (float)scale), nameof(options));
            controlScale = (float)scale;
        }
        string negative = ImageGenerationOptionsReader.GetString(extra, NegativePromptProperty) ?? "";
        long seed = ImageGenerationOptionsReader.GetInteger(extra, SeedProperty) ?? Random.Shared.NextInt64(0, 1L << 32);
        return new Request(request.Prompt, negative, seed, count, generation, controlImages, controlScale);
    }

    /// <summary>
    /// The request's original images as the ControlNets' control images (encoded bytes, one per ControlNet of the defaults,
    /// in order; fewer leave the rest to each <see cref="ControlNetInput.Image"/>), or none.
    /// </summary>
    private IReadOnlyList<byte[]> ControlImagesOf(ImageGenerationRequest request)
    {
        var originals = request.OriginalImages?.ToArray() ?? [];
        if (originals.Length == 0) return [];
        int controlNets = _defaults.ControlNets.Count;
        if (controlNets == 0)
            throw new NotSupportedException("ImageGenerationRequest.OriginalImages is set, but StableDiffusionImageGenerator only generates from text; image editing is not supported. " +
                "Original images are read as control images when the generator's defaults have ControlNets (GenerationOptions.ControlNets).");
        if (originals.Length > controlNets)
            throw new ArgumentException($"ImageGenerationRequest.OriginalImages holds {originals.Length} images for the generator's {controlNets} ControlNets; give one control image per ControlNet, in order.", nameof(request));
        var result = new byte[originals.Length][];
        for (int k = 0; k < originals.Length; k++)
        {
            if (originals[k] is not DataContent { } data || !data.HasTopLevelMediaType("image"))
                throw new ArgumentException($"ImageGenerationRequest.OriginalImages[{k}] must be a DataContent holding an image (image/png); got {originals[k]?.GetType().Name ?? "null"}{(originals[k] is DataContent d ? $" of {d.MediaType}" : "")}.", nameof(request));
            result[k] = data.Data.ToArray();
        }
        return result;
    }


    private static int Nearest(int side) => Math.Clamp((int)Math.Round(side / (double)SettingLimits.SizeMultiple, MidpointRounding.AwayFromZero) * SettingLimits.SizeMultiple, SettingLimits.MinSize, SettingLimits.MaxSize);

    /// <summary>Reads the number property <paramref name="name"/> when present, checks it with <paramref name="check"/> (a
    /// <see cref="SettingLimits"/> rule, named as the caller wrote it) and applies it.</summary>
    private static void ReadNumber(AdditionalPropertiesDictionary? extra, string name, Func<string, float, string?> check, Action<float> apply)
    {
        if (ImageGenerationOptionsReader.GetNumber(extra, name) is not double value) return;
        SettingLimits.ThrowIf(check($"ImageGenerationOptions.AdditionalProperties[\"{name}\"]", (float)value), "options");
        apply((float)value);
    }

    /// <summary>
    /// <see cref="ImageGeneratorMetadata"/> (provider <see cref="ProviderName"/>, the model folder as default model id
    /// and as a file URI), the <see cref="StableDiffusionPipeline"/>, or this generator; null for anything else or
    /// for any <paramref name="serviceKey"/>.
    /// </summary>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ImageGeneratorMetadata)) return _metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(Pipeline)) return Pipeline;
        return null;
    }

    /// <summary>Does nothing: the pipeline belongs to whoever created it.</summary>
    public void Dispose() { }
}

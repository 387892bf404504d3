using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion;

// Checking a call's image requests and grouping them into UNet batches.
public sealed partial class StableDiffusionPipeline
{
    /// <summary>
    /// Checks the options and every request before any model runs, and resolves each request's steps, size, guidance and
    /// start step (what it leaves null comes from <paramref name="options"/>, then the model's default size).
    /// </summary>
    private GenerationPlan Plan(IReadOnlyList<ImagePrompt> images, GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(options);
        ValidateCommon(options);
        CheckSchedulerKind(options.Scheduler);
        var controlNets = LoadControlNets(options);
        var resolved = new ResolvedRequest[images.Count];
        for (int i = 0; i < images.Count; i++)
        {
            var p = images[i] ?? throw new ArgumentNullException(nameof(images), $"Image request {i} is null.");
            SettingLimits.ThrowIfAny(SettingLimits.Problems(p, $"Image {i}"), nameof(images));
            int steps = p.Steps ?? options.Steps;
            int width = p.Width ?? options.Width ?? DefaultSize, height = p.Height ?? options.Height ?? DefaultSize;
            ValidateSize(width, height);
            float guidance = p.GuidanceScale ?? options.GuidanceScale;
            int start = 0;
            if (p.InitLatents is not null || options.DenoisingStart is not null)
                CheckHandOff(p, i, options, width, height);
            else if (p.InitImage is null)
            {
                if (p.Mask is not null)
                    throw new ArgumentException($"Image {i}: a Mask needs an InitImage (the image whose white mask region is repainted); this request has none.", nameof(images));
                if (p.Strength is float s)
                    throw new ArgumentException($"Image {i}: Strength ({s}) applies to an InitImage; this request has none.", nameof(images));
                if (InpaintingUNet)
                    throw new NotSupportedException($"The unet model '{UNet.ModelPath}' is an inpainting UNet ({UNet.InChannels} input channels); text-to-image needs a 4-channel UNet. Give image {i} an InitImage (and a Mask) to inpaint.");
            }
            else
            {
                CheckImage(p.InitImage, i, "InitImage");
                if (p.Mask is not null) CheckImage(p.Mask, i, "Mask");
                if (p.Mask is not null && UNet.IsTransformer)
                    throw new NotSupportedException($"Image {i}: inpainting (a Mask) is not supported with {Family} models; image-to-image (an InitImage with a Strength, no Mask) is.");
                RequireEncoder(i);
                if (p.Mask is { } mask && (mask.Width != p.InitImage.Width || mask.Height != p.InitImage.Height))
                    throw new ArgumentException($"Image {i}: the Mask is {mask.Width}×{mask.Height} but the InitImage is {p.InitImage.Width}×{p.InitImage.Height}; the mask must have the init image's size.", nameof(images));
                start = SkippedSteps(steps, p.Strength ?? (p.Mask is null ? ImagePrompt.DefaultStrength : ImagePrompt.DefaultInpaintingStrength));
            }
            // A latent consistency model is distilled with guidance: its guidance embedding carries the scale and the
            // UNet runs once per image (diffusers' LatentConsistencyModelPipeline does no classifier-free guidance).
            // FLUX.1 is distilled too: dev takes the scale as its guidance input, schnell none (diffusers' FluxPipeline).
            bool guided = guidance > 1 && !UNet.TakesGuidanceWithoutCfg;
            if (controlNets.Length > 0) CheckControlImages(p, i, options);
            float? controlScale = controlNets.Length > 0 ? p.ControlScale : null;
            resolved[i] = new ResolvedRequest(new BatchKey(steps, width, height, guided, start, controlScale), guidance);
        }
        return new GenerationPlan(images, resolved, options) { ControlNets = controlNets };
    }

    /// <summary>
    /// A flow-matching transformer (SD3, FLUX.1) predicts a velocity and a UNet predicts noise (or v): a scheduler chosen
    /// for the call must step along what the model predicts, so the other kind is refused before any model runs.
    /// </summary>
    private void CheckSchedulerKind(string? scheduler)
    {
        if (string.IsNullOrWhiteSpace(scheduler)) return; // the folder's own
        bool flow = Schedulers.SchedulerFactory.IsFlowMatching(scheduler, SchedulerConfig);
        if (UNet.IsTransformer && !flow)
            throw new ArgumentException($"The scheduler '{scheduler}' steps along predicted noise, but this {Family} model's transformer predicts a velocity (flow matching): " +
                $"choose {string.Join(" or ", Schedulers.SchedulerFactory.FlowMatchingNames)}, or leave the scheduler unset for the folder's.", "options");
        if (!UNet.IsTransformer && flow)
            throw new ArgumentException($"The scheduler '{scheduler}' is a flow-matching sampler for SD3 and FLUX.1 transformers, but this {Family} model's UNet predicts noise: " +
                "choose one of the other schedulers, or leave the scheduler unset for the folder's.", "options");
    }

    /// <summary>
    /// The call's ControlNets, loaded (once per model and folder) and checked against the ControlNet-ready UNet before
    /// anything runs: a ControlNet that does not fit is refused here, naming the first mismatch.
    /// </summary>
    private Control.ControlNet[] LoadControlNets(GenerationOptions options)
    {
        if (options.ControlNets is not { Count: > 0 } inputs) return [];
        if (UNet.IsTransformer)
            throw new NotSupportedException($"ControlNets are supported with UNet models (SD 1.x, 2.x, SDXL); this is a {Family} model, whose ControlNets take another contract.");
        if (InpaintingUNet)
            throw new NotSupportedException($"The unet model '{UNet.ModelPath}' is an inpainting UNet; ControlNets are supported with 4-channel UNets only.");
        if (options.DenoisingStart is not null)
            throw new NotSupportedException("ControlNets cannot be combined with GenerationOptions.DenoisingStart (an SDXL refiner takes no ControlNet).");
        var nets = new Control.ControlNet[inputs.Count];
        for (int k = 0; k < nets.Length; k++) nets[k] = _model.Model.ControlNet(inputs[k].ModelDirectory);
        return nets;
    }

    /// <summary>Every ControlNet has a control image for request <paramref name="i"/>: its own or the ControlNet's, readable.</summary>
    private static void CheckControlImages(ImagePrompt p, int i, GenerationOptions options)
    {
        if (p.ControlImages is { } own && own.Count > options.ControlNets.Count)
            throw new ArgumentException($"Image {i}: ControlImages has {own.Count} images for {options.ControlNets.Count} ControlNets (GenerationOptions.ControlNets); give one per ControlNet, in order.", "images");
        for (int k = 0; k < options.ControlNets.Count; k++)
        {
            var image = ControlImageOf(p, k, options)
                ?? throw new ArgumentException($"Image {i}: ControlNet {k} ('{options.ControlNets[k].ModelDirectory}') has no control image: set ControlNetInput.Image, or this request's ControlImages[{k}].", "images");
            CheckImage(image, i, $"control image of ControlNet {k}");
        }
    }

    /// <summary>The control image of ControlNet <paramref name="k"/> for a request: its own, else the ControlNet's.</summary>
    private static Microsoft.ML.Data.MLImage? ControlImageOf(ImagePrompt p, int k, GenerationOptions options) =>
        p.ControlImages is { } own && k < own.Count && own[k] is { } image ? image : options.ControlNets[k].Image;

    /// <summary>A refiner request (<see cref="GenerationOptions.DenoisingStart"/>): latents of the generation size and nothing else to start from.</summary>
    private void CheckHandOff(ImagePrompt p, int i, GenerationOptions options, int width, int height)
    {
        if (options.DenoisingStart is null)
            throw new ArgumentException($"Image {i}: InitLatents continue another model's denoising, which needs GenerationOptions.DenoisingStart (the base's DenoisingEnd, e.g. 0.8).", "images");
        if (p.InitLatents is not { } latents)
            throw new ArgumentException($"Image {i}: GenerationOptions.DenoisingStart ({options.DenoisingStart}) continues from InitLatents, and this request has none. Give it the base model's latents (GeneratedImage.Latents), or leave DenoisingStart null.", "images");
        if (p.InitImage is not null || p.Mask is not null || p.Strength is not null)
            throw new ArgumentException($"Image {i}: InitLatents cannot be combined with an InitImage, Mask or Strength; the hand-off point is GenerationOptions.DenoisingStart.", "images");
        if (InpaintingUNet)
            throw new NotSupportedException($"The unet model '{UNet.ModelPath}' is an inpainting UNet; the base → refiner hand-off (InitLatents) needs a 4-channel UNet.");
        int LatentChannels = UNet.LatentChannels;
        int expected = LatentChannels * (height / BatchShape.VaeScale) * (width / BatchShape.VaeScale);
        if (latents.Length != expected)
            throw new ArgumentException($"Image {i}: InitLatents has {latents.Length} values, but a {width}×{height} image has {LatentChannels}×{height / BatchShape.VaeScale}×{width / BatchShape.VaeScale} = {expected} latents. Generate the base image at the same size.", "images");
        if (!Array.TrueForAll(latents, float.IsFinite))
            throw new ArgumentException($"Image {i}: InitLatents holds NaN or infinite values.", "images");
    }
}

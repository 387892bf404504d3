using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion;

/// <summary>
/// One image to generate: its prompt, negative prompt, seed and, optionally, its own steps, size and guidance scale
/// (null takes the call's <see cref="GenerationOptions"/>) and an image to start from (image-to-image) with a mask of
/// what to repaint (inpainting). Requests of one call may differ in all of these: the pipeline runs those that can
/// share a UNet batch together and returns the images in request order.
/// </summary>
/// <param name="Prompt">What the image should show.</param>
/// <param name="Seed">The noise seed: the same seed and settings give the same image.</param>
public sealed record ImagePrompt(string Prompt, long Seed = 0)
{
    /// <summary>The strength of image-to-image without a mask when <see cref="Strength"/> is null (diffusers' img2img default).</summary>
    public const float DefaultStrength = 0.8f;

    /// <summary>The strength of inpainting (a <see cref="Mask"/> is given) when <see cref="Strength"/> is null (diffusers' inpainting default).</summary>
    public const float DefaultInpaintingStrength = 1f;

    /// <summary>What the image should not show (the unconditional half of guidance). Default: empty.</summary>
    public string NegativePrompt { get; init; } = "";

    /// <summary>This image's guidance scale, overriding <see cref="GenerationOptions.GuidanceScale"/>; at 1 or below guidance is off.</summary>
    public float? GuidanceScale { get; init; }

    /// <summary>This image's inference steps (1–1000), overriding <see cref="GenerationOptions.Steps"/>.</summary>
    public int? Steps { get; init; }

    /// <summary>This image's width in pixels (a multiple of 8 from 8 to 4096), overriding <see cref="GenerationOptions.Width"/>.</summary>
    public int? Width { get; init; }

    /// <summary>This image's height in pixels (a multiple of 8 from 8 to 4096), overriding <see cref="GenerationOptions.Height"/>.</summary>
    public int? Height { get; init; }

    /// <summary>
    /// The image to start from (image-to-image, and the image that inpainting repaints); null generates from
    /// noise. Any size: it is stretched to the generation size with a bilinear filter (the aspect ratio is not
    /// kept). Alpha is ignored. The caller keeps ownership. Needs a model folder with <c>vae_encoder/model.onnx</c>.
    /// </summary>
    public MLImage? InitImage { get; init; }

    /// <summary>
    /// What to repaint in <see cref="InitImage"/>: white (grey level ≥ ½) is repainted, black is kept. It must
    /// have the init image's size. With a 4-channel UNet the kept region is the init image's latents (noised to
    /// each step's level), with a 9-channel inpainting UNet the mask and the masked image condition the UNet.
    /// </summary>
    public MLImage? Mask { get; init; }

    /// <summary>
    /// How much of the schedule runs from <see cref="InitImage"/>, from 0 to 1: the first
    /// <c>steps − min(⌊steps·strength⌋, steps)</c> inference steps are skipped and the init image's latents are
    /// noised to the level of the first kept step (diffusers' <c>strength</c>). 0 returns the init image through
    /// the VAE; 1 starts from pure noise, as text-to-image does. Null: <see cref="DefaultStrength"/>, or
    /// <see cref="DefaultInpaintingStrength"/> with a <see cref="Mask"/>. Needs an <see cref="InitImage"/>.
    /// </summary>
    public float? Strength { get; init; }

    /// <summary>
    /// Partly denoised latents [4, h/8, w/8] (flattened) to continue from: the SDXL base → refiner hand-off, where the base
    /// stopped at <see cref="GenerationOptions.DenoisingEnd"/> and this model goes on from the same point of the schedule,
    /// <see cref="GenerationOptions.DenoisingStart"/> (diffusers' <c>denoising_start</c> with latents as the image). They are
    /// used as they are, with no noise added. Needs <see cref="GenerationOptions.DenoisingStart"/>; excludes
    /// <see cref="InitImage"/>. <see cref="StableDiffusionPipeline.Generate(IReadOnlyList{ImagePrompt}, StableDiffusionPipeline, float, GenerationOptions?, GenerationOptions?, IProgress{DiffusionProgress}?, CancellationToken)"/>
    /// does the whole hand-off.
    /// </summary>
    public float[]? InitLatents { get; init; }

    /// <summary>
    /// This image's control images, one per entry of <see cref="GenerationOptions.ControlNets"/> in order (a shorter list, or
    /// a null entry, takes that ControlNet's <see cref="ControlNetInput.Image"/>). Any size: each is resized to this image's
    /// generation size. The caller keeps ownership.
    /// </summary>
    public IReadOnlyList<MLImage?>? ControlImages { get; init; }

    /// <summary>This image's conditioning scale for every ControlNet, overriding <see cref="ControlNetInput.Scale"/>; null keeps
    /// each ControlNet's own. Images with different scales run in different UNet batches.</summary>
    public float? ControlScale { get; init; }
}

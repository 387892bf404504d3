using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion;

/// <summary>
/// One image to generate: its prompt, negative prompt, seed and, optionally, its own guidance scale and an
/// image to start from (image-to-image) with a mask of what to repaint (inpainting).
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

    /// <summary>This image's guidance scale, overriding <see cref="GenerationOptions.GuidanceScale"/>.</summary>
    public float? GuidanceScale { get; init; }

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
}

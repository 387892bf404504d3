using MLNet.Diffusion.Pipeline;
namespace MLNet.Diffusion;

/// <summary>Settings shared by the images of one generation call.</summary>
public sealed class GenerationOptions
{
    /// <summary>Image width in pixels, a multiple of 8; null takes the model's default (UNet sample_size × 8, else 512). Init images and masks are stretched to this size.</summary>
    public int? Width { get; set; }

    /// <summary>Image height in pixels, a multiple of 8; null takes the model's default.</summary>
    public int? Height { get; set; }

    /// <summary>Inference steps (1–1000). Default 25.</summary>
    public int Steps { get; set; } = 25;

    /// <summary>
    /// Classifier-free guidance scale; at 1 or below guidance is off and the UNet runs once per image. Default 7.5 (SD 1.x
    /// and 2.x; SD3 uses 4.5–7). A latent consistency model and FLUX.1-dev take it as an input instead (one row per image at
    /// any scale; FLUX.1-dev is tuned for 3.5); FLUX.1-schnell ignores it.
    /// </summary>
    public float GuidanceScale { get; set; } = 7.5f;

    /// <summary>The scheduler to use instead of the folder's (a short name such as <c>euler-a</c> or a diffusers class name); null keeps the folder's.</summary>
    public string? Scheduler { get; set; }

    /// <summary>DDIM's η (0 = deterministic DDIM, 1 = DDPM-like); ignored by other schedulers.</summary>
    public float Eta { get; set; }

    /// <summary>
    /// Guidance rescale φ (0–1; diffusers' <c>guidance_rescale</c>, Lin et al. 2023): the guided noise prediction is
    /// scaled towards the standard deviation of the conditional one, which counters the over-exposure strong guidance
    /// gives models trained with zero terminal SNR (the paper uses 0.7). Default 0: plain guidance.
    /// </summary>
    public float GuidanceRescale { get; set; }

    /// <summary>
    /// The lower end σ_lo of the guidance interval (Kynkäänniemi et al. 2024): classifier-free guidance applies only to the
    /// model calls whose noise level σ = √((1 − ᾱ_t)/ᾱ_t) lies in (σ_lo, σ_hi]; the others run the conditional half alone,
    /// one UNet row per image instead of two. Null: 0 (no lower end). The paper's interval for SDXL-sized models is about
    /// (0.28, 5.42].
    /// </summary>
    public float? GuidanceIntervalLow { get; set; }

    /// <summary>The upper end σ_hi of the guidance interval (see <see cref="GuidanceIntervalLow"/>). Null: no upper end.</summary>
    public float? GuidanceIntervalHigh { get; set; }

    /// <summary>
    /// Stop classifier-free guidance after this fraction of the model calls (0 to 1; diffusers' practice of setting the
    /// guidance scale to 0 from a step on): calls 0 … ⌊calls·f⌋ − 1 are guided, the rest run the conditional half alone.
    /// Null: guide every call.
    /// </summary>
    public float? GuidanceEnd { get; set; }

    /// <summary>
    /// Whether the VAE decodes (and encodes init images) in overlapping tiles blended together, so that memory stays
    /// bounded as images grow (diffusers' <c>enable_vae_tiling</c>). Default <see cref="VaeTiling.Auto"/>: tiles above
    /// 1024×1024 pixels.
    /// </summary>
    public VaeTiling VaeTiling { get; set; } = VaeTiling.Auto;

    /// <summary>
    /// The random generator that turns each image's seed into its noise. Default <see cref="NoiseKind.Default"/>: the
    /// library's own. <see cref="NoiseKind.Torch"/> gives the initial latents diffusers gives for the same seed
    /// (<c>torch.Generator("cpu").manual_seed(seed)</c>), <see cref="NoiseKind.TorchCuda"/> those of a CUDA
    /// generator (AUTOMATIC1111's "NV" source), <see cref="NoiseKind.Numpy"/> those of numpy's legacy
    /// <c>RandomState(seed)</c>. Each image draws from its own generator, seeded with its own seed.
    /// </summary>
    public NoiseKind Noise { get; set; } = NoiseKind.Default;

    /// <summary>
    /// SDXL base → refiner: stop after this fraction of the schedule (strictly between 0 and 1), leaving latents that are
    /// still noisy for a refiner to finish (diffusers' <c>denoising_end</c>: the calls whose timestep is at least
    /// round(N − f·N) of the N training timesteps). Null: run the whole schedule.
    /// </summary>
    public float? DenoisingEnd { get; set; }

    /// <summary>
    /// SDXL refiner: start at this fraction of the schedule (strictly between 0 and 1) from each request's
    /// <see cref="ImagePrompt.InitLatents"/> (diffusers' <c>denoising_start</c>; strength is not used). Give the base's
    /// <see cref="DenoisingEnd"/> and the same steps and scheduler so that every call of the schedule runs once. Null: start
    /// at the beginning.
    /// </summary>
    public float? DenoisingStart { get; set; }

    // SDXL's micro-conditioning (Podell et al. 2023, "SDXL", §2.2; diffusers' original_size, crops_coords_top_left,
    // target_size, aesthetic_score and their negative_ twins). Only UNets with time ids read them.

    /// <summary>SDXL: the original image width the model is told the picture had (time ids); null takes the image width.
    /// Smaller values ask for the look of an upscaled small image.</summary>
    public int? OriginalWidth { get; set; }

    /// <summary>SDXL: the original image height (time ids); null takes the image height.</summary>
    public int? OriginalHeight { get; set; }

    /// <summary>SDXL: the top of the crop the model is told was taken (time ids, pixels). Default 0: centred, uncropped pictures.</summary>
    public int CropTop { get; set; }

    /// <summary>SDXL: the left of the crop (time ids, pixels). Default 0.</summary>
    public int CropLeft { get; set; }

    /// <summary>SDXL base: the target width (time ids); null takes the image width.</summary>
    public int? TargetWidth { get; set; }

    /// <summary>SDXL base: the target height (time ids); null takes the image height.</summary>
    public int? TargetHeight { get; set; }

    /// <summary>SDXL: the original width of the negative (unconditional) half of guidance; null takes <see cref="OriginalWidth"/>'s value.</summary>
    public int? NegativeOriginalWidth { get; set; }

    /// <summary>SDXL: the original height of the negative half; null takes <see cref="OriginalHeight"/>'s value.</summary>
    public int? NegativeOriginalHeight { get; set; }

    /// <summary>SDXL: the crop top of the negative half; null takes <see cref="CropTop"/>.</summary>
    public int? NegativeCropTop { get; set; }

    /// <summary>SDXL: the crop left of the negative half; null takes <see cref="CropLeft"/>.</summary>
    public int? NegativeCropLeft { get; set; }

    /// <summary>SDXL base: the target width of the negative half; null takes <see cref="TargetWidth"/>'s value.</summary>
    public int? NegativeTargetWidth { get; set; }

    /// <summary>SDXL base: the target height of the negative half; null takes <see cref="TargetHeight"/>'s value.</summary>
    public int? NegativeTargetHeight { get; set; }

    /// <summary>SDXL refiner: the aesthetic score (0–10) the picture should have (time ids). Default 6, as diffusers.</summary>
    public float AestheticScore { get; set; } = 6f;

    /// <summary>SDXL refiner: the aesthetic score of the negative half (0–10). Default 2.5, as diffusers.</summary>
    public float NegativeAestheticScore { get; set; } = 2.5f;

    /// <summary>
    /// The ControlNets that steer the generation, in order (empty: none). Each brings its folder, control image, scale and
    /// window (<see cref="ControlNetInput"/>); their residuals are summed. The model folder needs a ControlNet-ready UNet
    /// (OnnxStack's <c>controlnet/model.onnx</c> beside <c>unet/</c>, or a <c>unet/</c> that takes the residuals).
    /// </summary>
    public IList<ControlNetInput> ControlNets { get; set; } = new List<ControlNetInput>();

    /// <summary>
    /// Guess mode (diffusers' <c>guess_mode</c>): the ControlNets see only the conditional half of classifier-free guidance,
    /// the unconditional half gets no residuals, and the down residuals are weighted from 0.1 (shallowest) to 1 (deepest),
    /// so the ControlNet recognises the control image's content even without a prompt. Default false.
    /// </summary>
    public bool ControlGuessMode { get; set; }

    /// <summary>A shallow copy (the <see cref="ControlNets"/> list is shared).</summary>
    public GenerationOptions Clone() => (GenerationOptions)MemberwiseClone();
}

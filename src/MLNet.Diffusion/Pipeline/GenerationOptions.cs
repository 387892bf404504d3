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

    /// <summary>Classifier-free guidance scale; at 1 or below guidance is off and the UNet runs once per image. Default 7.5.</summary>
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

    /// <summary>A shallow copy.</summary>
    public GenerationOptions Clone() => (GenerationOptions)MemberwiseClone();
}

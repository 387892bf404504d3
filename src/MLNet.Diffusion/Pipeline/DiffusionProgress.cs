using MLNet.Diffusion.Pipeline;
namespace MLNet.Diffusion;

/// <summary>The stage a generation is in.</summary>
public enum DiffusionStage
{
    /// <summary>Encoding prompts.</summary>
    EncodingText,
    /// <summary>Running the UNet and scheduler.</summary>
    Denoising,
    /// <summary>Decoding latents into images.</summary>
    Decoding,
    /// <summary>Encoding init images (and masked images) into latents.</summary>
    EncodingImages,
}

/// <summary>Progress of a generation: <paramref name="Step"/> of <paramref name="Total"/> within <paramref name="Stage"/>.</summary>
public readonly record struct DiffusionProgress(DiffusionStage Stage, int Step, int Total);

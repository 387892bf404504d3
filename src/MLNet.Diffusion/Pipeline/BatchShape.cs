namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// The shapes of one UNet batch: <see cref="Images"/> latents [<see cref="Channels"/>, <see cref="LatentHeight"/>,
/// <see cref="LatentWidth"/>], each conditioned on text embeddings [<see cref="SequenceLength"/>, <see cref="EmbeddingWidth"/>].
/// With <see cref="Guided"/> the UNet runs on twice as many rows, the unconditional half first (diffusers'
/// <c>torch.cat([latents] * 2)</c> and <c>torch.cat([negative_prompt_embeds, prompt_embeds])</c>).
/// </summary>
internal readonly record struct BatchShape(int Images, int Channels, int LatentHeight, int LatentWidth, int SequenceLength, int EmbeddingWidth, bool Guided)
{
    /// <summary>Pixels per latent along each side (the VAE's downsampling factor, 2^(len(block_out_channels) − 1) = 8).</summary>
    public const int VaeScale = 8;

    /// <summary>The image width in pixels.</summary>
    public int Width => LatentWidth * VaeScale;

    /// <summary>The image height in pixels.</summary>
    public int Height => LatentHeight * VaeScale;

    /// <summary>Values in one latent channel: h·w.</summary>
    public int PlaneLength => LatentHeight * LatentWidth;

    /// <summary>Values in one image's latents: c·h·w.</summary>
    public int ImageLength => Channels * PlaneLength;

    /// <summary>Values in the batch's latents: N·c·h·w.</summary>
    public int LatentLength => Images * ImageLength;

    /// <summary>Values in one text embedding: 77·D.</summary>
    public int EmbeddingLength => SequenceLength * EmbeddingWidth;

    /// <summary>Rows of one UNet call: 2N with guidance, else N.</summary>
    public int ModelBatch => Guided ? 2 * Images : Images;
}

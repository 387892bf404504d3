namespace MLNet.Diffusion.ModelBuilder.Synthetic;

/// <summary>
/// The size of a synthetic Stable Diffusion model folder (<see cref="SyntheticModelFolder"/>): SD 1.5's
/// contract and latent shape with random weights and a UNet whose cost per call is set by its width and depth.
/// </summary>
public sealed record SyntheticModelOptions
{
    /// <summary>The UNet's feature channels (every 3×3 convolution is Channels → Channels). Default 64.</summary>
    public int Channels { get; init; } = 64;

    /// <summary>Residual 3×3 convolution blocks at full latent resolution. Default 6.</summary>
    public int ResidualBlocks { get; init; } = 6;

    /// <summary>The width the latent pixels are projected to for self-attention (over all h·w tokens) and
    /// cross-attention (to the 77 text tokens). Default 32.</summary>
    public int AttentionWidth { get; init; } = 32;

    /// <summary>The text embedding width D (768 for SD 1.x). Default 768.</summary>
    public int EmbeddingWidth { get; init; } = 768;

    /// <summary>unet/config.json's sample_size: the default latent size (64 → 512×512 images, as SD 1.5). Default 64.</summary>
    public int SampleSize { get; init; } = 64;

    /// <summary>The seed of the random weights.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>
    /// The UNet in half precision, as an fp16 export: weights, inputs, computation and output in float16 (the text encoder
    /// and the VAE stay float32). Default false. ONNX Runtime's CUDA provider runs it; its CPU provider lacks float16 kernels
    /// for most of its operators.
    /// </summary>
    public bool Float16 { get; init; }

    /// <summary>
    /// Multiply-adds of one UNet call for <paramref name="batch"/> latents of <paramref name="height"/>×<paramref name="width"/>,
    /// counting convolutions and attention matrix products (the rest is element-wise), ×2 for FLOPs.
    /// </summary>
    public double Flops(int batch, int height, int width) => Flops(batch, height, width, attentionStride: 1);

    /// <summary><see cref="Flops(int, int, int)"/> with the attention block at 1/<paramref name="attentionStride"/> of the latent resolution.</summary>
    internal double Flops(int batch, int height, int width, int attentionStride)
    {
        double n = (double)height * width, c = Channels, d = AttentionWidth;
        double m = Math.Ceiling((double)height / attentionStride) * Math.Ceiling((double)width / attentionStride); // attention tokens
        double convs = n * 9 * (4 * c + ResidualBlocks * c * c + c * 4);
        double self = m * c * d * 3 + m * m * d * 2 + m * d * c;
        double cross = m * c * d + 77.0 * EmbeddingWidth * d * 2 + m * 77 * d * 2 + m * d * c;
        return 2 * batch * (convs + self + cross);
    }
}

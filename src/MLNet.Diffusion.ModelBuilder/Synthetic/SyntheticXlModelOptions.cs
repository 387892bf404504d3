namespace MLNet.Diffusion.ModelBuilder.Synthetic;

/// <summary>
/// The size of a synthetic SDXL folder (<see cref="SyntheticXlModelFolder"/>): SDXL's contract and latent shape with random
/// weights. The defaults are SDXL's widths (768 and 1280, concatenated to a 2048-wide context; pooled 1280) and latent size
/// (128: 1024×1024 images); the UNet's cost is set by its width and depth as in <see cref="SyntheticModelOptions"/>.
/// </summary>
public sealed record SyntheticXlModelOptions
{
    /// <summary>The UNet's feature channels. Default 64.</summary>
    public int Channels { get; init; } = 64;

    /// <summary>Residual 3×3 convolution blocks at full latent resolution. Default 6.</summary>
    public int ResidualBlocks { get; init; } = 6;

    /// <summary>The width of self-attention (over the half-resolution latent pixels) and cross-attention. Default 32.</summary>
    public int AttentionWidth { get; init; } = 32;

    /// <summary><c>text_encoder</c>'s width (CLIP ViT-L: 768).</summary>
    public int TextEncoderWidth { get; init; } = 768;

    /// <summary><c>text_encoder_2</c>'s width and its pooled <c>text_embeds</c> width (OpenCLIP ViT-bigG: 1280).</summary>
    public int TextEncoder2Width { get; init; } = 1280;

    /// <summary>Layers of each text encoder: outputs <c>hidden_states.0</c> … <c>hidden_states.L</c>. Default 2 (the penultimate is <c>hidden_states.1</c>).</summary>
    public int EncoderLayers { get; init; } = 2;

    /// <summary>unet/config.json's sample_size: the default latent size (128 → 1024×1024 images, as SDXL). Default 128.</summary>
    public int SampleSize { get; init; } = 128;

    /// <summary>The seed of the random weights.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>
    /// The UNet in half precision, as an fp16 export: weights, inputs, computation and output in float16 (the text encoders
    /// and the VAE stay float32). Default false. ONNX Runtime's CUDA provider runs it; its CPU provider lacks float16 kernels
    /// for most of its operators.
    /// </summary>
    public bool Float16 { get; init; }

    /// <summary>The per-token context width the UNet cross-attends to: <see cref="TextEncoderWidth"/> + <see cref="TextEncoder2Width"/> (SDXL: 2048).</summary>
    public int ContextWidth => TextEncoderWidth + TextEncoder2Width;

    /// <summary>The added embedding's input width: the pooled embedding and 6 time ids of 256 sinusoidal features each (SDXL: 2816,
    /// unet/config.json's <c>projection_class_embeddings_input_dim</c>).</summary>
    public int AddedEmbeddingInputWidth => TextEncoder2Width + SyntheticXlModelFolder.TimeIds * SyntheticXlModelFolder.TimeIdFeatures;

    /// <summary>The UNet's core sizes, in the SD builder's terms (its embedding width is the context width).</summary>
    internal SyntheticModelOptions Core => new()
    {
        Channels = Channels,
        ResidualBlocks = ResidualBlocks,
        AttentionWidth = AttentionWidth,
        EmbeddingWidth = ContextWidth,
        SampleSize = SampleSize,
        Seed = Seed,
        Float16 = Float16,
    };

    /// <summary>
    /// Multiply-adds ×2 of one UNet call for <paramref name="batch"/> latents of <paramref name="height"/>×<paramref name="width"/>:
    /// convolutions at full resolution, attention at half resolution, and the added embedding's two linear layers.
    /// </summary>
    public double Flops(int batch, int height, int width) =>
        Core.Flops(batch, height, width, SyntheticXlModelFolder.AttentionStride) + 2.0 * batch * (AddedEmbeddingInputWidth * Channels + (double)Channels * Channels);
}

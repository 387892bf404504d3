namespace MLNet.Diffusion.ModelBuilder.Synthetic;

/// <summary>
/// The size of a synthetic Stable Diffusion 3 or FLUX.1 folder (<see cref="SyntheticFlowModelFolder"/>): the families'
/// contracts and latent shapes with random weights. The defaults are the real widths of the conditioning (CLIP-L 768,
/// CLIP-G 1280, T5-XXL 4096) and a transformer whose cost per call is set by its width and depth.
/// </summary>
public sealed record SyntheticFlowModelOptions
{
    /// <summary>The transformer's token width C (SD3-medium: 1536; FLUX.1: 3072). Default 128.</summary>
    public int Width { get; init; } = 128;

    /// <summary>Joint attention blocks over the image and text tokens (each: attention and a 4·C MLP). Default 2.</summary>
    public int Blocks { get; init; } = 2;

    /// <summary><c>text_encoder</c>'s width and pooled width (CLIP ViT-L: 768).</summary>
    public int TextEncoderWidth { get; init; } = 768;

    /// <summary>SD3's <c>text_encoder_2</c> width and pooled width (OpenCLIP ViT-bigG: 1280); FLUX.1 has no second CLIP encoder.</summary>
    public int TextEncoder2Width { get; init; } = 1280;

    /// <summary>Layers of each CLIP encoder: outputs <c>hidden_states.0</c> … <c>hidden_states.L</c>. Default 2.</summary>
    public int EncoderLayers { get; init; } = 2;

    /// <summary>The T5 encoder's width, which is the transformer's <c>joint_attention_dim</c> J (T5-XXL: 4096).</summary>
    public int T5Width { get; init; } = 4096;

    /// <summary>Dense T5Width × T5Width layers of the T5 encoder (each 64 MiB at 4096): its share of the folder's memory. Default 1.</summary>
    public int T5Layers { get; init; } = 1;

    /// <summary>transformer/config.json's sample_size: the default latent size (128 → 1024×1024 images, as SD3 and FLUX.1). Default 128.</summary>
    public int SampleSize { get; init; } = 128;

    /// <summary>The seed of the random weights.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>SD3's pooled width: both CLIP encoders' <c>text_embeds</c> together (2048).</summary>
    public int Sd3PooledWidth => TextEncoderWidth + TextEncoder2Width;

    /// <summary>
    /// Multiply-adds ×2 of one transformer call for <paramref name="batch"/> latents of <paramref name="height"/>×<paramref name="width"/>
    /// and <paramref name="textTokens"/> conditioning positions (SD3: 77 + T; FLUX.1: T): the patch embedding, the text
    /// projection, each block's projections, attention products and MLP over all tokens, and the output projection.
    /// </summary>
    public double Flops(int batch, int height, int width, int textTokens)
    {
        double n = (double)(height / 2) * (width / 2), s = textTokens, c = Width, all = n + s;
        double embed = n * 64 * c + s * T5Width * c + n * c * 64;
        double block = all * c * c * 4 + all * all * c * 2 + all * c * 4 * c * 2;
        return 2 * batch * (embed + Blocks * block);
    }

    /// <summary>Checks the sizes; <paramref name="parameterName"/> names the argument in the message.</summary>
    internal void Check(string parameterName)
    {
        if (Width < 8 || Blocks < 1 || TextEncoderWidth < 8 || TextEncoder2Width < 8 || EncoderLayers < 2 || T5Width < 8 || T5Layers < 1 || SampleSize < 2 || SampleSize % 2 != 0)
            throw new ArgumentException($"Width ≥ 8, Blocks ≥ 1, TextEncoderWidth ≥ 8, TextEncoder2Width ≥ 8, EncoderLayers ≥ 2 (a penultimate hidden state), T5Width ≥ 8, T5Layers ≥ 1 and an even SampleSize ≥ 2 are required; got {this}.", parameterName);
        if (Sd3PooledWidth > T5Width)
            throw new ArgumentException($"SD3 pads the CLIP encoders' concatenated states ({TextEncoderWidth} + {TextEncoder2Width}) to T5's width, so T5Width must be at least {Sd3PooledWidth}; got {this}.", parameterName);
    }
}

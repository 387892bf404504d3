namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// The peak working set of one generation, predicted from the model folder's file sizes and the UNet's structure
/// (docs/PERFORMANCE.md, "Memory you can predict"). In bytes, with R UNet rows (2 × batch with guidance, else batch),
/// h × w the latent size, N = ⌈h/s⌉·⌈w/s⌉ attention tokens (s: the attention stride), C the UNet's channels at full latent
/// size and H × W the image size:
/// <code>
/// default:     peak = base + L + W_all + R·(a·N² + b·4·C·h·w) + v·H·W
/// low memory:  peak = base + L + W_unet + max(2·W_text, R·(a·N² + b·4·C·h·w), W_vae + v·H·W)
/// </code>
/// base is the process before any model loads (runtime, ONNX Runtime's library), measured in the same process; L the
/// fixed cost of loading a pipeline and running it once (sessions, thread pools, JIT-compiled code, managed heap); W a
/// component's weights, its file bytes (plus the constants ONNX Runtime folds at load, see <see cref="Shape.FoldedBytes"/>).
/// a·N² is the attention block's N × N float32 score and softmax matrices per row: a = 8 bytes (both alive at once) by
/// structure, 7.4 measured without the arena, 16.5 with it, where each session's arena keeps what it reserved at its
/// peak; b counts the full-resolution feature maps of C channels alive at the UNet's peak; v is one VAE decode's tensors
/// and pixel buffers per output pixel (images are decoded one at a time). In default mode the arenas keep the UNet's peak
/// while the VAE decodes, so the terms add; in low-memory mode (no arena, the text encoders and the VAE loaded per stage)
/// the peak is the largest stage's, loading the text encoders holding their file and their tensors (2·W_text).
/// L, b, v and the two measured a were fitted by least squares on relative error to <c>memory-check</c>'s cases at
/// 256–512 (SD 1.5-shaped) and 512–1024 (SDXL-shaped) on a 2-core x64 Linux machine; the check reruns them and adds sizes
/// that were not fitted.
/// </summary>
public static class MemoryPredictor
{
    /// <summary>The coefficients of one mode.</summary>
    /// <param name="Load">L, bytes.</param>
    /// <param name="Attention">a, bytes per N² per row.</param>
    /// <param name="FeatureMaps">b, full-resolution C-channel float32 maps alive at the UNet's peak.</param>
    /// <param name="VaePerPixel">v, bytes per output pixel.</param>
    public readonly record struct Coefficients(double Load, double Attention, double FeatureMaps, double VaePerPixel);

    /// <summary>Default mode (every component loaded, CPU arenas).</summary>
    public static Coefficients Default { get; } = new(47 * 1048576.0, 16.5, 10.6, 115);

    /// <summary><see cref="DiffusionRuntimeOptions.LowMemory"/> (no arena; text encoders and VAE loaded per stage).</summary>
    public static Coefficients LowMemory { get; } = new(50 * 1048576.0, 7.4, 13.2, 115);

    /// <summary>The predicted peak working set, in bytes.</summary>
    public static long Peak(long runtimeBase, Weights weights, Shape shape, int width, int height, int batch, bool guided, bool lowMemory)
    {
        var k = lowMemory ? LowMemory : Default;
        int h = height / 8, w = width / 8, rows = guided ? 2 * batch : batch;
        double unet = rows * shape.UNetBytesPerRow(h, w, k);
        double vae = k.VaePerPixel * width * height;
        double unetWeights = weights.UNet + shape.FoldedBytes;
        double peak = lowMemory
            ? runtimeBase + k.Load + unetWeights + Math.Max(2.0 * weights.TextEncoders, Math.Max(unet, weights.VaeDecoder + vae))
            : runtimeBase + k.Load + weights.All + shape.FoldedBytes + unet + vae;
        return (long)peak;
    }

    /// <summary>The UNet's structure, as far as its memory goes.</summary>
    /// <param name="Channels">C, the feature channels at full latent resolution (0: no feature maps at that size).</param>
    /// <param name="AttentionStride">s, the factor by which the first attention level's resolution is below the latents'
    /// (0: no attention over pixels).</param>
    /// <param name="FoldedBytes">Constants that ONNX Runtime's constant folding materialises at load beyond the file's
    /// initializers.</param>
    public readonly record struct Shape(int Channels, int AttentionStride, long FoldedBytes)
    {
        /// <summary>The demo model: its UNet mixes a table of 600 dataset latents of 4 × 32 × 32, which it assembles from
        /// small gathered initializers; constant folding stores the assembled [600, 4096] float32 table (9.4 MiB).</summary>
        public static Shape Demo => new(0, 0, 600L * 4096 * 4);

        /// <summary>The synthetic UNets (ModelBuilder.Synthetic): C channels, attention at stride s (1: SD 1.5, 2: SDXL).</summary>
        public static Shape Synthetic(int channels, int attentionStride) => new(channels, attentionStride, 0);

        /// <summary>a·N² + b·4·C·h·w: bytes of activations per UNet row at the peak.</summary>
        public double UNetBytesPerRow(int h, int w, Coefficients k)
        {
            double attention = 0;
            if (AttentionStride > 0)
            {
                double tokens = Math.Ceiling(h / (double)AttentionStride) * Math.Ceiling(w / (double)AttentionStride);
                attention = k.Attention * tokens * tokens;
            }
            return attention + k.FeatureMaps * 4.0 * Channels * h * w;
        }
    }

    /// <summary>A folder's component file sizes (the .onnx files and their external data), in bytes.</summary>
    public readonly record struct Weights(long TextEncoders, long UNet, long VaeDecoder, long VaeEncoder)
    {
        /// <summary>All components.</summary>
        public long All => TextEncoders + UNet + VaeDecoder + VaeEncoder;

        /// <summary>Reads the sizes of <paramref name="folder"/>'s component folders.</summary>
        public static Weights Of(string folder)
        {
            long Bytes(string component) => Directory.Exists(Path.Combine(folder, component))
                ? Directory.EnumerateFiles(Path.Combine(folder, component)).Where(f => !f.EndsWith(".json", StringComparison.Ordinal)).Sum(f => new FileInfo(f).Length)
                : 0;
            return new Weights(Bytes("text_encoder") + Bytes("text_encoder_2"), Bytes("unet"), Bytes("vae_decoder"), Bytes("vae_encoder"));
        }
    }
}

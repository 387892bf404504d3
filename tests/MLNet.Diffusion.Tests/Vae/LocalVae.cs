using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.ModelBuilder.Synthetic;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Vae;

namespace MLNet.Diffusion.Tests.Vae;

/// <summary>
/// VAE graphs whose outputs depend only on a small neighbourhood of their inputs, so that a tiled run can match a
/// whole-image run: the decoder is <see cref="SyntheticModelFolder.VaeDecoder"/>'s form (1×1 conv 4 → 3, nearest ×8,
/// 3×3 conv, tanh: each pixel sees one latent and its 8 pixel neighbours, so a tile's edge pixels differ from the
/// whole image's), optionally with its latent size fixed as an export for one size fixes it; the encoder is a 3×3
/// conv on the pixels, 8×8 average pooling and a 1×1 conv to 4 channels (<c>latent_sample</c>) or to 8
/// (<c>latent_parameters</c>: mean ++ a log-variance that varies over the image, so that blending it matters).
/// Files go to a temporary folder deleted on dispose.
/// </summary>
internal sealed class LocalVae : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mlnd-localvae-").FullName;
    private readonly OnnxSessionFactory _sessions = new(new DiffusionRuntimeOptions { IntraOpThreads = 1 });
    private int _files;

    /// <summary>A decoder, symbolic in size unless <paramref name="fixedLatent"/> (height, width) is given; the same
    /// <paramref name="seed"/> gives the same weights.</summary>
    public VaeDecoder Decoder(int seed = 1, (int Height, int Width)? fixedLatent = null)
    {
        var random = new WeightRandom(seed);
        var g = new OnnxGraphBuilder("local_vae_decoder");
        object h = fixedLatent is { } f ? f.Height : "height", w = fixedLatent is { } f2 ? f2.Width : "width";
        var latent = g.Input("latent_sample", OnnxElementType.Float, 1, 4, h, w);
        var rgb = g.Conv(latent, g.Initializer("mix", random.Uniform(3 * 4, 0.8f), 3, 4, 1, 1), g.Initializer("mix_b", random.Uniform(3, 0.1f), 3));
        var up = g.Node("Resize", [rgb, "", g.Initializer("scales", [1f, 1f, 8f, 8f], 4)],
            ("mode", "nearest"), ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor"));
        var smooth = g.Conv(up, g.Initializer("smooth", random.Uniform(3 * 3 * 9, 0.6f), 3, 3, 3, 3), g.Initializer("smooth_b", new float[3], 3), pads: [1, 1, 1, 1]);
        g.NodeNamed("Tanh", [smooth], "sample");
        g.Output("sample", OnnxElementType.Float, 1, 3, "image_height", "image_width");
        return new VaeDecoder(Save(g), _sessions, 1f);
    }

    /// <summary>An encoder with a <c>latent_sample</c> or a <c>latent_parameters</c> output, symbolic in size unless
    /// <paramref name="fixedPixels"/> (height, width) is given.</summary>
    public VaeEncoder Encoder(bool parameters, int seed = 2, (int Height, int Width)? fixedPixels = null)
    {
        var random = new WeightRandom(seed);
        var g = new OnnxGraphBuilder("local_vae_encoder");
        object h = fixedPixels is { } f ? f.Height : "image_height", w = fixedPixels is { } f2 ? f2.Width : "image_width";
        var image = g.Input("sample", OnnxElementType.Float, 1, 3, h, w);
        var mixed = g.Conv(image, g.Initializer("pre", random.Uniform(3 * 3 * 9, 0.6f), 3, 3, 3, 3), g.Initializer("pre_b", new float[3], 3), pads: [1, 1, 1, 1]);
        var pooled = g.Node("AveragePool", [mixed], ("kernel_shape", new long[] { 8, 8 }), ("strides", new long[] { 8, 8 }));
        int channels = parameters ? 8 : 4;
        var moments = g.Conv(pooled, g.Initializer("out", random.Uniform(channels * 3, 1f), channels, 3, 1, 1), g.Initializer("out_b", random.Uniform(channels, 0.2f), channels));
        string name = parameters ? "latent_parameters" : "latent_sample";
        g.Identity(moments, name);
        g.Output(name, OnnxElementType.Float, 1, channels, "height", "width");
        return new VaeEncoder(Save(g), _sessions, 1f);
    }

    private string Save(OnnxGraphBuilder g)
    {
        var path = Path.Combine(_folder, $"model{++_files}", "model.onnx");
        g.Save(path);
        return path;
    }

    /// <summary>Smooth latents [4, h, w] with detail at every scale (sines of several periods plus a seeded jitter).</summary>
    public static float[] Latents(int height, int width, int seed = 3) => Field(4, height, width, seed, 1.5f);

    /// <summary>An image [3, H, W] in [−1, 1] built the same way.</summary>
    public static float[] Image(int height, int width, int seed = 4) => Field(3, height, width, seed, 0.9f);

    private static float[] Field(int channels, int height, int width, int seed, float amplitude)
    {
        var jitter = new WeightRandom(seed).Uniform(channels * height * width, 0.1f);
        var values = new float[channels * height * width];
        for (int c = 0; c < channels; c++)
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                {
                    int i = (c * height + y) * width + x;
                    float v = MathF.Sin(0.37f * y + 1.1f * c) * MathF.Cos(0.23f * x - 0.5f * c) + 0.3f * MathF.Sin(0.05f * (x + y));
                    values[i] = Math.Clamp(amplitude * 0.7f * v + jitter[i], -amplitude, amplitude);
                }
        return values;
    }

    /// <summary>Noise of zeros: a <c>latent_parameters</c> encoder then returns its mean.</summary>
    public static INoiseSource NoNoise { get; } = new ZeroNoise();

    private sealed class ZeroNoise : INoiseSource
    {
        public void Fill(Span<float> destination) => destination.Clear();
    }

    /// <summary>The largest absolute difference of two equally long arrays.</summary>
    public static float MaxDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        try
        {
            Directory.Delete(_folder, recursive: true);
        }
        catch (IOException)
        {
            // a session still maps a file; the temporary folder is left to the system
        }
    }
}

using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.ImageToImage;

/// <summary>Block-constant test images (the test VAE round-trips them exactly), masks, and expected latents.</summary>
internal static class ImageToImageTestKit
{
    public const string Prompt = "a photo of a red cat";

    /// <summary>SD 1.5's schedule with set_alpha_to_one = true: the deterministic schedulers end exactly on the oracle's target.</summary>
    public const string ExactEndConfig = """{"_class_name":"PNDMScheduler","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,"set_alpha_to_one":true,"skip_prk_steps":true,"steps_offset":1,"clip_sample":false}""";

    /// <summary>A colour per 8×8 block, away from the test targets and different in every block and channel.</summary>
    public static (byte R, byte G, byte B) BlockColour(int bx, int by) =>
        ((byte)(20 + 29 * bx + 3 * by), (byte)(230 - 25 * by - 2 * bx), (byte)(40 + 17 * ((bx + 2 * by) % 9)));

    /// <summary>An RGBA image whose 8×8 blocks are constant (the test VAE's round trip is exact on it).</summary>
    public static MLImage BlockImage(int width, int height, Func<int, int, (byte R, byte G, byte B)>? colour = null)
    {
        colour ??= BlockColour;
        var rgba = new byte[width * height * 4];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                var (r, g, b) = colour(x / 8, y / 8);
                int o = 4 * (y * width + x);
                rgba[o] = r; rgba[o + 1] = g; rgba[o + 2] = b; rgba[o + 3] = 255;
            }
        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>A black-and-white mask: white (repaint) where <paramref name="repaint"/> is true for the pixel.</summary>
    public static MLImage MaskImage(int width, int height, Func<int, int, bool> repaint)
    {
        var rgba = new byte[width * height * 4];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                byte v = repaint(x, y) ? (byte)255 : (byte)0;
                int o = 4 * (y * width + x);
                rgba[o] = v; rgba[o + 1] = v; rgba[o + 2] = v; rgba[o + 3] = 255;
            }
        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>The engine's (scaled) latents of a block image with the test VAE: each block's pixel values, and their mean.</summary>
    public static float[] BlockLatents(int width, int height, Func<int, int, (byte R, byte G, byte B)>? colour = null)
    {
        colour ??= BlockColour;
        int w = width / 8, h = height / 8, hw = w * h;
        var z = new float[4 * hw];
        for (int by = 0; by < h; by++)
            for (int bx = 0; bx < w; bx++)
            {
                var (r, g, b) = colour(bx, by);
                float[] v = [r / 127.5f - 1, g / 127.5f - 1, b / 127.5f - 1];
                for (int c = 0; c < 3; c++) z[c * hw + by * w + bx] = v[c];
                z[3 * hw + by * w + bx] = (v[0] + v[1] + v[2]) / 3;
            }
        return z;
    }

    /// <summary>The RGB bytes of an image (alpha dropped).</summary>
    public static byte[] Rgb(MLImage image)
    {
        var px = image.Pixels;
        var rgb = new byte[image.Width * image.Height * 3];
        for (int i = 0; i < image.Width * image.Height; i++)
        {
            rgb[3 * i] = px[4 * i];
            rgb[3 * i + 1] = px[4 * i + 1];
            rgb[3 * i + 2] = px[4 * i + 2];
        }
        return rgb;
    }

    /// <summary>Generates one image and returns it with the number of UNet runs it took.</summary>
    public static (GeneratedImage Image, long UNetRuns) GenerateCounting(StableDiffusionPipeline pipeline, ImagePrompt prompt, GenerationOptions options)
    {
        long before = pipeline.UNet.RunCount;
        var result = pipeline.Generate([prompt], options)[0];
        return (result, pipeline.UNet.RunCount - before);
    }

    /// <summary>The target the oracle UNet leads to for <see cref="Prompt"/> (guidance g, empty negative prompt), as 4 values.</summary>
    public static float[] GuidedTarget(string prompt, string negative, float guidance, TestModelOptions? o = null)
    {
        var zc = TestModelFactory.TargetLatentForPrompt(prompt, o);
        if (guidance <= 1) return zc;
        var zu = TestModelFactory.TargetLatentForPrompt(negative, o);
        return [.. Enumerable.Range(0, 4).Select(c => zu[c] + guidance * (zc[c] - zu[c]))];
    }
}

/// <summary>
/// One loaded pipeline per test-model variant for a test class (xUnit class fixture: the tests of a class run
/// one after another, so UNet.RunCount differences stay per test). Saves writing and loading a model per case.
/// </summary>
public sealed class PipelineCache : IDisposable
{
    private readonly Dictionary<TestModelOptions, (TempModelFolder Folder, StableDiffusionPipeline Pipeline)> _loaded = [];

    /// <summary>The pipeline of a test model with these options (written and loaded on first use).</summary>
    public StableDiffusionPipeline Get(TestModelOptions? options = null)
    {
        options ??= new TestModelOptions();
        lock (_loaded)
        {
            if (!_loaded.TryGetValue(options, out var entry))
            {
                var folder = TestModelFactory.CreateTemp(options);
                entry = (folder, StableDiffusionPipeline.Load(folder.Path));
                _loaded.Add(options, entry);
            }
            return entry.Pipeline;
        }
    }

    /// <summary>Disposes the pipelines and deletes their folders.</summary>
    public void Dispose()
    {
        foreach (var (folder, pipeline) in _loaded.Values)
        {
            pipeline.Dispose();
            folder.Dispose();
        }
        _loaded.Clear();
    }
}

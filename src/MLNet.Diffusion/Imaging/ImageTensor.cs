using Microsoft.ML.Data;

namespace MLNet.Diffusion.Imaging;

/// <summary>Conversions between channel-major RGB tensors in [−1, 1] (the VAE's range) and <see cref="MLImage"/>.</summary>
internal static class ImageTensor
{
    /// <summary>Pixels [3, H, W] in [−1, 1] → an RGBA <see cref="MLImage"/> (x/2 + 0.5, clipped to [0, 1], ×255, rounded).</summary>
    public static MLImage ToImage(ReadOnlySpan<float> pixels, int width, int height)
    {
        int plane = width * height;
        if (pixels.Length != 3 * plane)
            throw new ArgumentException($"{pixels.Length} values do not form an RGB image of {width}×{height}.", nameof(pixels));
        var rgba = new byte[plane * 4];
        for (int i = 0; i < plane; i++)
        {
            rgba[4 * i] = ToByte(pixels[i]);
            rgba[4 * i + 1] = ToByte(pixels[plane + i]);
            rgba[4 * i + 2] = ToByte(pixels[2 * plane + i]);
            rgba[4 * i + 3] = 255;
        }
        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>An <see cref="MLImage"/> of exactly <paramref name="width"/>×<paramref name="height"/> → pixels [3, H, W] in [−1, 1].</summary>
    public static float[] FromImage(MLImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.Width != width || image.Height != height)
            throw new ArgumentException($"The image is {image.Width}×{image.Height}, expected {width}×{height}.", nameof(image));
        var data = image.Pixels;
        int plane = width * height;
        var result = new float[3 * plane];
        bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
        for (int i = 0; i < plane; i++)
        {
            byte r = data[4 * i + (bgra ? 2 : 0)], g = data[4 * i + 1], b = data[4 * i + (bgra ? 0 : 2)];
            result[i] = r / 127.5f - 1;
            result[plane + i] = g / 127.5f - 1;
            result[2 * plane + i] = b / 127.5f - 1;
        }
        return result;
    }

    /// <summary>An <see cref="MLImage"/> at its own size → pixels [3, H, W] in [−1, 1] (alpha is ignored).</summary>
    public static float[] FromImage(MLImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        return FromImage(image, image.Width, image.Height);
    }

    /// <summary>
    /// An <see cref="MLImage"/> of any size → pixels [3, <paramref name="height"/>, <paramref name="width"/>] in
    /// [−1, 1], stretched to that size with <see cref="ImageResampler.Bilinear"/> when its size differs (the aspect
    /// ratio is not kept). Alpha is ignored.
    /// </summary>
    public static float[] FromImageResized(MLImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        var pixels = FromImage(image);
        return ImageResampler.Bilinear(pixels, 3, image.Width, image.Height, width, height);
    }

    /// <summary>
    /// A mask image of any size → [<paramref name="height"/> × <paramref name="width"/>] values of 0 (keep) or 1
    /// (repaint), as diffusers' mask processor: grey level L = (299·R + 587·G + 114·B)/1000 (PIL's "L" mode)
    /// scaled to [0, 1], stretched with <see cref="ImageResampler.Bilinear"/>, then 1 where L ≥ 0.5. White repaints.
    /// Alpha is ignored.
    /// </summary>
    public static float[] MaskFromImage(MLImage mask, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(mask);
        var data = mask.Pixels;
        int plane = mask.Width * mask.Height;
        bool bgra = mask.PixelFormat == MLPixelFormat.Bgra32;
        var grey = new float[plane];
        for (int i = 0; i < plane; i++)
        {
            byte r = data[4 * i + (bgra ? 2 : 0)], g = data[4 * i + 1], b = data[4 * i + (bgra ? 0 : 2)];
            grey[i] = (299 * r + 587 * g + 114 * b) / 255000f;
        }
        var resized = ImageResampler.Bilinear(grey, 1, mask.Width, mask.Height, width, height);
        for (int i = 0; i < resized.Length; i++) resized[i] = resized[i] >= 0.5f ? 1f : 0f;
        return resized;
    }

    private static byte ToByte(float x)
    {
        float v = (x / 2 + 0.5f) * 255f;
        if (!(v > 0)) return 0; // NaN and negatives
        return v >= 255f ? (byte)255 : (byte)MathF.Round(v);
    }
}

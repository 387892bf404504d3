using Microsoft.ML.Data;
using MLNet.Diffusion.Imaging;

namespace MLNet.Diffusion.Control;

/// <summary>
/// A control image as a ControlNet reads it (diffusers' <c>control_image_processor</c>: <c>do_convert_rgb</c>, no
/// normalisation): RGB planes [3, height, width] from 0 to 1, at the generation size. An image of another size is
/// stretched with <see cref="ImageResampler.Bilinear"/> (diffusers resizes with PIL's Lanczos filter; at the generation
/// size, the usual case, the values are the same: byte / 255). Alpha is ignored. With Canny thresholds the image becomes
/// its edge map (<see cref="CannyEdges"/>: white edges on black, what Canny ControlNets were trained on).
/// </summary>
internal static class ControlImagePreprocessing
{
    /// <summary>The one place a control image is prepared: optional edge detection, then the ControlNet's input.</summary>
    /// <param name="image">The control image (any size, RGBA32 or BGRA32).</param>
    /// <param name="width">The generation width in pixels.</param>
    /// <param name="height">The generation height in pixels.</param>
    /// <param name="canny">Canny thresholds (<see cref="ControlNetInput.CannyThresholds"/>), or null for a ready-made control image.</param>
    /// <returns>[3·height·width] values from 0 to 1.</returns>
    public static float[] Apply(MLImage image, int width, int height, (float Low, float High)? canny)
    {
        ArgumentNullException.ThrowIfNull(image);
        var planes = UnitPlanes(image);
        if (image.Width != width || image.Height != height) planes = ImageResampler.Bilinear(planes, 3, image.Width, image.Height, width, height);
        // Edges are found at the generation size, so that they are one pixel wide where the ControlNet reads them.
        return canny is { } t ? CannyEdges.Detect(planes, width, height, t.Low, t.High) : planes;
    }

    /// <summary>An image at its own size as RGB planes from 0 to 1 (byte / 255).</summary>
    private static float[] UnitPlanes(MLImage image)
    {
        var data = image.Pixels;
        int plane = image.Width * image.Height;
        var result = new float[3 * plane];
        bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
        for (int i = 0; i < plane; i++)
        {
            result[i] = data[4 * i + (bgra ? 2 : 0)] / 255f;
            result[plane + i] = data[4 * i + 1] / 255f;
            result[2 * plane + i] = data[4 * i + (bgra ? 0 : 2)] / 255f;
        }
        return result;
    }
}

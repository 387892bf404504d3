using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Imaging;

/// <summary>
/// Canny's edge detector (J. Canny, "A Computational Approach to Edge Detection", IEEE PAMI 8(6), 1986), the
/// preprocessor of the Canny ControlNets: luminance, Gaussian blur, 3×3 Sobel gradients, non-maximum suppression
/// along the gradient direction, and hysteresis between two thresholds.
/// </summary>
/// <remarks>
/// <para>Units follow OpenCV's <c>cv2.Canny(image, low, high, L2gradient=True)</c>, the call ControlNet's annotator
/// makes (with thresholds 100 and 200): the thresholds compare with the Euclidean magnitude of the unnormalised
/// Sobel gradient of the 0–255 luminance (a black-to-white step gives 1020). A pixel whose magnitude exceeds
/// <c>high</c> is an edge; one that exceeds <c>low</c> is an edge when it is 8-connected to an edge through such
/// pixels; anything else is not. Non-maximum suppression keeps a pixel whose magnitude is greater than its
/// neighbour behind and not less than its neighbour ahead along the gradient (OpenCV's tie rule), so a step edge
/// gives a line one pixel wide.</para>
/// <para>Differences from OpenCV, deliberate: the luminance is computed in floating point (BT.601 weights, as
/// OpenCV's RGB→gray) and not rounded to bytes, and an optional Gaussian blur runs first (OpenCV leaves it to the
/// caller); borders are replicated.</para>
/// </remarks>
internal static class CannyEdges
{
    /// <summary>The thresholds ControlNet's Canny annotator uses.</summary>
    public const float DefaultLow = 100, DefaultHigh = 200;

    /// <summary>The Gaussian blur's standard deviation in pixels by default (Canny's paper and most tutorials use 1–1.4).</summary>
    public const double DefaultBlurSigma = 1.0;

    /// <summary>
    /// Finds the edges of an image given as three channel-major planes (R, G, B) of values in [0, 1] and returns an
    /// image of the same layout with edges white (1) on black (0), ready to feed a ControlNet.
    /// </summary>
    /// <exception cref="ArgumentException">The planes do not match the size, or the thresholds break
    /// <see cref="SettingLimits.CannyThresholds"/> (negative, not finite, or low above high).</exception>
    public static float[] Detect(ReadOnlySpan<float> rgbPlanes, int width, int height,
        float low = DefaultLow, float high = DefaultHigh, double blurSigma = DefaultBlurSigma)
    {
        if (width < 1 || height < 1)
            throw new ArgumentException($"The image size must be positive (got {width}×{height}).");
        if (rgbPlanes.Length != 3L * width * height)
            throw new ArgumentException($"{rgbPlanes.Length} values do not form three planes of {width}×{height}.", nameof(rgbPlanes));
        if (SettingLimits.CannyThresholds("The Canny thresholds", (low, high)) is { } problem) throw new ArgumentException(problem);
        if (!double.IsFinite(blurSigma) || blurSigma < 0)
            throw new ArgumentOutOfRangeException(nameof(blurSigma), blurSigma, "The blur's standard deviation must be 0 (no blur) or a positive number of pixels.");

        int n = width * height;
        var gray = new float[n];
        for (int i = 0; i < n; i++)
            gray[i] = 255f * (0.299f * rgbPlanes[i] + 0.587f * rgbPlanes[n + i] + 0.114f * rgbPlanes[2 * n + i]);
        if (blurSigma > 0) GaussianBlur(gray, width, height, blurSigma);

        var edges = Edges(gray, width, height, low, high);
        var result = new float[3 * n];
        for (int i = 0; i < n; i++)
            if (edges[i]) result[i] = result[n + i] = result[2 * n + i] = 1f;
        return result;
    }

    /// <summary>The edge map of a luminance image (0–255 scale): Sobel, non-maximum suppression, hysteresis.</summary>
    internal static bool[] Edges(float[] gray, int width, int height, double low, double high)
    {
        int n = width * height;
        var gx = new float[n];
        var gy = new float[n];
        var magnitude = new float[n];
        for (int y = 0; y < height; y++)
        {
            int up = Math.Max(y - 1, 0) * width, row = y * width, down = Math.Min(y + 1, height - 1) * width;
            for (int x = 0; x < width; x++)
            {
                int l = Math.Max(x - 1, 0), r = Math.Min(x + 1, width - 1);
                float dx = (gray[up + r] + 2 * gray[row + r] + gray[down + r]) - (gray[up + l] + 2 * gray[row + l] + gray[down + l]);
                float dy = (gray[down + l] + 2 * gray[down + x] + gray[down + r]) - (gray[up + l] + 2 * gray[up + x] + gray[up + r]);
                gx[row + x] = dx;
                gy[row + x] = dy;
                magnitude[row + x] = MathF.Sqrt(dx * dx + dy * dy);
            }
        }

        // Non-maximum suppression: the gradient direction quantised to 0°, 45°, 90° or 135° (tan 22.5° ≈ 0.4142).
        const float Tan22 = 0.41421356f, Tan67 = 2.41421356f;
        var state = new byte[n]; // 0 none, 1 candidate (above low), 2 edge
        var stack = new Stack<int>();
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int i = y * width + x;
                float m = magnitude[i];
                if (m <= low) continue;
                float ax = Math.Abs(gx[i]), ay = Math.Abs(gy[i]);
                int bx, by; // the neighbour "behind" is (x - bx, y - by), "ahead" is (x + bx, y + by)
                if (ay <= Tan22 * ax) (bx, by) = (1, 0);
                else if (ay >= Tan67 * ax) (bx, by) = (0, 1);
                else (bx, by) = (gx[i] * gy[i] > 0) ? (1, 1) : (-1, 1);
                if (!(m > MagnitudeAt(magnitude, width, height, x - bx, y - by) && m >= MagnitudeAt(magnitude, width, height, x + bx, y + by)))
                    continue;
                if (m > high)
                {
                    state[i] = 2;
                    stack.Push(i);
                }
                else state[i] = 1;
            }

        // Hysteresis: grow edges through 8-connected candidates.
        while (stack.Count > 0)
        {
            int i = stack.Pop(), x = i % width, y = i / width;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++)
                {
                    int nx = x + dx, ny = y + dy;
                    if ((uint)nx >= (uint)width || (uint)ny >= (uint)height) continue;
                    int j = ny * width + nx;
                    if (state[j] != 1) continue;
                    state[j] = 2;
                    stack.Push(j);
                }
        }

        var edges = new bool[n];
        for (int i = 0; i < n; i++) edges[i] = state[i] == 2;
        return edges;
    }

    private static float MagnitudeAt(float[] magnitude, int width, int height, int x, int y) =>
        (uint)x < (uint)width && (uint)y < (uint)height ? magnitude[y * width + x] : 0f;

    /// <summary>Separable Gaussian blur in place, radius ⌈3σ⌉, replicated borders.</summary>
    private static void GaussianBlur(float[] image, int width, int height, double sigma)
    {
        int radius = Math.Max(1, (int)Math.Ceiling(3 * sigma));
        var kernel = new float[2 * radius + 1];
        double sum = 0;
        for (int k = -radius; k <= radius; k++) sum += kernel[k + radius] = (float)Math.Exp(-k * k / (2 * sigma * sigma));
        for (int k = 0; k < kernel.Length; k++) kernel[k] = (float)(kernel[k] / sum);

        var temp = new float[image.Length];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                float s = 0;
                for (int k = -radius; k <= radius; k++) s += kernel[k + radius] * image[y * width + Math.Clamp(x + k, 0, width - 1)];
                temp[y * width + x] = s;
            }
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                float s = 0;
                for (int k = -radius; k <= radius; k++) s += kernel[k + radius] * temp[Math.Clamp(y + k, 0, height - 1) * width + x];
                image[y * width + x] = s;
            }
    }
}

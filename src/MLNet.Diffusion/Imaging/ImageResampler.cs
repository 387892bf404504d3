namespace MLNet.Diffusion.Imaging;

/// <summary>
/// Resizes channel-major float images (MLImage has no resize). The filter is bilinear, i.e. the triangle
/// kernel, applied separably with pixel centres aligned ((x + ½)·scale − ½) and edge weights renormalised;
/// when shrinking, the kernel is widened by the scale factor so that every source pixel contributes
/// (area-correct antialiasing rather than sampling two pixels). This is the algorithm of PIL's
/// <c>Image.resize(..., BILINEAR)</c> (<c>src/libImaging/Resample.c</c>), computed in float. The aspect ratio
/// is not kept: the image is stretched to the requested size.
/// </summary>
internal static class ImageResampler
{
    /// <summary>
    /// Resizes <paramref name="channels"/> planes of <paramref name="width"/>×<paramref name="height"/> values
    /// (row-major, plane after plane) to <paramref name="newWidth"/>×<paramref name="newHeight"/>. The same size
    /// returns a copy.
    /// </summary>
    /// <exception cref="ArgumentException">The span does not hold <paramref name="channels"/> planes of the given size, or a size is not positive.</exception>
    public static float[] Bilinear(ReadOnlySpan<float> planes, int channels, int width, int height, int newWidth, int newHeight)
    {
        if (channels < 1 || width < 1 || height < 1 || newWidth < 1 || newHeight < 1)
            throw new ArgumentException($"Sizes must be positive: {channels} channels, {width}×{height} → {newWidth}×{newHeight}.");
        if (planes.Length != (long)channels * width * height)
            throw new ArgumentException($"{planes.Length} values do not form {channels} planes of {width}×{height}.", nameof(planes));
        if (width == newWidth && height == newHeight) return planes.ToArray();

        var (xStart, xCount, xWeights, xTaps) = Coefficients(width, newWidth);
        var (yStart, yCount, yWeights, yTaps) = Coefficients(height, newHeight);
        var horizontal = new float[height * newWidth];
        var result = new float[channels * newWidth * newHeight];
        for (int c = 0; c < channels; c++)
        {
            var src = planes.Slice(c * width * height, width * height);
            for (int y = 0; y < height; y++)
            {
                var row = src.Slice(y * width, width);
                for (int x = 0; x < newWidth; x++)
                {
                    double sum = 0;
                    int start = xStart[x], w0 = x * xTaps;
                    for (int k = 0; k < xCount[x]; k++) sum += xWeights[w0 + k] * row[start + k];
                    horizontal[y * newWidth + x] = (float)sum;
                }
            }
            var dst = result.AsSpan(c * newWidth * newHeight, newWidth * newHeight);
            for (int y = 0; y < newHeight; y++)
            {
                int start = yStart[y], w0 = y * yTaps;
                for (int x = 0; x < newWidth; x++)
                {
                    double sum = 0;
                    for (int k = 0; k < yCount[y]; k++) sum += yWeights[w0 + k] * horizontal[(start + k) * newWidth + x];
                    dst[y * newWidth + x] = (float)sum;
                }
            }
        }
        return result;
    }

    /// <summary>
    /// PIL's <c>precompute_coeffs</c> for the triangle filter (support 1): for output pixel i, centre
    /// (i + ½)·s with s = in/out, taps from ⌊centre − r + ½⌋ to ⌊centre + r + ½⌋ (r = max(s, 1)), weights
    /// 1 − |(j − centre + ½)/max(s, 1)| clipped at 0, normalised to sum 1.
    /// </summary>
    private static (int[] Start, int[] Count, double[] Weights, int Taps) Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize, filterScale = Math.Max(scale, 1.0), support = filterScale;
        int taps = (int)Math.Ceiling(support) * 2 + 1;
        var start = new int[outSize];
        var count = new int[outSize];
        var weights = new double[outSize * taps];
        for (int i = 0; i < outSize; i++)
        {
            double center = (i + 0.5) * scale;
            int min = Math.Max((int)(center - support + 0.5), 0);
            int max = Math.Min((int)(center + support + 0.5), inSize) - min;
            max = Math.Min(max, taps);
            double total = 0;
            for (int k = 0; k < max; k++)
            {
                double w = Math.Max(0, 1 - Math.Abs((k + min - center + 0.5) / filterScale));
                weights[i * taps + k] = w;
                total += w;
            }
            if (total > 0)
                for (int k = 0; k < max; k++) weights[i * taps + k] /= total;
            start[i] = min;
            count[i] = max;
        }
        return (start, count, weights, taps);
    }
}

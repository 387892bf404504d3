using System.Numerics.Tensors;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// Classifier-free guidance (Ho and Salimans 2022): ε = ε_u + g·(ε_c − ε_u) per image, from a UNet batch whose first
/// half is unconditional and second half conditional; optionally rescaled (Lin et al. 2023, "Common Diffusion Noise
/// Schedules and Sample Steps are Flawed", arXiv:2305.08891, § 3.4 and eq. 15–16; diffusers <c>rescale_noise_cfg</c>):
/// ε ← φ·ε·(std(ε_c)/std(ε)) + (1 − φ)·ε, the standard deviations taken over each image's whole prediction with
/// Bessel's correction, as <c>torch.std</c>.
/// </summary>
internal static class ClassifierFreeGuidance
{
    /// <summary>
    /// Writes the guided prediction of each of the <paramref name="count"/> images (<paramref name="per"/> values each)
    /// into <paramref name="guided"/>. <paramref name="rescale"/> is φ (0: plain guidance). No allocation.
    /// </summary>
    public static void Apply(ReadOnlySpan<float> prediction, Span<float> guided, int count, int per, IReadOnlyList<float> scales, float rescale)
    {
        int half = count * per;
        for (int i = 0; i < count; i++)
        {
            var u = prediction.Slice(i * per, per);
            var c = prediction.Slice(half + i * per, per);
            var g = guided.Slice(i * per, per);
            TensorPrimitives.Subtract(c, u, g);
            TensorPrimitives.MultiplyAdd(g, scales[i], u, g);
            if (rescale > 0) Rescale(c, g, rescale);
        }
    }

    /// <summary>ε ← (φ·std(ε_c)/std(ε) + 1 − φ)·ε: one factor, so one more pass over the image.</summary>
    private static void Rescale(ReadOnlySpan<float> conditional, Span<float> guided, float rescale)
    {
        double stdGuided = StandardDeviation(guided);
        if (stdGuided == 0) return; // a constant prediction has nothing to rescale (diffusers would divide by 0)
        double factor = rescale * StandardDeviation(conditional) / stdGuided + (1 - rescale);
        TensorPrimitives.Multiply(guided, (float)factor, guided);
    }

    /// <summary>The sample standard deviation (n − 1 in the denominator), accumulated in double from float sums.</summary>
    internal static double StandardDeviation(ReadOnlySpan<float> values)
    {
        int n = values.Length;
        if (n < 2) return 0;
        double mean = TensorPrimitives.Sum(values) / (double)n;
        double sumSquares = TensorPrimitives.SumOfSquares(values);
        return Math.Sqrt(Math.Max(sumSquares - n * mean * mean, 0) / (n - 1));
    }
}

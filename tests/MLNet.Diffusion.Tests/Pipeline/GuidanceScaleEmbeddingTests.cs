using System.Text.Json;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Tests.Pipeline;

/// <summary>
/// The LCM guidance embedding (UNet input <c>timestep_cond</c>) against diffusers' <c>get_guidance_scale_embedding</c>
/// computed in torch float32 by <c>Data/reference/make_lcm_embedding.py</c> (the pipeline passes w = g − 1 and the function
/// multiplies by 1000).
/// </summary>
public class GuidanceScaleEmbeddingTests
{
    private static readonly string ReferencePath = Path.Combine(AppContext.BaseDirectory, "Data", "reference", "lcm_guidance_embedding.json");

    public static TheoryData<double> GuidanceScales() => [1.0, 1.5, 4.0, 8.5];

    private static float[] Reference(double guidanceScale)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(ReferencePath));
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            if (c.GetProperty("guidance_scale").GetDouble() == guidanceScale)
                return c.GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        throw new InvalidDataException($"{ReferencePath} has no case for guidance scale {guidanceScale}; rerun make_lcm_embedding.py.");
    }

    [Theory]
    [MemberData(nameof(GuidanceScales))]
    public void MatchesDiffusersInFloat32(double guidanceScale)
    {
        var expected = Reference(guidanceScale);
        Assert.Equal(GuidanceScaleEmbedding.DefaultDimension, expected.Length);
        var actual = new float[expected.Length];
        GuidanceScaleEmbedding.Write((float)guidanceScale, actual);

        // The same float32 roundings as torch (w, the frequency step, k·step, w·f_k) give the same sin/cos arguments
        // wherever the two exp agree. torch's vectorised float32 exp is not correctly rounded: in 14 of the 128 frequencies
        // (torch 1.13, AVX2) it is one ulp off the rounded exact value that the library uses, which moves the argument
        // w·f_k by about one of its own ulps (4.9e-4 at 7500 rad, g = 8.5) and so sin and cos by at most that much
        // (measured: max |Δ| 0 at g = 1, 3.0e-5 at 1.5, 2.4e-4 at 4, 4.1e-4 at 8.5). So each element is held to two ulps of
        // its argument plus 1e-6, and most elements (the frequencies where the exps agree) to 1e-6.
        int half = expected.Length / 2, close = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            int k = i % half;
            float argument = (float)(1000 * (guidanceScale - 1) * Math.Pow(10000, -(double)k / (half - 1)));
            double bound = 2 * (double)(MathF.BitIncrement(argument) - argument) + 1e-6;
            Assert.True(Math.Abs(actual[i] - expected[i]) <= bound,
                $"element {i} (argument {argument} rad): {actual[i]:R}, diffusers {expected[i]:R}, allowed {bound:G3}");
            if (Math.Abs(actual[i] - expected[i]) <= 1e-6) close++;
        }
        Assert.True(close >= expected.Length * 3 / 4, $"only {close} of {expected.Length} elements within 1e-6 at guidance {guidanceScale}");
    }

    [Fact]
    public void LayoutIsSinesThenCosinesOfOneThousandTimesGuidanceMinusOne()
    {
        // g = 1 gives w = 0: sin(0) = 0 in the first half, cos(0) = 1 in the second.
        var e = new float[256];
        GuidanceScaleEmbedding.Write(1f, e);
        Assert.All(e[..128], v => Assert.Equal(0f, v));
        Assert.All(e[128..], v => Assert.Equal(1f, v));

        // f_0 = 1 and f_127 = 1/10000: entries 0 and 128 are sin and cos of w, entries 127 and 255 of w/10000.
        GuidanceScaleEmbedding.Write(1.5f, e); // w = 500
        Assert.Equal(Math.Sin(500), e[0], 1e-6);
        Assert.Equal(Math.Cos(500), e[128], 1e-6);
        Assert.Equal(Math.Sin(0.05), e[127], 1e-6);
        Assert.Equal(Math.Cos(0.05), e[255], 1e-6);
    }

    [Fact]
    public void OddWidthEndsWithAZeroPad()
    {
        var e = new float[7];
        Array.Fill(e, float.NaN);
        GuidanceScaleEmbedding.Write(2f, e); // half = 3: frequencies 1, 0.01, 0.0001 of w = 1000
        Assert.Equal(Math.Sin(1000), e[0], 1e-4);
        Assert.Equal(Math.Sin(0.1), e[2], 1e-6);
        Assert.Equal(Math.Cos(0.1), e[5], 1e-6);
        Assert.Equal(0f, e[6]);
    }

    [Fact]
    public void TooShortOrNonFiniteIsRefused()
    {
        Assert.Throws<ArgumentException>(() => GuidanceScaleEmbedding.Write(2f, new float[3]));
        Assert.Throws<ArgumentOutOfRangeException>(() => GuidanceScaleEmbedding.Write(float.NaN, new float[256]));
    }

    [Fact]
    public void WritingAllocatesNothing()
    {
        var e = new float[256];
        GuidanceScaleEmbedding.Write(4f, e);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++) GuidanceScaleEmbedding.Write(4f + i, e);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

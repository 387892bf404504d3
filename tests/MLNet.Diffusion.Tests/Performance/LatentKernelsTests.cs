using System.Numerics.Tensors;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Performance;

/// <summary>The single-pass scheduler kernels give bit for bit what the chains of TensorPrimitives calls they replace gave.</summary>
public class LatentKernelsTests
{
    private static float[] Random(int n, int seed)
    {
        var values = new float[n];
        new GaussianNoise(seed).Fill(values);
        return values;
    }

    [Theory]
    [InlineData(1000, 0, false, false)]
    [InlineData(1003, 1, true, false)]
    [InlineData(77, 2, true, false)]
    [InlineData(4096, 3, true, true)]
    [InlineData(5, 2, false, true)]
    public void UpdateMatchesTheTensorPrimitivesChain(int n, int histories, bool store, bool plain)
    {
        var f = Random(n, 1);
        var h1 = Random(n, 2);
        var h2 = Random(n, 3);
        var h3 = Random(n, 4);
        float p = plain ? 1 : -0.37f, q = plain ? 0 : 1.21f, sx = 0.93f, ke = 0.41f, k1 = -0.29f, k2 = 0.13f, k3 = -0.07f;

        var expected = Random(n, 5);
        var e = new float[n];
        if (plain) f.CopyTo(e);
        else
        {
            TensorPrimitives.Multiply(f, p, e);
            TensorPrimitives.MultiplyAdd(expected, q, e, e);
        }
        var actual = expected.ToArray();
        TensorPrimitives.Multiply(expected, sx, expected);
        TensorPrimitives.MultiplyAdd(e, ke, expected, expected);
        if (histories >= 1) TensorPrimitives.MultiplyAdd(h1, k1, expected, expected);
        if (histories >= 2) TensorPrimitives.MultiplyAdd(h2, k2, expected, expected);
        if (histories >= 3) TensorPrimitives.MultiplyAdd(h3, k3, expected, expected);

        var stored = store ? new float[n] : [];
        LatentKernels.Update(f, actual, stored, p, q, sx, ke, histories, h1, k1, h2, k2, h3, k3);
        Assert.Equal(expected, actual);
        if (store) Assert.Equal(e, stored);
    }

    [Theory]
    [InlineData(1000, 0, true)]
    [InlineData(1001, 3, true)]
    [InlineData(33, 2, false)]
    public void PlmsMatchesTheTensorPrimitivesChain(int n, int histories, bool plain)
    {
        var f = Random(n, 1);
        var h = new[] { Random(n, 2), Random(n, 3), Random(n, 4) };
        float[] w = [2.29f, -2.46f, 1.54f, -0.375f];
        float p = plain ? 1 : 0.8f, q = plain ? 0 : -0.6f, sx = 1.02f, kw = -0.11f;
        var expected = Random(n, 6);
        var actual = expected.ToArray();
        var e = new float[n];
        if (plain) f.CopyTo(e);
        else
        {
            TensorPrimitives.Multiply(f, p, e);
            TensorPrimitives.MultiplyAdd(expected, q, e, e);
        }
        var work = new float[n];
        TensorPrimitives.Multiply(e, w[0], work);
        for (int j = 0; j < histories; j++) TensorPrimitives.MultiplyAdd(h[j], w[j + 1], work, work);
        TensorPrimitives.Multiply(expected, sx, expected);
        TensorPrimitives.MultiplyAdd(work, kw, expected, expected);

        var store = new float[n];
        LatentKernels.Plms(f, actual, store, p, q, w[0], histories, h[0], w[1], h[1], w[2], h[2], w[3], sx, kw);
        Assert.Equal(expected, actual);
        Assert.Equal(e, store);
    }

    [Fact]
    public void ClippedCombineMatchesTheScalarDoubleLoop()
    {
        int n = 1037;
        var m = Random(n, 1);
        var expected = Random(n, 2);
        TensorPrimitives.Multiply(expected, 3f, expected); // some values beyond the clip range
        var actual = expected.ToArray();
        double a0 = 1.3, b0 = -0.7, a1 = 0.2, b1 = 0.9, clip = 1, c0 = 0.6, c1 = 0.3, c2 = 0.05;
        for (int i = 0; i < n; i++)
        {
            double x = expected[i], mm = m[i];
            double x0 = Math.Clamp(a0 * x + b0 * mm, -clip, clip);
            expected[i] = (float)(c0 * x0 + c1 * (a1 * x + b1 * mm) + c2 * x);
        }
        LatentKernels.CombineClipped(m, actual, a0, b0, a1, b1, clip, c0, c1, c2);
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void AxPlusByMatchesTheScalarLoop()
    {
        var x = Random(999, 1);
        var y = Random(999, 2);
        var expected = new float[999];
        for (int i = 0; i < expected.Length; i++) expected[i] = 0.7f * x[i] + -1.3f * y[i];
        var actual = new float[999];
        LatentKernels.AxPlusBy(0.7f, x, -1.3f, y, actual);
        Assert.Equal(expected, actual);
    }
}

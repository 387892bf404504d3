using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Tests.Pipeline;

public class ClassifierFreeGuidanceTests
{
    private const int Per = 4 * 16 * 16;

    /// <summary>Two images' UNet batch [u₀, u₁, c₀, c₁] with different spreads per half.</summary>
    private static float[] Prediction()
    {
        var p = new float[4 * Per];
        new GaussianNoise(5).Fill(p);
        for (int i = 2 * Per; i < 4 * Per; i++) p[i] = 1.7f * p[i] + 0.2f; // the conditional halves: another spread
        return p;
    }

    private static double Std(ReadOnlySpan<float> x)
    {
        double mean = 0, sum = 0;
        foreach (var v in x) mean += v;
        mean /= x.Length;
        foreach (var v in x) sum += (v - mean) * (v - mean);
        return Math.Sqrt(sum / (x.Length - 1)); // torch.std: Bessel's correction
    }

    [Fact]
    public void WithoutRescaleItIsTheGuidanceFormula()
    {
        var p = Prediction();
        var guided = new float[2 * Per];
        ClassifierFreeGuidance.Apply(p, guided, 2, Per, [7.5f, 3f], 0);
        for (int img = 0; img < 2; img++)
            for (int i = 0; i < Per; i++)
            {
                float u = p[img * Per + i], c = p[2 * Per + img * Per + i];
                Assert.Equal(u + (img == 0 ? 7.5f : 3f) * (c - u), guided[img * Per + i], 1e-4f);
            }
    }

    [Theory]
    [InlineData(0.7f)]
    [InlineData(1f)]
    public void RescaleMatchesDiffusersRescaleNoiseCfgPerImage(float phi)
    {
        var p = Prediction();
        var plain = new float[2 * Per];
        var rescaled = new float[2 * Per];
        float[] scales = [7.5f, 3f];
        ClassifierFreeGuidance.Apply(p, plain, 2, Per, scales, 0);
        ClassifierFreeGuidance.Apply(p, rescaled, 2, Per, scales, phi);
        for (int img = 0; img < 2; img++)
        {
            var cfg = plain.AsSpan(img * Per, Per);
            var cond = p.AsSpan(2 * Per + img * Per, Per);
            // diffusers: rescaled = cfg·std(text)/std(cfg); result = φ·rescaled + (1 − φ)·cfg.
            double factor = phi * Std(cond) / Std(cfg) + (1 - phi);
            for (int i = 0; i < Per; i++) Assert.Equal(cfg[i] * factor, rescaled[img * Per + i], 1e-4 * Math.Max(1, Math.Abs(cfg[i] * factor)));
            if (phi == 1) Assert.Equal(Std(cond), Std(rescaled.AsSpan(img * Per, Per)), 1e-4);
        }
    }

    [Fact]
    public void StandardDeviationUsesBesselsCorrectionAndApplyAllocatesNothing()
    {
        Assert.Equal(Math.Sqrt(5.0 / 3), ClassifierFreeGuidance.StandardDeviation([1f, 2f, 3f, 4f]), 1e-6);
        Assert.Equal(0, ClassifierFreeGuidance.StandardDeviation([2f]));
        var p = Prediction();
        var guided = new float[2 * Per];
        float[] scales = [7.5f, 3f];
        ClassifierFreeGuidance.Apply(p, guided, 2, Per, scales, 0.7f);
        long before = GC.GetAllocatedBytesForCurrentThread();
        ClassifierFreeGuidance.Apply(p, guided, 2, Per, scales, 0.7f);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Pipeline;

internal static class PipelineTestHelpers
{
    /// <summary>The final latents the oracle UNet leads to for a prompt with guidance g (ε is linear in the target,
    /// so guidance moves the target to z_u + g·(z_c − z_u)).</summary>
    public static float[] ExpectedLatents(string prompt, string negative, float guidance, int h, int w, TestModelOptions? o = null)
    {
        var zc = TestModelFactory.TargetLatentForPrompt(prompt, o);
        var target = new float[4];
        if (guidance > 1)
        {
            var zu = TestModelFactory.TargetLatentForPrompt(negative, o);
            for (int c = 0; c < 4; c++) target[c] = zu[c] + guidance * (zc[c] - zu[c]);
        }
        else
        {
            zc.CopyTo(target, 0);
        }
        return TestModelFactory.ExpandTarget(target, h, w);
    }

    public static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    public static byte ExpectedByte(float x) => (byte)Math.Round(Math.Clamp(x / 2 + 0.5, 0, 1) * 255);
}

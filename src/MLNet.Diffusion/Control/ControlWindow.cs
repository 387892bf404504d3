using System.Globalization;

namespace MLNet.Diffusion.Control;

/// <summary>
/// Which model calls a ControlNet applies to (diffusers' <c>controlnet_keep</c>): call i of n is kept unless
/// i/n &lt; start or (i + 1)/n &gt; end, with n the calls the batch runs (after image-to-image's skipped steps, as
/// diffusers' <c>len(timesteps)</c>). The fractions are read as the shortest decimal that gives the float, so 0.3f compares
/// as Python's 0.3 does.
/// </summary>
internal static class ControlWindow
{
    /// <summary>For each of <paramref name="calls"/> calls, whether the ControlNet applies.</summary>
    public static bool[] For(float start, float end, int calls)
    {
        double s = Decimal(start), e = Decimal(end);
        var keep = new bool[calls];
        for (int i = 0; i < calls; i++)
            keep[i] = !((double)i / calls < s || (double)(i + 1) / calls > e);
        return keep;
    }

    private static double Decimal(float value) => double.Parse(value.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
}

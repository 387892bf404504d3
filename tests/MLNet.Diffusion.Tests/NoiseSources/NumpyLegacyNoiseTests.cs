using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Tests.NoiseSources;

/// <summary>
/// <see cref="NumpyLegacyNoise"/> against numpy 1.24's <c>RandomState(seed).standard_normal</c>
/// (<c>Data/reference/make_noise_reference.py</c>): seeds 0, 1, 42 and 2³² − 1, 5 values and 1×4×64×64.
/// </summary>
public class NumpyLegacyNoiseTests
{
    public static TheoryData<string, int> Cases() => NoiseReference.Cases("numpy");

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesNumpy(string section, int index)
    {
        var @case = NoiseReference.Case(section, index);
        NoiseReference.Check(@case, new NumpyLegacyNoise(@case.GetProperty("seed").GetInt64()));
    }

    [Fact]
    public void DoublesMatchNumpyExactly()
    {
        // standard_normal's own float64 values, before the rounding to float32.
        var expected = NoiseReference.Case("numpy", 0).GetProperty("values")[0].EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var noise = new NumpyLegacyNoise(0);
        Assert.Equal(expected, expected.Select(_ => noise.NextGaussian()));
    }

    [Fact]
    public void PublishedSeedZeroValues()
    {
        var values = new float[4];
        new NumpyLegacyNoise(0).Fill(values);
        Assert.Equal([1.76405f, 0.40016f, 0.97874f, 2.24089f], values.Select(v => MathF.Round(v, 5)));
    }
}

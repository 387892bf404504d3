using MLNet.Diffusion.Schedulers;
namespace MLNet.Diffusion.Noise;

/// <summary>
/// A seeded standard normal generator: xoshiro256** (Blackman and Vigna, 2018) seeded through SplitMix64,
/// with the Box–Muller transform. The same seed gives the same sequence on every run and machine
/// (it does not depend on <see cref="Random"/>'s implementation).
/// </summary>
internal sealed class GaussianNoise : INoiseSource
{
    private ulong _s0, _s1, _s2, _s3;
    private double _spare;
    private bool _hasSpare;

    /// <summary>Creates a generator for <paramref name="seed"/>.</summary>
    public GaussianNoise(long seed)
    {
        ulong x = unchecked((ulong)seed);
        _s0 = SplitMix64(ref x);
        _s1 = SplitMix64(ref x);
        _s2 = SplitMix64(ref x);
        _s3 = SplitMix64(ref x);
    }

    /// <summary>The next uniform sample in (0, 1).</summary>
    public double NextUniform()
    {
        // 53 random bits, shifted by half an ulp so that 0 never occurs (Box–Muller takes its log).
        return ((NextUInt64() >> 11) + 0.5) * (1.0 / (1UL << 53));
    }

    /// <summary>The next N(0, 1) sample.</summary>
    public double NextGaussian()
    {
        if (_hasSpare)
        {
            _hasSpare = false;
            return _spare;
        }
        var (first, second) = NextPair();
        _spare = second;
        _hasSpare = true;
        return first;
    }

    /// <inheritdoc />
    /// <remarks>The same values, in the same order, as calling <see cref="NextGaussian"/> for each element, a pair at a time.</remarks>
    public void Fill(Span<float> destination)
    {
        int i = 0;
        if (_hasSpare && destination.Length > 0)
        {
            _hasSpare = false;
            destination[i++] = (float)_spare;
        }
        for (; i + 1 < destination.Length; i += 2)
        {
            var (first, second) = NextPair();
            destination[i] = (float)first;
            destination[i + 1] = (float)second;
        }
        if (i < destination.Length) destination[i] = (float)NextGaussian();
    }

    /// <summary>
    /// One Box–Muller pair: r·cos θ, then r·sin θ, with r = √(−2 ln u₁) and θ = 2π·u₂. <see cref="Math.SinCos"/> gives the
    /// same bits as <see cref="Math.Sin"/> and <see cref="Math.Cos"/> separately (checked by the tests) at less cost.
    /// </summary>
    private (double First, double Second) NextPair()
    {
        double u1 = NextUniform(), u2 = NextUniform();
        double r = Math.Sqrt(-2.0 * Math.Log(u1));
        var (sin, cos) = Math.SinCos(2.0 * Math.PI * u2);
        return (r * cos, r * sin);
    }

    private ulong NextUInt64()
    {
        ulong result = RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = RotateLeft(_s3, 45);
        return result;
    }

    private static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));

    private static ulong SplitMix64(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

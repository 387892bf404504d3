using MLNet.Diffusion.Schedulers;
namespace MLNet.Diffusion.Noise;

/// <summary>
/// <c>torch.randn</c> on a CUDA device after <c>torch.manual_seed(seed)</c>, computed on the CPU the way
/// AUTOMATIC1111's "NV" random number generator source does (its <c>modules/rng_philox.py</c>): each
/// <see cref="Fill"/> is one <c>randn</c> call.
/// </summary>
/// <remarks>
/// The algorithm, as that module documents it: value i of call number k (k = 0, 1, … per generator) comes from
/// Philox4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011) with counter
/// (k, 0, i, 0) and key (seed's low 32 bits, seed's high 32 bits), a negative seed taken modulo 2⁶⁴. The first two output
/// words x, y give u = x·c + c/2 and v = y·d + d/2, with c = 2⁻³² and d = 2π·2⁻³² each rounded to float32 as that module
/// stores them, and the value √(−2 ln u)·sin v, computed in double precision and rounded to float32. CUDA's own
/// <c>curand</c> evaluates log and sin in single precision on the device, so the values agree with a GPU's to about
/// float32 precision, not bit for bit.
/// </remarks>
internal sealed class PhiloxNoise : INoiseSource
{
    private const uint M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    private static readonly double Scale = (float)2.3283064e-10;                    // float32(2⁻³²)
    private static readonly double HalfScale = (float)2.3283064e-10 / 2f;
    private static readonly double AngleScale = (float)(2.3283064e-10 * 6.2831855);  // float32(2π·2⁻³²)
    private static readonly double HalfAngleScale = (float)(2.3283064e-10 * 6.2831855) / 2f;
    private readonly uint _keyLow, _keyHigh;
    private uint _offset;

    /// <summary>A generator as after <c>torch.manual_seed(seed)</c> on a CUDA device.</summary>
    public PhiloxNoise(long seed)
    {
        ulong key = unchecked((ulong)seed);
        _keyLow = (uint)key;
        _keyHigh = (uint)(key >> 32);
    }

    /// <inheritdoc />
    public void Fill(Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            var (x, y) = Philox4x32_10(_offset, 0, (uint)i, 0, _keyLow, _keyHigh);
            double u = x * Scale + HalfScale;
            double v = y * AngleScale + HalfAngleScale;
            destination[i] = (float)(Math.Sqrt(-2.0 * Math.Log(u)) * Math.Sin(v));
        }
        _offset++;
    }

    /// <summary>Philox4x32-10: ten rounds on the counter (c0, c1, c2, c3) with key (k0, k1), the key bumped by the
    /// Weyl constants between rounds; returns the first two output words.</summary>
    internal static (uint X, uint Y) Philox4x32_10(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        var (r0, r1, _, _) = Philox4x32_10Block(c0, c1, c2, c3, k0, k1);
        return (r0, r1);
    }

    /// <summary>Philox4x32-10's full output block (four words), for the Random123 known-answer tests.</summary>
    internal static (uint, uint, uint, uint) Philox4x32_10Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                k0 = unchecked(k0 + W0);
                k1 = unchecked(k1 + W1);
            }
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0, hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        }
        return (c0, c1, c2, c3);
    }
}

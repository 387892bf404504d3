namespace MLNet.Diffusion.Noise;

/// <summary>
/// The Mersenne Twister MT19937 (Matsumoto and Nishimura, 1998): 624 words of state, seeded with the reference
/// <c>init_genrand</c> (state[0] = seed; state[i] = 1812433253 · (state[i−1] ⊕ (state[i−1] ≫ 30)) + i), tempered 32-bit
/// outputs. Both PyTorch's CPU generator (<c>at::mt19937</c>, seeded with the low 32 bits of <c>manual_seed</c>) and
/// numpy's legacy <c>RandomState(seed)</c> for an integer seed use exactly this generator and seeding.
/// </summary>
internal sealed class Mt19937
{
    private const int N = 624, M = 397;
    private const uint MatrixA = 0x9908B0DFu, UpperMask = 0x80000000u, LowerMask = 0x7FFFFFFFu;
    private readonly uint[] _state = new uint[N];
    private int _next;

    /// <summary>Seeds the generator with <paramref name="seed"/> (init_genrand).</summary>
    public Mt19937(uint seed)
    {
        _state[0] = seed;
        for (int i = 1; i < N; i++)
            _state[i] = unchecked(1812433253u * (_state[i - 1] ^ (_state[i - 1] >> 30)) + (uint)i);
        _next = N;
    }

    /// <summary>The next tempered 32-bit output (genrand_int32).</summary>
    public uint NextUInt32()
    {
        if (_next >= N) Twist();
        uint y = _state[_next++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9D2C5680u;
        y ^= (y << 15) & 0xEFC60000u;
        y ^= y >> 18;
        return y;
    }

    private void Twist()
    {
        var s = _state;
        for (int i = 0; i < N; i++)
        {
            uint y = (s[i] & UpperMask) | (s[(i + 1) % N] & LowerMask);
            s[i] = s[(i + M) % N] ^ (y >> 1) ^ ((y & 1u) != 0 ? MatrixA : 0u);
        }
        _next = 0;
    }
}

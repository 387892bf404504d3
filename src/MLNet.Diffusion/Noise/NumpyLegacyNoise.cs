using MLNet.Diffusion.Schedulers;
namespace MLNet.Diffusion.Noise;

/// <summary>
/// numpy's legacy <c>numpy.random.RandomState(seed).standard_normal</c> (the generator of AUTOMATIC1111's early
/// versions and of many older scripts), computed in double precision and rounded to float32 as
/// <c>torch.from_numpy(...).float()</c> does.
/// </summary>
/// <remarks>
/// The facts reproduced, from numpy's sources (random/_mt19937.pyx <c>_legacy_seeding</c>, random/src/legacy/
/// legacy-distributions.c <c>legacy_gauss</c>, random/src/mt19937): an integer seed from 0 to 2³² − 1 seeds MT19937
/// with <c>init_genrand</c> (<see cref="Mt19937"/>); a double is (a·2²⁶ + b) / 2⁵³ with a = next ≫ 5, b = next ≫ 6;
/// a normal pair comes from the polar Box–Muller method: x1 = 2u − 1, x2 = 2u − 1 until 0 &lt; r² = x1² + x2² &lt; 1,
/// f = √(−2 ln r² / r²), return f·x2 and keep f·x1 for the next value. numpy refuses seeds outside 0 … 2³² − 1; this
/// source takes such a seed's low 32 bits.
/// </remarks>
internal sealed class NumpyLegacyNoise : INoiseSource
{
    private readonly Mt19937 _engine;
    private double _gauss;
    private bool _hasGauss;

    /// <summary>A generator as after <c>RandomState(seed)</c>.</summary>
    public NumpyLegacyNoise(long seed) => _engine = new Mt19937(unchecked((uint)seed));

    /// <summary>The next N(0, 1) sample, in double precision (<c>standard_normal</c>'s own value).</summary>
    public double NextGaussian()
    {
        if (_hasGauss)
        {
            _hasGauss = false;
            return _gauss;
        }
        double x1, x2, r2;
        do
        {
            x1 = 2.0 * NextDouble() - 1.0;
            x2 = 2.0 * NextDouble() - 1.0;
            r2 = x1 * x1 + x2 * x2;
        } while (r2 >= 1.0 || r2 == 0.0);
        double f = Math.Sqrt(-2.0 * Math.Log(r2) / r2);
        _gauss = f * x1;
        _hasGauss = true;
        return f * x2;
    }

    /// <inheritdoc />
    public void Fill(Span<float> destination)
    {
        for (int i = 0; i < destination.Length; i++) destination[i] = (float)NextGaussian();
    }

    private double NextDouble()
    {
        uint a = _engine.NextUInt32() >> 5, b = _engine.NextUInt32() >> 6;
        return (a * 67108864.0 + b) / 9007199254740992.0;
    }
}

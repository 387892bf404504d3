using MLNet.Diffusion.Schedulers;
namespace MLNet.Diffusion.Noise;

/// <summary>
/// <c>torch.randn</c> on PyTorch's CPU generator, <c>torch.Generator("cpu").manual_seed(seed)</c>: each
/// <see cref="Fill"/> is one <c>torch.randn(shape, generator=g)</c> call of float32 values, so a pipeline that gives
/// each image its own generator and fills one image's latents per call draws what diffusers' <c>prepare_latents</c>
/// draws with a list of generators (and what one generator draws for a batch of one).
/// </summary>
/// <remarks>
/// The facts reproduced, from PyTorch's sources (aten/src/ATen/core/MT19937RNGEngine.h, CPUGeneratorImpl.cpp,
/// core/DistributionsHelper.h, core/TransformationHelper.h, native/cpu/DistributionTemplates.h):
/// <list type="bullet">
/// <item>The engine is MT19937 seeded with the seed's low 32 bits (<see cref="Mt19937"/>); a float uniform is
/// (random() &amp; (2²⁴ − 1)) / 2²⁴, a double uniform (random64() &amp; (2⁵³ − 1)) / 2⁵³ where random64() is
/// (first 32-bit output ≪ 32) | second.</item>
/// <item>Contiguous float tensors of 16 values or more (<c>normal_fill</c>): all the float uniforms are drawn first; then
/// each block of 16, u[0..7] and u[8..15], becomes r = √(−2 ln(1 − u[j])), θ = 2π·u[j+8], out[j] = r cos θ,
/// out[j+8] = r sin θ. When the count is not a multiple of 16, 16 fresh uniforms overwrite the last 16 slots and that
/// block is transformed again.</item>
/// <item>Smaller tensors (<c>normal_distribution&lt;double&gt;</c>): per value, a cached second sample if the generator holds
/// one, else two double uniforms u1, u2, r = √(−2 log1p(−u2)), θ = 2π·u1, return r cos θ and cache r sin θ; the value is
/// rounded to float. The cache lives in the generator, across calls.</item>
/// <item>PyTorch computes the block transform with <c>avx_mathfun</c>'s vectorised Cephes log and sincos on x86-64 CPUs
/// with AVX2 (its default there) and with the C library's <c>logf</c>/<c>cosf</c>/<c>sinf</c> elsewhere (ARM, Apple
/// silicon); the two differ in the last bits of about a third of the values. <see cref="TorchMath"/> chooses.</item>
/// </list>
/// </remarks>
internal sealed class TorchCpuNoise : INoiseSource
{
    private const float TwoPiFloat = (float)(2.0 * Math.PI);
    private readonly Mt19937 _engine;
    private readonly TorchMath _math;
    private double _cachedNormal;
    private bool _hasCachedNormal;

    /// <summary>A generator as after <c>manual_seed(seed)</c> (torch keeps the seed modulo 2⁶⁴; the engine its low 32 bits).</summary>
    public TorchCpuNoise(long seed, TorchMath math = TorchMath.Avx2)
    {
        if (!Enum.IsDefined(math)) throw new ArgumentOutOfRangeException(nameof(math), math, "Unknown TorchMath value.");
        _engine = new Mt19937(unchecked((uint)seed));
        _math = math;
    }

    /// <inheritdoc />
    public void Fill(Span<float> destination)
    {
        if (destination.Length >= 16) FillBlocks(destination);
        else
            for (int i = 0; i < destination.Length; i++) destination[i] = (float)NextNormalDouble();
    }

    private void FillBlocks(Span<float> data)
    {
        for (int i = 0; i < data.Length; i++) data[i] = NextUniformFloat();
        int end = data.Length - 15;
        for (int i = 0; i < end; i += 16) Transform16(data.Slice(i, 16));
        if (data.Length % 16 != 0)
        {
            var tail = data[^16..];
            for (int i = 0; i < 16; i++) tail[i] = NextUniformFloat();
            Transform16(tail);
        }
    }

    private void Transform16(Span<float> block)
    {
        for (int j = 0; j < 8; j++)
        {
            float u1 = 1f - block[j];                                         // [0, 1) → (0, 1] for the log
            float u2 = block[j + 8];
            float cos, sin, radius;
            if (_math == TorchMath.Avx2)
            {
                radius = MathF.Sqrt(-2f * CephesFloat.Log(u1));
                CephesFloat.SinCos(TwoPiFloat * u2, out sin, out cos);
            }
            else
            {
                radius = MathF.Sqrt(-2f * MathF.Log(u1));
                float theta = (float)(2.0 * Math.PI * u2);                    // 2.0f * pi<double> * u2, in double, then float
                cos = MathF.Cos(theta);
                sin = MathF.Sin(theta);
            }
            block[j] = radius * cos + 0f;                                     // · std + mean with std 1, mean 0
            block[j + 8] = radius * sin + 0f;
        }
    }

    private float NextUniformFloat() => (_engine.NextUInt32() & 0xFFFFFFu) * (1f / (1 << 24));

    private double NextUniformDouble()
    {
        ulong hi = _engine.NextUInt32(), lo = _engine.NextUInt32();
        return (((hi << 32) | lo) & ((1UL << 53) - 1)) * (1.0 / (1UL << 53));
    }

    private double NextNormalDouble()
    {
        if (_hasCachedNormal)
        {
            _hasCachedNormal = false;
            return _cachedNormal;
        }
        double u1 = NextUniformDouble(), u2 = NextUniformDouble();
        double r = Math.Sqrt(-2.0 * Math.Log(1.0 - u2));
        double theta = 2.0 * Math.PI * u1;
        _cachedNormal = r * Math.Sin(theta);
        _hasCachedNormal = true;
        return r * Math.Cos(theta);
    }
}

/// <summary>Which elementary functions <see cref="TorchCpuNoise"/> reproduces for blocks of 16 values.</summary>
internal enum TorchMath
{
    /// <summary>PyTorch on x86-64 CPUs with AVX2 (its default there): <c>avx_mathfun</c>'s Cephes log and sincos.</summary>
    Avx2,

    /// <summary>PyTorch without AVX2 (ARM, Apple silicon, <c>ATEN_CPU_CAPABILITY=default</c>): the C library's functions.</summary>
    Portable,
}

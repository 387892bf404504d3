namespace MLNet.Diffusion.Noise;

/// <summary>
/// Single-precision natural logarithm and sine/cosine by the Cephes polynomials, evaluated step by step in the order of
/// Julien Pommier's <c>sse_mathfun</c> / Giovanni Garberoglio's <c>avx_mathfun</c> (the <c>log256_ps</c> and
/// <c>sincos256_ps</c> that PyTorch's AVX2 <c>normal_fill_16_AVX2</c> calls). PyTorch's x86-64 builds compile those
/// functions with FMA enabled and GCC's default floating-point contraction, which fuses each multiplication whose only use
/// is an addition or subtraction into a fused multiply–add: the polynomial steps y·x + p, the reduction x + y·DP, the
/// final e·ln2 terms, the sine polynomial's last s·x + x, and, where both terms of an addition are products, the first
/// product in program order. This class rounds exactly where that compiled code rounds (checked bit for bit against
/// torch 1.13's output in the tests), so the results agree with it. Valid for the arguments Box–Muller gives: <c>Log</c>
/// for normal positive floats, <c>SinCos</c> for 0 ≤ x &lt; 2π.
/// </summary>
internal static class CephesFloat
{
    private const float SqrtHalf = 0.707106781186547524f;
    private const float LogP0 = 7.0376836292E-2f, LogP1 = -1.1514610310E-1f, LogP2 = 1.1676998740E-1f,
        LogP3 = -1.2420140846E-1f, LogP4 = 1.4249322787E-1f, LogP5 = -1.6668057665E-1f, LogP6 = 2.0000714765E-1f,
        LogP7 = -2.4999993993E-1f, LogP8 = 3.3333331174E-1f, LogQ1 = -2.12194440e-4f, LogQ2 = 0.693359375f;
    private const float MinusDp1 = -0.78515625f, MinusDp2 = -2.4187564849853515625e-4f, MinusDp3 = -3.77489497744594108e-8f;
    private const float SinP0 = -1.9515295891E-4f, SinP1 = 8.3321608736E-3f, SinP2 = -1.6666654611E-1f;
    private const float CosP0 = 2.443315711809948E-005f, CosP1 = -1.388731625493765E-003f, CosP2 = 4.166664568298827E-002f;
    private const float FourOverPi = 1.27323954473516f;

    /// <summary>ln(<paramref name="x"/>) for a normal, positive <paramref name="x"/>.</summary>
    public static float Log(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        float e = (int)(bits >> 23) - 0x7F;                                   // the exponent, for a mantissa in [0.5, 1)
        x = BitConverter.UInt32BitsToSingle((bits & ~0x7F800000u) | 0x3F000000u);
        e += 1f;
        bool small = x < SqrtHalf;                                            // x < √½: use 2x − 1 and e − 1
        float tmp = small ? x : 0f;
        x -= 1f;
        e -= small ? 1f : 0f;
        x += tmp;

        float z = x * x;
        float y = LogP0;
        y = MathF.FusedMultiplyAdd(y, x, LogP1);
        y = MathF.FusedMultiplyAdd(y, x, LogP2);
        y = MathF.FusedMultiplyAdd(y, x, LogP3);
        y = MathF.FusedMultiplyAdd(y, x, LogP4);
        y = MathF.FusedMultiplyAdd(y, x, LogP5);
        y = MathF.FusedMultiplyAdd(y, x, LogP6);
        y = MathF.FusedMultiplyAdd(y, x, LogP7);
        y = MathF.FusedMultiplyAdd(y, x, LogP8);
        y *= x;
        y = MathF.FusedMultiplyAdd(y, z, e * LogQ1);
        y = MathF.FusedMultiplyAdd(-z, 0.5f, y);
        x += y;
        x = MathF.FusedMultiplyAdd(e, LogQ2, x);
        return x;
    }

    /// <summary>sin and cos of <paramref name="x"/> (0 ≤ x, well below 8192).</summary>
    public static void SinCos(float x, out float sin, out float cos)
    {
        bool negative = x < 0;
        x = MathF.Abs(x);
        int j = (int)(x * FourOverPi);                                        // octant, truncated
        j = (j + 1) & ~1;
        float y = j;
        bool swapSin = (j & 4) != 0;
        bool sinFromSinPolynomial = (j & 2) == 0;
        x = MathF.FusedMultiplyAdd(y, MinusDp1, x);                           // extended-precision reduction by π/4
        x = MathF.FusedMultiplyAdd(y, MinusDp2, x);
        x = MathF.FusedMultiplyAdd(y, MinusDp3, x);
        bool cosNegative = ((j - 2) & 4) == 0;

        float z = x * x;
        float c = CosP0;                                                      // cos polynomial on [−π/4, π/4]
        c = MathF.FusedMultiplyAdd(c, z, CosP1);
        c = MathF.FusedMultiplyAdd(c, z, CosP2);
        c *= z;
        c = MathF.FusedMultiplyAdd(c, z, -(z * 0.5f));
        c += 1f;
        float s = SinP0;                                                      // sin polynomial on [−π/4, π/4]
        s = MathF.FusedMultiplyAdd(s, z, SinP1);
        s = MathF.FusedMultiplyAdd(s, z, SinP2);
        s *= z;
        s = MathF.FusedMultiplyAdd(s, x, x);

        float sinValue = sinFromSinPolynomial ? s : c;
        float cosValue = sinFromSinPolynomial ? c : s;
        sin = (negative ^ swapSin) ? -sinValue : sinValue;
        cos = cosNegative ? -cosValue : cosValue;
    }
}

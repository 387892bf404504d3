using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// Single-pass element-wise updates for the schedulers' hot loops. A chain of <c>TensorPrimitives</c> calls
/// streams every buffer once per call (a DPM-Solver++ 2M step made six passes over the latents, a PLMS step eight);
/// these read each input and write each output once. Every expression is evaluated in the same order, with
/// the same separate roundings, as the chain it replaces (no fused multiply-add), so results are bit-identical.
/// </summary>
internal static class LatentKernels
{
    /// <summary>
    /// e = q·x + p·F (written to <paramref name="store"/> unless empty), then
    /// x ← ((sx·x + ke·e) + k1·h1) + k2·h2) + k3·h3, with only the first <paramref name="histories"/> of h1, h2, h3 used.
    /// With q = 0 and p = 1, e = F exactly. Every input at an index is read before anything is stored there, so
    /// <paramref name="store"/> may be the same buffer as a history: a multistep solver overwrites, in place, the history
    /// its next step no longer needs, and the store then costs no extra stream through memory.
    /// </summary>
    public static void Update(ReadOnlySpan<float> model, Span<float> sample, Span<float> store, float p, float q,
        float sx, float ke, int histories,
        ReadOnlySpan<float> h1 = default, float k1 = 0, ReadOnlySpan<float> h2 = default, float k2 = 0, ReadOnlySpan<float> h3 = default, float k3 = 0)
    {
        int n = sample.Length;
        if (model.Length != n || (!store.IsEmpty && store.Length != n) || (histories >= 1 && h1.Length != n)
            || (histories >= 2 && h2.Length != n) || (histories >= 3 && h3.Length != n) || histories is < 0 or > 3)
            throw new ArgumentException("Kernel buffers must all have the sample's length.");
        bool keep = !store.IsEmpty, plain = q == 0 && p == 1;
        ref float f = ref MemoryMarshal.GetReference(model);
        ref float x = ref MemoryMarshal.GetReference(sample);
        ref float s = ref keep ? ref MemoryMarshal.GetReference(store) : ref Unsafe.NullRef<float>();
        ref float a = ref histories >= 1 ? ref MemoryMarshal.GetReference(h1) : ref Unsafe.NullRef<float>();
        ref float b = ref histories >= 2 ? ref MemoryMarshal.GetReference(h2) : ref Unsafe.NullRef<float>();
        ref float c = ref histories >= 3 ? ref MemoryMarshal.GetReference(h3) : ref Unsafe.NullRef<float>();
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vp = Vector512.Create(p); var vq = Vector512.Create(q); var vsx = Vector512.Create(sx); var vke = Vector512.Create(ke);
            var v1 = Vector512.Create(k1); var v2 = Vector512.Create(k2); var v3 = Vector512.Create(k3);
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var vf = Vector512.LoadUnsafe(ref f, (nuint)i);
                var vx = Vector512.LoadUnsafe(ref x, (nuint)i);
                var e = plain ? vf : vx * vq + vf * vp;
                var r = vx * vsx + e * vke;
                if (histories >= 1) r = Vector512.LoadUnsafe(ref a, (nuint)i) * v1 + r;
                if (histories >= 2) r = Vector512.LoadUnsafe(ref b, (nuint)i) * v2 + r;
                if (histories >= 3) r = Vector512.LoadUnsafe(ref c, (nuint)i) * v3 + r;
                if (keep) e.StoreUnsafe(ref s, (nuint)i);
                r.StoreUnsafe(ref x, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var vp = Vector256.Create(p); var vq = Vector256.Create(q); var vsx = Vector256.Create(sx); var vke = Vector256.Create(ke);
            var v1 = Vector256.Create(k1); var v2 = Vector256.Create(k2); var v3 = Vector256.Create(k3);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var vf = Vector256.LoadUnsafe(ref f, (nuint)i);
                var vx = Vector256.LoadUnsafe(ref x, (nuint)i);
                var e = plain ? vf : vx * vq + vf * vp;
                var r = vx * vsx + e * vke;
                if (histories >= 1) r = Vector256.LoadUnsafe(ref a, (nuint)i) * v1 + r;
                if (histories >= 2) r = Vector256.LoadUnsafe(ref b, (nuint)i) * v2 + r;
                if (histories >= 3) r = Vector256.LoadUnsafe(ref c, (nuint)i) * v3 + r;
                if (keep) e.StoreUnsafe(ref s, (nuint)i);
                r.StoreUnsafe(ref x, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float vf = Unsafe.Add(ref f, i), vx = Unsafe.Add(ref x, i);
            float e = plain ? vf : vx * q + vf * p;
            float r = vx * sx + e * ke;
            if (histories >= 1) r = Unsafe.Add(ref a, i) * k1 + r;
            if (histories >= 2) r = Unsafe.Add(ref b, i) * k2 + r;
            if (histories >= 3) r = Unsafe.Add(ref c, i) * k3 + r;
            if (keep) Unsafe.Add(ref s, i) = e;
            Unsafe.Add(ref x, i) = r;
        }
    }

    /// <summary>
    /// PLMS: e = q·x + p·F stored in <paramref name="store"/>, w = ((e·k0 + h1·k1) + h2·k2) + h3·k3 (first
    /// <paramref name="histories"/> terms), x ← sx·x + kw·w: the Adams–Bashforth combination and the transfer. As in
    /// <see cref="Update"/>, <paramref name="store"/> may be the same buffer as a history (overwritten in place).
    /// </summary>
    public static void Plms(ReadOnlySpan<float> model, Span<float> sample, Span<float> store, float p, float q,
        float k0, int histories, ReadOnlySpan<float> h1, float k1, ReadOnlySpan<float> h2, float k2, ReadOnlySpan<float> h3, float k3, float sx, float kw)
    {
        int n = sample.Length;
        if (model.Length != n || store.Length != n || (histories >= 1 && h1.Length != n)
            || (histories >= 2 && h2.Length != n) || (histories >= 3 && h3.Length != n) || histories is < 0 or > 3)
            throw new ArgumentException("Kernel buffers must all have the sample's length.");
        bool plain = q == 0 && p == 1;
        ref float f = ref MemoryMarshal.GetReference(model);
        ref float x = ref MemoryMarshal.GetReference(sample);
        ref float s = ref MemoryMarshal.GetReference(store);
        ref float a = ref histories >= 1 ? ref MemoryMarshal.GetReference(h1) : ref Unsafe.NullRef<float>();
        ref float b = ref histories >= 2 ? ref MemoryMarshal.GetReference(h2) : ref Unsafe.NullRef<float>();
        ref float c = ref histories >= 3 ? ref MemoryMarshal.GetReference(h3) : ref Unsafe.NullRef<float>();
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vp = Vector512.Create(p); var vq = Vector512.Create(q); var v0 = Vector512.Create(k0);
            var v1 = Vector512.Create(k1); var v2 = Vector512.Create(k2); var v3 = Vector512.Create(k3);
            var vsx = Vector512.Create(sx); var vkw = Vector512.Create(kw);
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var vf = Vector512.LoadUnsafe(ref f, (nuint)i);
                var vx = Vector512.LoadUnsafe(ref x, (nuint)i);
                var e = plain ? vf : vx * vq + vf * vp;
                var w = e * v0;
                if (histories >= 1) w = Vector512.LoadUnsafe(ref a, (nuint)i) * v1 + w;
                if (histories >= 2) w = Vector512.LoadUnsafe(ref b, (nuint)i) * v2 + w;
                if (histories >= 3) w = Vector512.LoadUnsafe(ref c, (nuint)i) * v3 + w;
                e.StoreUnsafe(ref s, (nuint)i);
                (vx * vsx + w * vkw).StoreUnsafe(ref x, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var vp = Vector256.Create(p); var vq = Vector256.Create(q); var v0 = Vector256.Create(k0);
            var v1 = Vector256.Create(k1); var v2 = Vector256.Create(k2); var v3 = Vector256.Create(k3);
            var vsx = Vector256.Create(sx); var vkw = Vector256.Create(kw);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var vf = Vector256.LoadUnsafe(ref f, (nuint)i);
                var vx = Vector256.LoadUnsafe(ref x, (nuint)i);
                var e = plain ? vf : vx * vq + vf * vp;
                var w = e * v0;
                if (histories >= 1) w = Vector256.LoadUnsafe(ref a, (nuint)i) * v1 + w;
                if (histories >= 2) w = Vector256.LoadUnsafe(ref b, (nuint)i) * v2 + w;
                if (histories >= 3) w = Vector256.LoadUnsafe(ref c, (nuint)i) * v3 + w;
                e.StoreUnsafe(ref s, (nuint)i);
                (vx * vsx + w * vkw).StoreUnsafe(ref x, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float vf = Unsafe.Add(ref f, i), vx = Unsafe.Add(ref x, i);
            float e = plain ? vf : vx * q + vf * p;
            float w = e * k0;
            if (histories >= 1) w = Unsafe.Add(ref a, i) * k1 + w;
            if (histories >= 2) w = Unsafe.Add(ref b, i) * k2 + w;
            if (histories >= 3) w = Unsafe.Add(ref c, i) * k3 + w;
            Unsafe.Add(ref s, i) = e;
            Unsafe.Add(ref x, i) = vx * sx + w * kw;
        }
    }

    /// <summary>destination = a·x + b·y in one pass (the spans may be the same).</summary>
    public static void AxPlusBy(float a, ReadOnlySpan<float> x, float b, ReadOnlySpan<float> y, Span<float> destination)
    {
        int n = destination.Length;
        if (x.Length != n || y.Length != n) throw new ArgumentException("Kernel buffers must have one length.");
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float ry = ref MemoryMarshal.GetReference(y);
        ref float rd = ref MemoryMarshal.GetReference(destination);
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(a); var vb = Vector512.Create(b);
            for (; i <= n - Vector512<float>.Count; i += Vector512<float>.Count)
                (Vector512.LoadUnsafe(ref rx, (nuint)i) * va + Vector512.LoadUnsafe(ref ry, (nuint)i) * vb).StoreUnsafe(ref rd, (nuint)i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a); var vb = Vector256.Create(b);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
                (Vector256.LoadUnsafe(ref rx, (nuint)i) * va + Vector256.LoadUnsafe(ref ry, (nuint)i) * vb).StoreUnsafe(ref rd, (nuint)i);
        }
        for (; i < n; i++) Unsafe.Add(ref rd, i) = Unsafe.Add(ref rx, i) * a + Unsafe.Add(ref ry, i) * b;
    }

    /// <summary>
    /// The clipped DDIM/DDPM combination in double precision, as the scalar loop it replaces:
    /// x ← c₀·clamp(a₀·x + b₀·m, ±clip) + c₁·(a₁·x + b₁·m) + c₂·x.
    /// </summary>
    public static void CombineClipped(ReadOnlySpan<float> model, Span<float> sample, double a0, double b0, double a1, double b1,
        double clip, double cX0, double cEps, double cSample)
    {
        int n = sample.Length;
        if (model.Length != n) throw new ArgumentException("Kernel buffers must have one length.");
        ref float rm = ref MemoryMarshal.GetReference(model);
        ref float rx = ref MemoryMarshal.GetReference(sample);
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var va0 = Vector256.Create(a0); var vb0 = Vector256.Create(b0); var va1 = Vector256.Create(a1); var vb1 = Vector256.Create(b1);
            var lo = Vector256.Create(-clip); var hi = Vector256.Create(clip);
            var c0 = Vector256.Create(cX0); var c1 = Vector256.Create(cEps); var c2 = Vector256.Create(cSample);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var (xl, xh) = Vector256.Widen(Vector256.LoadUnsafe(ref rx, (nuint)i));
                var (ml, mh) = Vector256.Widen(Vector256.LoadUnsafe(ref rm, (nuint)i));
                Vector256.Narrow(One(xl, ml), One(xh, mh)).StoreUnsafe(ref rx, (nuint)i);
            }

            Vector256<double> One(Vector256<double> x, Vector256<double> m)
            {
                var x0 = Vector256.Min(Vector256.Max(va0 * x + vb0 * m, lo), hi);
                var eps = va1 * x + vb1 * m;
                return c0 * x0 + c1 * eps + c2 * x;
            }
        }
        for (; i < n; i++)
        {
            double x = Unsafe.Add(ref rx, i), m = Unsafe.Add(ref rm, i);
            double x0 = Math.Clamp(a0 * x + b0 * m, -clip, clip);
            double eps = a1 * x + b1 * m;
            Unsafe.Add(ref rx, i) = (float)(cX0 * x0 + cEps * eps + cSample * x);
        }
    }

    /// <summary>The scalars of <see cref="UniPc"/>.</summary>
    /// <param name="P">Conversion: e = P·F + Q·x.</param>
    /// <param name="Q">Conversion.</param>
    /// <param name="Correct">Whether the corrector runs (else x_c = x).</param>
    /// <param name="CLast">Corrector: coefficient of the last sample.</param>
    /// <param name="CNew">Corrector: coefficient of e.</param>
    /// <param name="CH0">Corrector: coefficient of history 0 (the previous converted output).</param>
    /// <param name="CH1">Corrector: coefficient of history 1.</param>
    /// <param name="CH2">Corrector: coefficient of history 2.</param>
    /// <param name="PX">Predictor: coefficient of x_c.</param>
    /// <param name="PNew">Predictor: coefficient of e.</param>
    /// <param name="PH0">Predictor: coefficient of history 0.</param>
    /// <param name="PH1">Predictor: coefficient of history 1.</param>
    internal readonly record struct UniPcCoefficients(float P, float Q, bool Correct, float CLast, float CNew, float CH0, float CH1, float CH2,
        float PX, float PNew, float PH0, float PH1);

    /// <summary>
    /// One UniPC step in one pass: e = P·F + Q·x (stored in <paramref name="converted"/>); the corrected sample
    /// x_c = CLast·last + CNew·e + Σ CH_k·h_k (or x) is stored in <paramref name="last"/>; then
    /// x ← PX·x_c + PNew·e + PH0·h0 + PH1·h1. Only the first <paramref name="histories"/> of h0, h1, h2 are read.
    /// </summary>
    public static void UniPc(ReadOnlySpan<float> model, Span<float> sample, Span<float> last, Span<float> converted, int histories,
        ReadOnlySpan<float> h0, ReadOnlySpan<float> h1, ReadOnlySpan<float> h2, in UniPcCoefficients k)
    {
        int n = sample.Length;
        if (model.Length != n || last.Length != n || converted.Length != n || histories is < 0 or > 3
            || (histories >= 1 && h0.Length != n) || (histories >= 2 && h1.Length != n) || (histories >= 3 && h2.Length != n))
            throw new ArgumentException("Kernel buffers must all have the sample's length.");
        ref float f = ref MemoryMarshal.GetReference(model);
        ref float x = ref MemoryMarshal.GetReference(sample);
        ref float l = ref MemoryMarshal.GetReference(last);
        ref float e = ref MemoryMarshal.GetReference(converted);
        ref float a = ref histories >= 1 ? ref MemoryMarshal.GetReference(h0) : ref Unsafe.NullRef<float>();
        ref float b = ref histories >= 2 ? ref MemoryMarshal.GetReference(h1) : ref Unsafe.NullRef<float>();
        ref float c = ref histories >= 3 ? ref MemoryMarshal.GetReference(h2) : ref Unsafe.NullRef<float>();
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vp = Vector256.Create(k.P); var vq = Vector256.Create(k.Q);
            var cl = Vector256.Create(k.CLast); var cn = Vector256.Create(k.CNew);
            var c0 = Vector256.Create(k.CH0); var c1 = Vector256.Create(k.CH1); var c2 = Vector256.Create(k.CH2);
            var px = Vector256.Create(k.PX); var pn = Vector256.Create(k.PNew); var p0 = Vector256.Create(k.PH0); var p1 = Vector256.Create(k.PH1);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var vx = Vector256.LoadUnsafe(ref x, (nuint)i);
                var ve = Vector256.LoadUnsafe(ref f, (nuint)i) * vp + vx * vq;
                var va = histories >= 1 ? Vector256.LoadUnsafe(ref a, (nuint)i) : default;
                var vb = histories >= 2 ? Vector256.LoadUnsafe(ref b, (nuint)i) : default;
                var xc = vx;
                if (k.Correct)
                {
                    xc = Vector256.LoadUnsafe(ref l, (nuint)i) * cl + ve * cn;
                    if (histories >= 1) xc += va * c0;
                    if (histories >= 2) xc += vb * c1;
                    if (histories >= 3) xc += Vector256.LoadUnsafe(ref c, (nuint)i) * c2;
                }
                var xn = xc * px + ve * pn;
                if (histories >= 1) xn += va * p0;
                if (histories >= 2) xn += vb * p1;
                xc.StoreUnsafe(ref l, (nuint)i);
                ve.StoreUnsafe(ref e, (nuint)i);
                xn.StoreUnsafe(ref x, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float vx = Unsafe.Add(ref x, i);
            float ve = Unsafe.Add(ref f, i) * k.P + vx * k.Q;
            float va = histories >= 1 ? Unsafe.Add(ref a, i) : 0, vb = histories >= 2 ? Unsafe.Add(ref b, i) : 0;
            float xc = vx;
            if (k.Correct)
            {
                xc = Unsafe.Add(ref l, i) * k.CLast + ve * k.CNew;
                if (histories >= 1) xc += va * k.CH0;
                if (histories >= 2) xc += vb * k.CH1;
                if (histories >= 3) xc += Unsafe.Add(ref c, i) * k.CH2;
            }
            float xn = xc * k.PX + ve * k.PNew;
            if (histories >= 1) xn += va * k.PH0;
            if (histories >= 2) xn += vb * k.PH1;
            Unsafe.Add(ref l, i) = xc;
            Unsafe.Add(ref e, i) = ve;
            Unsafe.Add(ref x, i) = xn;
        }
    }
}

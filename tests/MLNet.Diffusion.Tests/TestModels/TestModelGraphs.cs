using System.Collections.Concurrent;
using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>The ONNX graphs of the test model (closed forms documented on <see cref="TestModelFactory"/>).</summary>
internal static class TestModelGraphs
{
    /// <summary>The fixed tables of one embedding width: text tables A, B, S, P and the target projection W [D × 4].</summary>
    internal sealed record TableSet(float[] A, float[] B, float[] S, float[] P, float[] W);

    private static readonly ConcurrentDictionary<int, TableSet> s_tables = new();

    internal static TableSet Tables(int width) => s_tables.GetOrAdd(width, static d =>
    {
        int l = TestTokenizer.MaxLength;
        var a = Fill(TestModelFactory.TableA * d, 1, u => u);
        var b = Fill(TestModelFactory.TableB * d, 2, u => u);
        var s = Fill(l * d, 3, u => u);
        var p = Fill(l * d, 4, u => 0.125f * u);
        float scale = TestModelFactory.TargetGain / MathF.Sqrt(d);
        var w = Fill(d * 4, 5, u => u * scale);
        return new TableSet(a, b, s, p, w);
    });

    private static float[] Fill(int count, int seed, Func<float, float> map)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = map(Uniform(seed, i));
        return values;
    }

    /// <summary>SplitMix64 of (seed, index) → a float uniform in [−1, 1) with 24 bits (exact, platform-independent).</summary>
    internal static float Uniform(int seed, int index)
    {
        ulong z = (((ulong)(uint)seed << 32) | (uint)index) + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (int)(z >> 40) / 8388608f - 1f;
    }

    private static OnnxElementType FloatType(TestModelOptions o) => o.Fp16 ? OnnxElementType.Float16 : OnnxElementType.Float;

    /// <summary>Casts a boundary input to float32 (fp16 models).</summary>
    private static string In(OnnxGraphBuilder g, string x, TestModelOptions o) => o.Fp16 ? g.Cast(x, OnnxElementType.Float) : x;

    /// <summary>Names a float32 result as a graph output, casting to float16 for fp16 models.</summary>
    private static void Out(OnnxGraphBuilder g, string x, string name, TestModelOptions o, params object[] dims)
    {
        if (o.Fp16) g.NodeNamed("Cast", [x], name, ("to", (long)OnnxElementType.Float16));
        else g.Identity(x, name);
        g.Output(name, FloatType(o), dims);
    }

    internal static OnnxGraphBuilder TextEncoder(TestModelOptions o)
    {
        int d = o.EmbeddingWidth;
        var t = Tables(d);
        var g = new OnnxGraphBuilder("test_text_encoder");
        var ids = g.Input("input_ids", o.IdType, "batch", "sequence");
        var ids64 = o.IdType == OnnxElementType.Int64 ? ids : g.Cast(ids, OnnxElementType.Int64);
        var ia = g.Node("Mod", [ids64, g.Longs(TestModelFactory.TableA)], ("fmod", 0L));
        var ib = g.Node("Mod", [ids64, g.Longs(TestModelFactory.TableB)], ("fmod", 0L));
        var ea = g.Gather(g.Initializer("token_table_a", t.A, TestModelFactory.TableA, d), ia);
        var eb = g.Gather(g.Initializer("token_table_b", t.B, TestModelFactory.TableB, d), ib);
        var scaled = g.Mul(g.Add(ea, eb), g.Initializer("position_scale", t.S, TestTokenizer.MaxLength, d));
        var hidden = g.Add(scaled, g.Initializer("position_bias", t.P, TestTokenizer.MaxLength, d));
        if (o.NanTextEncoder) hidden = g.Add(hidden, g.Scalar(float.NaN));
        Out(g, hidden, "last_hidden_state", o, "batch", TestTokenizer.MaxLength, d);
        Out(g, g.ReduceMean(hidden, [1], keepDims: false), "pooler_output", o, "batch", d);
        return g;
    }

    /// <param name="o">The model's options.</param>
    /// <param name="alphasCumprod">ᾱ of the scheduler config.</param>
    /// <param name="adjustTarget">Declares further inputs and returns a new target from the target z(c) [B, 4, 1, 1]
    /// (the ControlNet-ready test UNet adds its residuals' shift); null keeps z(c).</param>
    internal static OnnxGraphBuilder Unet(TestModelOptions o, double[] alphasCumprod, Func<OnnxGraphBuilder, string, string>? adjustTarget = null)
    {
        int d = o.EmbeddingWidth;
        var g = new OnnxGraphBuilder("oracle_unet");
        var sample = In(g, g.Input("sample", FloatType(o), "batch", o.UnetInChannels, "height", "width"), o);
        var timestep = TimestepInput(g, o);
        var context = In(g, g.Input("encoder_hidden_states", FloatType(o), "batch", o.UnetSequenceLength is int fixedLength ? fixedLength : "sequence", d), o);

        // Target z(c) = tanh(mean_p(c)·W) as [B, 4, 1, 1].
        var pre = g.MatMul(g.ReduceMean(context, [1], keepDims: false), g.Initializer("target_projection", Tables(d).W, d, 4));
        var target = g.Unsqueeze(g.Node("Tanh", [pre]), 2, 3);
        if (adjustTarget is not null) target = adjustTarget(g, target);

        string x, z;
        if (o.UnetInChannels == 9)
        {
            x = g.Slice(sample, [0], [4], [1]);
            var mask = g.Slice(sample, [4], [5], [1]);
            var masked = g.Slice(sample, [5], [9], [1]);
            z = g.Add(masked, g.Mul(mask, g.Sub(target, masked)));
        }
        else
        {
            x = sample;
            z = target;
        }

        var (sqrtA, sqrtB) = NoiseLevels(g, timestep, alphasCumprod);
        var sa = g.Reshape(sqrtA, -1, 1, 1, 1);
        var sb = g.Reshape(sqrtB, -1, 1, 1, 1);

        string result;
        if (o.DataStd > 0)
        {
            // Data N(z, s²): r = x − √ᾱ·z, D = ᾱs² + 1 − ᾱ, ε̂ = √(1 − ᾱ)·r/D, x̂₀ = z + √ᾱ·s²·r/D (GaussianOracle).
            var s2 = g.Scalar(o.DataStd * o.DataStd);
            var r = g.Sub(x, g.Mul(sa, z));
            var denom = g.Add(g.Mul(g.Mul(sa, sa), s2), g.Mul(sb, sb));
            var eps = g.Div(g.Mul(sb, r), denom);
            var x0 = g.Add(z, g.Div(g.Mul(g.Mul(sa, s2), r), denom));
            result = o.PredictionType switch
            {
                "epsilon" => eps,
                "sample" => x0,
                _ => g.Sub(g.Mul(sa, eps), g.Mul(sb, x0)),
            };
        }
        else
        {
            result = o.PredictionType switch
            {
                "epsilon" => g.Div(g.Sub(x, g.Mul(sa, z)), sb),
                "sample" => g.Node("Expand", [z, g.Node("Shape", [x])]),
                _ => g.Div(g.Sub(g.Mul(sa, x), z), sb),
            };
        }
        var rowTimestep = g.Reshape(timestep, -1, 1, 1, 1);
        if (o.NanBelowTimestep is float nanBelow)
            result = g.Where(g.Node("Less", [rowTimestep, g.Scalar(nanBelow)]), g.Scalar(float.NaN), result);
        if (o.OverflowBelowTimestep is float overflowBelow)
            result = g.Where(g.Node("Less", [rowTimestep, g.Scalar(overflowBelow)]), g.Mul(result, g.Scalar(1e9f)), result);
        result = Slowdown(g, result, sample, o.UnetSlowdown);
        Out(g, result, "out_sample", o, "batch", 4, "height", "width");
        return g;
    }

    /// <summary>
    /// √ᾱ and √(1 − ᾱ) at a float32 <paramref name="timestep"/> ([batch] or [1]): σ(t) interpolated linearly between
    /// ⌊t⌋ and ⌊t⌋ + 1 (t clamped to [0, N − 1]; the table repeats its last value once), √ᾱ = 1/√(1 + σ²),
    /// √(1 − ᾱ) = σ·√ᾱ. A zero-SNR last step keeps a finite σ (ᾱ is floored at 2⁻²⁴).
    /// </summary>
    internal static (string SqrtAlpha, string SqrtOneMinusAlpha) NoiseLevels(OnnxGraphBuilder g, string timestep, double[] alphasCumprod)
    {
        int n = alphasCumprod.Length;
        var sigmas = new float[n + 1];
        for (int i = 0; i < n; i++)
        {
            double a = Math.Max(alphasCumprod[i], 1.0 / (1 << 24));
            sigmas[i] = (float)Math.Sqrt((1 - a) / a);
        }
        sigmas[n] = sigmas[n - 1];
        var sigmaTable = g.Initializer("sigma_table", sigmas, n + 1);
        var clamped = g.Node("Clip", [timestep, g.Scalar(0f), g.Scalar(n - 1)]);
        var floor = g.Node("Floor", [clamped]);
        var frac = g.Sub(clamped, floor);
        var lo = g.Cast(floor, OnnxElementType.Int64);
        var sLo = g.Gather(sigmaTable, lo);
        var sHi = g.Gather(sigmaTable, g.Add(lo, g.Longs(1)));
        var sigma = g.Add(sLo, g.Mul(frac, g.Sub(sHi, sLo)));
        var one = g.Scalar(1f);
        var sqrtA = g.Div(one, g.Sqrt(g.Add(one, g.Mul(sigma, sigma))));
        return (sqrtA, g.Mul(sigma, sqrtA));
    }

    /// <summary>
    /// <paramref name="x"/> + 0·(a chain of <paramref name="products"/> 256×256 matrix products seeded from
    /// <paramref name="seed"/>): the value is unchanged but each call does the work, which cannot be folded at load.
    /// </summary>
    private static string Slowdown(OnnxGraphBuilder g, string x, string seed, int products)
    {
        if (products <= 0) return x;
        const int n = 256;
        // A data-dependent 256×256 matrix: the seed's mean times zero, expanded.
        var zero = g.Mul(g.ReduceMean(g.Reshape(seed, -1), [0], keepDims: true), g.Scalar(0f));
        var m = g.Node("Expand", [zero, g.Longs(n, n)]);
        var weights = new float[n * n];
        for (int i = 0; i < n; i++) weights[i * n + i] = 1f;
        var w = g.Initializer(g.Fresh("slow_w"), weights, n, n);
        for (int i = 0; i < products; i++) m = g.MatMul(m, w);
        var sum = g.ReduceSum(m, [0, 1], keepDims: false);
        return g.Add(x, g.Mul(sum, g.Scalar(0f)));
    }

    /// <summary>Declares <c>timestep</c> per the options and returns it as float32 [batch] or [1].</summary>
    private static string TimestepInput(OnnxGraphBuilder g, TestModelOptions o) => TimestepInput(g, o.Timestep, o.Fp16, "batch");

    /// <summary>
    /// Declares <c>timestep</c> in the given form (a float [batch] one is float16 when <paramref name="fp16"/>) with
    /// <paramref name="batch"/> as its batch dimension (a name, or a fixed <see cref="int"/>), and returns it as float32
    /// [batch] or [1].
    /// </summary>
    internal static string TimestepInput(OnnxGraphBuilder g, TimestepForm form, bool fp16, object batch) => form switch
    {
        TimestepForm.FloatBatch when fp16 => g.Cast(g.Input("timestep", OnnxElementType.Float16, batch), OnnxElementType.Float),
        TimestepForm.FloatBatch => g.Input("timestep", OnnxElementType.Float, batch),
        TimestepForm.Int64Batch => g.Cast(g.Input("timestep", OnnxElementType.Int64, batch), OnnxElementType.Float),
        TimestepForm.FloatScalar => g.Reshape(g.Input("timestep", OnnxElementType.Float), 1),
        _ => throw new ArgumentOutOfRangeException(nameof(form), form, "Unknown timestep form."),
    };

    /// <summary>A UNet with a rank-3 <c>sample</c>, passed through as <c>out_sample</c>.</summary>
    internal static OnnxGraphBuilder RankThreeUnet(TestModelOptions o)
    {
        var g = new OnnxGraphBuilder("rank_three_unet");
        var sample = g.Input("sample", FloatType(o), "batch", o.UnetInChannels, "hw");
        TimestepInput(g, o);
        g.Input("encoder_hidden_states", FloatType(o), "batch", "sequence", o.EmbeddingWidth);
        g.Identity(sample, "out_sample");
        g.Output("out_sample", FloatType(o), "batch", o.UnetInChannels, "hw");
        return g;
    }

    internal static OnnxGraphBuilder VaeDecoder(TestModelOptions o)
    {
        var g = new OnnxGraphBuilder("test_vae_decoder");
        var latent = In(g, g.Input("latent_sample", FloatType(o), "batch", 4, "height", "width"), o);
        var rgb = g.Mul(g.Slice(latent, [0], [3], [1]), g.Scalar(o.ScalingFactor));
        var up = g.Node("Resize", [rgb, "", g.Initializer(g.Fresh("scales"), [1f, 1f, 8f, 8f], 4)],
            ("mode", "nearest"), ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor"));
        if (o.NanVaeDecoder) up = g.Add(up, g.Scalar(float.NaN));
        up = Slowdown(g, up, latent, o.VaeDecoderSlowdown);
        Out(g, up, "sample", o, "batch", 3, "image_height", "image_width");
        return g;
    }

    internal static OnnxGraphBuilder VaeEncoder(TestModelOptions o)
    {
        var g = new OnnxGraphBuilder("test_vae_encoder");
        var image = In(g, g.Input("sample", FloatType(o), "batch", 3, "image_height", "image_width"), o);
        var pooled = g.Node("AveragePool", [image], ("kernel_shape", new long[] { 8, 8 }), ("strides", new long[] { 8, 8 }));
        var four = g.Concat(1, pooled, g.ReduceMean(pooled, [1], keepDims: true));
        var mean = g.Div(four, g.Scalar(o.ScalingFactor));
        if (o.Encoder == VaeEncoderForm.LatentSample)
        {
            Out(g, mean, "latent_sample", o, "batch", 4, "height", "width");
        }
        else
        {
            var logVar = g.Add(g.Mul(mean, g.Scalar(0f)), g.Scalar(TestModelFactory.EncoderLogVariance));
            Out(g, g.Concat(1, mean, logVar), "latent_parameters", o, "batch", 8, "height", "width");
        }
        return g;
    }
}

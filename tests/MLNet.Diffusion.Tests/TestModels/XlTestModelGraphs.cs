using System.Collections.Concurrent;
using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>The ONNX graphs of the SDXL-family test models (closed forms documented on <see cref="XlTestModelFactory"/>).</summary>
internal static class XlTestModelGraphs
{
    /// <summary>The fixed tables of one text encoder: token tables A, B, position scale S and bias P (as the SD test
    /// encoder), per-layer gains G, mixing gains Q and biases R [L × D], the final layer norm's γ and β, and
    /// (text_encoder_2) the projection [D × P].</summary>
    internal sealed record EncoderTables(int Width, int Layers, float[] A, float[] B, float[] S, float[] P, float[] Gain, float[] Mix, float[] Bias,
        float[] NormScale, float[] NormBias, float[]? Projection);

    /// <summary>The oracle UNet's fixed projections onto the 4 latent channels: context W [Dc × 4], pooled Wp [P × 4],
    /// time ids Wt [n × 4] (already divided by each position's scale), guidance embedding Wg [256 × 4].</summary>
    internal sealed record UnetTables(float[] Context, float[] Pooled, float[] TimeIds, float[] Guidance);

    private static readonly ConcurrentDictionary<(int, int, int, int), EncoderTables> s_encoders = new();
    private static readonly ConcurrentDictionary<(int, int, int, bool), UnetTables> s_unets = new();

    /// <summary>The tables of encoder 1 (text_encoder) or 2 (text_encoder_2); <paramref name="pooledWidth"/> 0 for no projection.</summary>
    internal static EncoderTables Encoder(int encoder, int width, int layers, int pooledWidth) =>
        s_encoders.GetOrAdd((encoder, width, layers, pooledWidth), static key =>
        {
            var (e, d, l, p) = key;
            int seed = 100 * e, len = TestTokenizer.MaxLength;
            float inv = 1f / MathF.Sqrt(d);
            return new EncoderTables(d, l,
                Fill(TestModelFactory.TableA * d, seed + 1, u => u),
                Fill(TestModelFactory.TableB * d, seed + 2, u => u),
                Fill(len * d, seed + 3, u => u),
                Fill(len * d, seed + 4, u => 0.125f * u),
                Fill(l * d, seed + 5, u => 1f + 0.5f * u),
                Fill(l * d, seed + 10, u => u),
                Fill(l * d, seed + 6, u => 0.25f * u),
                Fill(d, seed + 7, u => 1f + 0.25f * u),
                Fill(d, seed + 8, u => 0.125f * u),
                p > 0 ? Fill(d * p, seed + 9, u => u * inv) : null);
        });

    /// <summary>The oracle UNet's tables for a context width, pooled width (0: none), time-id count (0: none) and
    /// guidance embedding (or not).</summary>
    internal static UnetTables Unet(int contextWidth, int pooledWidth, int timeIds, bool guidance) =>
        s_unets.GetOrAdd((contextWidth, pooledWidth, timeIds, guidance), static key =>
        {
            var (dc, p, n, g) = key;
            var timeScale = new float[n * 4];
            for (int i = 0; i < n; i++)
            {
                // Each value over its typical magnitude: sizes (positions 0, 1 and the base's 4, 5) ≈ 1024, crops (2, 3) ≈ 0–128,
                // the refiner's fifth value an aesthetic score ≈ 2.5–6.
                float scale = i is 2 or 3 ? XlTestModelFactory.CropScale
                    : n == 5 && i == 4 ? XlTestModelFactory.AestheticScoreScale
                    : XlTestModelFactory.TimeIdSizeScale;
                for (int ch = 0; ch < 4; ch++)
                    timeScale[i * 4 + ch] = XlTestModelFactory.TimeIdGain * TestModelGraphs.Uniform(404, i * 4 + ch) / scale;
            }
            return new UnetTables(
                Fill(dc * 4, 401, u => u * XlTestModelFactory.ContextGain / MathF.Sqrt(dc)),
                p > 0 ? Fill(p * 4, 402, u => u * XlTestModelFactory.PooledGain / MathF.Sqrt(p)) : [],
                timeScale,
                g ? Fill(XlTestModelFactory.GuidanceEmbeddingWidth * 4, 403, u => u * XlTestModelFactory.GuidanceGain / MathF.Sqrt(XlTestModelFactory.GuidanceEmbeddingWidth)) : []);
        });

    private static float[] Fill(int count, int seed, Func<float, float> map)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = map(TestModelGraphs.Uniform(seed, i));
        return values;
    }

    /// <summary>The [n × n] causal averaging matrix: row p holds 1/(p + 1) at columns 0…p.</summary>
    private static float[] CausalMean(int n)
    {
        var m = new float[n * n];
        for (int p = 0; p < n; p++)
            for (int q = 0; q <= p; q++) m[p * n + q] = 1f / (p + 1);
        return m;
    }

    private static OnnxElementType FloatType(XlTestModelOptions o) => o.Fp16 ? OnnxElementType.Float16 : OnnxElementType.Float;

    /// <summary>Declares a float input (float16 for fp16 models) and returns it as float32.</summary>
    private static string FloatInput(OnnxGraphBuilder g, XlTestModelOptions o, string name, params object[] dims)
    {
        var x = g.Input(name, FloatType(o), dims);
        return o.Fp16 ? g.Cast(x, OnnxElementType.Float) : x;
    }

    /// <summary>Names a float32 value as a graph output (cast to float16 for fp16 models).</summary>
    private static void Out(OnnxGraphBuilder g, XlTestModelOptions o, string x, string name, params object[] dims)
    {
        if (o.Fp16) g.NodeNamed("Cast", [x], name, ("to", (long)OnnxElementType.Float16));
        else g.Identity(x, name);
        g.Output(name, FloatType(o), dims);
    }

    /// <summary>
    /// text_encoder (<paramref name="encoder"/> 1: <c>last_hidden_state</c>, <c>pooler_output</c>, hidden states) or
    /// text_encoder_2 (2: <c>text_embeds</c>, <c>last_hidden_state</c>, hidden states), in Optimum's output order.
    /// A positive <paramref name="projectionWidth"/> makes text_encoder a CLIPTextModelWithProjection too (SD3's CLIP-L):
    /// its outputs are then those of text_encoder_2, with encoder 1's tables and its own projection [D1 × P].
    /// </summary>
    internal static OnnxGraphBuilder TextEncoder(XlTestModelOptions o, int encoder, int projectionWidth = 0)
    {
        bool projected = encoder == 2 || projectionWidth > 0;
        bool second = encoder == 2;
        var t = second
            ? Encoder(2, o.TextEncoder2Width, o.TextEncoder2Layers, o.ResolvedPooledWidth)
            : Encoder(1, o.TextEncoderWidth, o.TextEncoderLayers, projectionWidth);
        bool hiddenStates = second ? o.TextEncoder2HiddenStates : o.ResolvedTextEncoderHiddenStates;
        var idType = second ? o.TextEncoder2IdType : o.TextEncoderIdType;
        int d = t.Width, len = TestTokenizer.MaxLength;

        var g = new OnnxGraphBuilder(second ? "test_text_encoder_2" : "test_text_encoder");
        var ids = g.Input("input_ids", idType, "batch", "sequence");
        var ids64 = idType == OnnxElementType.Int64 ? ids : g.Cast(ids, OnnxElementType.Int64);

        // hidden_states.0: the embeddings, h[p,d] = (A[t mod 61, d] + B[t mod 67, d])·S[p,d] + P[p,d].
        var ia = g.Node("Mod", [ids64, g.Longs(TestModelFactory.TableA)], ("fmod", 0L));
        var ib = g.Node("Mod", [ids64, g.Longs(TestModelFactory.TableB)], ("fmod", 0L));
        var ea = g.Gather(g.Initializer("token_table_a", t.A, TestModelFactory.TableA, d), ia);
        var eb = g.Gather(g.Initializer("token_table_b", t.B, TestModelFactory.TableB, d), ib);
        var h = g.Add(g.Mul(g.Add(ea, eb), g.Initializer("position_scale", t.S, len, d)), g.Initializer("position_bias", t.P, len, d));
        var states = new List<string> { h };
        // Layer k: h ← tanh(h·G_k + causalmean(h)·Q_k + R_k) per channel; the causal mean over positions ≤ p mixes the
        // tokens as CLIP's causal attention does, so the EOS position (pooled) depends on the whole prompt.
        var causal = g.Initializer("causal_mean", CausalMean(len), len, len);
        for (int k = 0; k < t.Layers; k++)
        {
            var gain = g.Initializer($"layer_{k + 1}_gain", t.Gain.AsSpan(k * d, d), d);
            var mix = g.Initializer($"layer_{k + 1}_mix", t.Mix.AsSpan(k * d, d), d);
            var bias = g.Initializer($"layer_{k + 1}_bias", t.Bias.AsSpan(k * d, d), d);
            h = g.Tanh(g.Add(g.Add(g.Mul(h, gain), g.Mul(g.MatMul(causal, h), mix)), bias));
            states.Add(h);
        }
        // last_hidden_state: the final layer norm of the last layer (as CLIP's final_layer_norm).
        var last = g.Node("LayerNormalization", [h, g.Initializer("final_norm_scale", t.NormScale, d), g.Initializer("final_norm_bias", t.NormBias, d)],
            ("axis", -1L), ("epsilon", XlTestModelFactory.LayerNormEpsilon));
        // Pooled: last_hidden_state at the first position of the largest id (the EOS token), as CLIP's argmax pooling.
        var eos = g.Node("ArgMax", [g.Cast(ids64, OnnxElementType.Int32)], ("axis", 1L), ("keepdims", 1L));
        var positions = g.Initializer("positions", Enumerable.Range(0, len).Select(i => (long)i).ToArray(), len);
        var oneHot = g.Unsqueeze(g.Cast(g.Node("Equal", [positions, eos]), OnnxElementType.Float), 1);
        var pooled = g.Reshape(g.MatMul(oneHot, last), 0, -1);

        if (projected)
        {
            int p = second ? o.ResolvedPooledWidth : projectionWidth;
            Out(g, o, g.MatMul(pooled, g.Initializer("text_projection", t.Projection!, d, p)), "text_embeds", "batch", p);
            Out(g, o, last, "last_hidden_state", "batch", len, d);
        }
        else
        {
            Out(g, o, last, "last_hidden_state", "batch", len, d);
            Out(g, o, pooled, "pooler_output", "batch", d);
        }
        if (hiddenStates)
            for (int k = 0; k < states.Count; k++)
                Out(g, o, states[k], XlTestModelFactory.HiddenStateName(k), "batch", len, d);
        return g;
    }

    /// <summary>The UNet's extra inputs in declaration order: (kind, name, width).</summary>
    internal static List<(XlUnetInput Kind, string Name, int Width)> ExtraInputs(XlTestModelOptions o)
    {
        var canonical = new List<(XlUnetInput, string, int)>();
        if (o.IsXl)
        {
            canonical.Add((XlUnetInput.TextEmbeds, "text_embeds", o.ResolvedPooledWidth));
            canonical.Add((XlUnetInput.TimeIds, "time_ids", o.TimeIdCount));
        }
        if (o.Lcm) canonical.Add((XlUnetInput.TimestepCond, "timestep_cond", XlTestModelFactory.GuidanceEmbeddingWidth));
        if (o.ExtraInputs == XlExtraInputNaming.Canonical) return canonical;
        // Unnamed: names that do not say their meaning, in another order than Optimum's.
        var order = new[] { XlUnetInput.TimeIds, XlUnetInput.TimestepCond, XlUnetInput.TextEmbeds };
        return [.. order.SelectMany(kind => canonical.Where(c => c.Item1 == kind))
            .Select(c => (c.Item1, XlTestModelFactory.UnnamedInputName(c.Item1), c.Item3))];
    }

    /// <summary>The oracle UNet: ε̂ = (x − √ᾱ·z)/√(1 − ᾱ) with z = tanh(mean_p(c)·W + pooled·Wp + time_ids·Wt + cond·Wg).</summary>
    /// <param name="o">The model's options.</param>
    /// <param name="alphasCumprod">ᾱ of the scheduler config.</param>
    /// <param name="adjustTarget">Declares further inputs and returns a new target from z [B, 4, 1, 1] (the ControlNet-ready
    /// test UNet adds its residuals' shift); null keeps z.</param>
    internal static OnnxGraphBuilder Unet(XlTestModelOptions o, double[] alphasCumprod, Func<OnnxGraphBuilder, string, string>? adjustTarget = null)
    {
        object batch = o.UnetStaticBatch is int b ? b : "batch";
        object height = o.UnetStaticLatentSize ? o.ResolvedSampleSize : "height";
        object width = o.UnetStaticLatentSize ? o.ResolvedSampleSize : "width";
        int dc = o.ContextWidth;
        var t = Unet(dc, o.IsXl ? o.ResolvedPooledWidth : 0, o.TimeIdCount, o.Lcm);

        var g = new OnnxGraphBuilder("oracle_xl_unet");
        var x = FloatInput(g, o, "sample", batch, 4, height, width);
        var timestep = TestModelGraphs.TimestepInput(g, o.Timestep, o.Fp16, batch);
        var context = FloatInput(g, o, "encoder_hidden_states", batch, "sequence", dc);

        var pre = g.MatMul(g.ReduceMean(context, [1], keepDims: false), g.Initializer("context_projection", t.Context, dc, 4));
        int symbolic = 0;
        foreach (var (kind, name, n) in ExtraInputs(o))
        {
            object dim = o.ExtraInputs == XlExtraInputNaming.UnnamedSymbolic ? $"unnamed_dim_{symbolic++}" : n;
            var value = FloatInput(g, o, name, batch, dim);
            var table = kind switch
            {
                XlUnetInput.TextEmbeds => t.Pooled,
                XlUnetInput.TimeIds => t.TimeIds,
                _ => t.Guidance,
            };
            pre = g.Add(pre, g.MatMul(value, g.Initializer(g.Fresh(kind.ToString().ToLowerInvariant() + "_projection"), table, n, 4)));
        }
        var z = g.Unsqueeze(g.Tanh(pre), 2, 3);
        if (adjustTarget is not null) z = adjustTarget(g, z);

        var (sqrtA, sqrtB) = TestModelGraphs.NoiseLevels(g, timestep, alphasCumprod);
        var eps = g.Div(g.Sub(x, g.Mul(g.Reshape(sqrtA, -1, 1, 1, 1), z)), g.Reshape(sqrtB, -1, 1, 1, 1));
        Out(g, o, eps, "out_sample", batch, 4, height, width);
        return g;
    }
}

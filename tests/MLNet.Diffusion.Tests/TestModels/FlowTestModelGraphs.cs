using System.Collections.Concurrent;
using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>The ONNX graphs of the SD3 and FLUX.1 test models (closed forms documented on <see cref="FlowTestModelFactory"/>).</summary>
internal static class FlowTestModelGraphs
{
    /// <summary>The T5 encoder's tables: token embedding E [V × Dj] and position table Pos [64 × Dj].</summary>
    internal sealed record T5Tables(int Width, int Vocabulary, float[] Embedding, float[] Position);

    /// <summary>The oracle transformer's projections onto the 16 latent channels: context W [Dj × 16], pooled
    /// Wp [P × 16], guidance wg [16], txt-id wt [16], and the position gains α (rows) and β (columns) [16].</summary>
    internal sealed record TransformerTables(float[] Context, float[] Pooled, float[] Guidance, float[] TextIds, float[] RowGain, float[] ColumnGain);

    private static readonly ConcurrentDictionary<(int, int), T5Tables> s_t5 = new();
    private static readonly ConcurrentDictionary<(int, int), TransformerTables> s_transformers = new();

    internal static T5Tables T5(int width, int vocabulary) => s_t5.GetOrAdd((width, vocabulary), static key =>
    {
        var (d, v) = key;
        return new T5Tables(d, v, Fill(v * d, 501, u => u), Fill(FlowTestModelFactory.T5PositionPeriod * d, 502, u => u));
    });

    internal static TransformerTables Transformer(int contextWidth, int pooledWidth) =>
        s_transformers.GetOrAdd((contextWidth, pooledWidth), static key =>
        {
            var (dj, p) = key;
            const int c = FlowTestModelFactory.LatentChannels;
            return new TransformerTables(
                Fill(dj * c, 601, u => u * FlowTestModelFactory.ContextGain / MathF.Sqrt(dj)),
                Fill(p * c, 602, u => u * FlowTestModelFactory.PooledGain / MathF.Sqrt(p)),
                Fill(c, 603, u => u * FlowTestModelFactory.GuidanceGain),
                Fill(c, 606, u => u * FlowTestModelFactory.TextIdGain),
                Fill(c, 604, u => u * FlowTestModelFactory.PositionGain),
                Fill(c, 605, u => u * FlowTestModelFactory.PositionGain));
        });

    private static float[] Fill(int count, int seed, Func<float, float> map)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = map(TestModelGraphs.Uniform(seed, i));
        return values;
    }

    private static OnnxElementType FloatType(bool half) => half ? OnnxElementType.Float16 : OnnxElementType.Float;

    /// <summary>Declares a float input (float16 when <paramref name="half"/>) and returns it as float32.</summary>
    private static string FloatInput(OnnxGraphBuilder g, bool half, string name, params object[] dims)
    {
        var x = g.Input(name, FloatType(half), dims);
        return half ? g.Cast(x, OnnxElementType.Float) : x;
    }

    /// <summary>Names a float32 value as a graph output (cast to float16 when <paramref name="half"/>).</summary>
    private static void Out(OnnxGraphBuilder g, bool half, string x, string name, params object[] dims)
    {
        if (half) g.NodeNamed("Cast", [x], name, ("to", (long)OnnxElementType.Float16));
        else g.Identity(x, name);
        g.Output(name, FloatType(half), dims);
    }

    private static string LongScalar(OnnxGraphBuilder g, long value) => g.Initializer(g.Fresh("i64s"), new long[] { value });

    /// <summary>The length of axis <paramref name="axis"/> of <paramref name="x"/> as an int64 scalar.</summary>
    private static string Dim(OnnxGraphBuilder g, string x, long axis) => g.Gather(g.Node("Shape", [x]), LongScalar(g, axis));

    /// <summary>0, 1, …, n − 1 (int64) for an int64 scalar n.</summary>
    private static string Range(OnnxGraphBuilder g, string n) => g.Node("Range", [LongScalar(g, 0), n, LongScalar(g, 1)]);

    /// <summary>T5 encoder: <c>input_ids</c> [B, T] → <c>last_hidden_state</c> [B, T, Dj],
    /// h[p, d] = tanh(E[id_p mod V, d] + w·Pos[p mod 64, d]).</summary>
    internal static OnnxGraphBuilder T5Encoder(FlowTestModelOptions o)
    {
        int d = o.JointAttentionDim, v = FlowTestModelFactory.T5VocabularySize;
        var t = T5(d, v);
        var g = new OnnxGraphBuilder("test_t5_encoder");
        var ids = g.Input("input_ids", o.IdType, "batch", "sequence");
        var ids64 = o.IdType == OnnxElementType.Int64 ? ids : g.Cast(ids, OnnxElementType.Int64);
        var e = g.Gather(g.Initializer("shared_embedding", t.Embedding, v, d), g.Node("Mod", [ids64, g.Longs(v)], ("fmod", 0L)));
        var positions = g.Node("Mod", [Range(g, Dim(g, ids64, 1)), g.Longs(FlowTestModelFactory.T5PositionPeriod)], ("fmod", 0L));
        var pos = g.Gather(g.Initializer("position_table", t.Position, FlowTestModelFactory.T5PositionPeriod, d), positions);
        var h = g.Tanh(g.Add(e, g.Mul(pos, g.Scalar(FlowTestModelFactory.T5PositionWeight))));
        Out(g, o.Fp16, h, "last_hidden_state", "batch", "sequence", d);
        return g;
    }

    /// <summary>The pre-activation Σ_d mean_s(ehs)[d]·W[d, ch] + Σ_k pooled[k]·Wp[k, ch] [B, 16].</summary>
    private static string Conditioning(OnnxGraphBuilder g, TransformerTables t, string context, string pooled, int dj, int p)
    {
        const int c = FlowTestModelFactory.LatentChannels;
        return g.Add(
            g.MatMul(g.ReduceMean(context, [1], keepDims: false), g.Initializer("context_projection", t.Context, dj, c)),
            g.MatMul(pooled, g.Initializer("pooled_projection", t.Pooled, p, c)));
    }

    /// <summary>σ [B] from the timestep input, floored at <see cref="FlowTestModelFactory.MinSigma"/>.</summary>
    private static string Sigma(OnnxGraphBuilder g, string timestep, float divisor) =>
        g.Node("Max", [g.Div(timestep, g.Scalar(divisor)), g.Scalar(FlowTestModelFactory.MinSigma)]);

    /// <summary>SD3's oracle transformer: v = (x − μ)/σ, σ = timestep/1000,
    /// μ[ch, i, j] = tanh(pre[ch]) + α[ch]·i/S + β[ch]·j/S.</summary>
    internal static OnnxGraphBuilder Sd3Transformer(FlowTestModelOptions o)
    {
        const int c = FlowTestModelFactory.LatentChannels;
        object batch = o.TransformerStaticBatch is int b ? b : "batch";
        object height = o.TransformerStaticLatentSize ? o.SampleSize : "height";
        object width = o.TransformerStaticLatentSize ? o.SampleSize : "width";
        object sequence = o.TransformerStaticSequenceLength is int s ? s : "sequence";
        int dj = o.JointAttentionDim, p = o.PooledWidth;
        var t = Transformer(dj, p);
        bool scalarsHalf = o.Fp16 && o.Fp16Scalars;

        var g = new OnnxGraphBuilder("oracle_sd3_transformer");
        var x = FloatInput(g, o.Fp16, "hidden_states", batch, c, height, width);
        var context = FloatInput(g, o.Fp16, "encoder_hidden_states", batch, sequence, dj);
        var pooled = FloatInput(g, o.Fp16, "pooled_projections", batch, p);
        var timestep = FloatInput(g, scalarsHalf, "timestep", batch);

        var z = g.Unsqueeze(g.Tanh(Conditioning(g, t, context, pooled, dj, p)), 2, 3);
        var scale = g.Scalar(FlowTestModelFactory.PositionScale);
        var rows = g.Reshape(g.Div(g.Cast(Range(g, Dim(g, x, 2)), OnnxElementType.Float), scale), 1, 1, -1, 1);
        var cols = g.Reshape(g.Div(g.Cast(Range(g, Dim(g, x, 3)), OnnxElementType.Float), scale), 1, 1, 1, -1);
        var mu = g.Add(z, g.Add(
            g.Mul(g.Initializer("row_gain", t.RowGain, 1, c, 1, 1), rows),
            g.Mul(g.Initializer("column_gain", t.ColumnGain, 1, c, 1, 1), cols)));
        var sigma = g.Reshape(Sigma(g, timestep, 1000f), -1, 1, 1, 1);
        Out(g, o.Fp16, g.Div(g.Sub(x, mu), sigma), "out_hidden_states", batch, c, height, width);
        return g;
    }

    /// <summary>FLUX's oracle transformer on packed tokens: v = (x − μ)/σ, σ = timestep, μ[n, 4c + 2a + b] =
    /// tanh(pre[c]) + α[c]·(2·img_ids[n,1] + a)/S + β[c]·(2·img_ids[n,2] + b)/S.</summary>
    internal static OnnxGraphBuilder FluxTransformer(FlowTestModelOptions o)
    {
        const int c = FlowTestModelFactory.LatentChannels, k = FlowTestModelFactory.PackedChannels;
        object batch = o.TransformerStaticBatch is int b ? b : "batch";
        object tokens = o.TransformerStaticLatentSize ? o.SampleSize / 2 * (o.SampleSize / 2) : "image_tokens";
        object sequence = o.TransformerStaticSequenceLength is int s ? s : "sequence";
        int dj = o.JointAttentionDim, p = o.PooledWidth;
        var t = Transformer(dj, p);
        bool scalarsHalf = o.Fp16 && o.Fp16Scalars;

        var g = new OnnxGraphBuilder("oracle_flux_transformer");
        var x = FloatInput(g, o.Fp16, "hidden_states", batch, tokens, k);
        var context = FloatInput(g, o.Fp16, "encoder_hidden_states", batch, sequence, dj);
        var pooled = FloatInput(g, o.Fp16, "pooled_projections", batch, p);
        var timestep = FloatInput(g, scalarsHalf, "timestep", batch);
        var imgIds = o.RankThreeIds ? FloatInput(g, scalarsHalf, "img_ids", 1, tokens, 3) : FloatInput(g, scalarsHalf, "img_ids", tokens, 3);
        var txtIds = o.RankThreeIds ? FloatInput(g, scalarsHalf, "txt_ids", 1, sequence, 3) : FloatInput(g, scalarsHalf, "txt_ids", sequence, 3);
        string? guidance = o.HasGuidance ? FloatInput(g, scalarsHalf, "guidance", batch) : null;
        imgIds = g.Reshape(imgIds, -1, 3);
        txtIds = g.Reshape(txtIds, -1, 3);

        var pre = Conditioning(g, t, context, pooled, dj, p);
        pre = g.Add(pre, g.Mul(g.ReduceMean(txtIds, [0, 1], keepDims: false), g.Initializer("text_id_gain", t.TextIds, c)));
        if (guidance is not null)
            pre = g.Add(pre, g.Mul(g.Unsqueeze(guidance, 1), g.Initializer("guidance_gain", t.Guidance, 1, c)));

        // Element k = 4c + 2a + b of a token is channel c at latent row 2i + a, column 2j + b (diffusers' _pack_latents).
        var select = new float[c * k];
        var rowOffset = new float[k];
        var colOffset = new float[k];
        var rowGain = new float[k];
        var colGain = new float[k];
        for (int e = 0; e < k; e++)
        {
            select[(e / 4) * k + e] = 1;
            rowOffset[e] = e / 2 % 2;
            colOffset[e] = e % 2;
            rowGain[e] = t.RowGain[e / 4] / FlowTestModelFactory.PositionScale;
            colGain[e] = t.ColumnGain[e / 4] / FlowTestModelFactory.PositionScale;
        }
        var z = g.Unsqueeze(g.MatMul(g.Tanh(pre), g.Initializer("channel_to_packed", select, c, k)), 1); // [B, 1, 64]
        var two = g.Scalar(2f);
        var rows = g.Add(g.Mul(g.Slice(imgIds, [1], [2], [1]), two), g.Initializer("row_in_patch", rowOffset, k)); // [N, 64]
        var cols = g.Add(g.Mul(g.Slice(imgIds, [2], [3], [1]), two), g.Initializer("column_in_patch", colOffset, k));
        var position = g.Add(g.Mul(rows, g.Initializer("packed_row_gain", rowGain, k)), g.Mul(cols, g.Initializer("packed_column_gain", colGain, k)));
        var mu = g.Add(z, g.Unsqueeze(position, 0));
        var sigma = g.Reshape(Sigma(g, timestep, 1f), -1, 1, 1);
        Out(g, o.Fp16, g.Div(g.Sub(x, mu), sigma), "out_hidden_states", batch, tokens, k);
        return g;
    }

    /// <summary>The VAE decoder: <c>sample</c>[c] = s·(<c>latent_sample</c>[c] − shift) for c = 0, 1, 2, nearest-upsampled ×8.</summary>
    internal static OnnxGraphBuilder VaeDecoder(FlowTestModelOptions o)
    {
        var g = new OnnxGraphBuilder("test_flow_vae_decoder");
        var latent = FloatInput(g, o.Fp16, "latent_sample", "batch", FlowTestModelFactory.LatentChannels, "height", "width");
        var rgb = g.Mul(g.Sub(g.Slice(latent, [0], [3], [1]), g.Scalar(o.ResolvedShiftFactor)), g.Scalar(o.ResolvedScalingFactor));
        var up = g.Node("Resize", [rgb, "", g.Initializer("scales", [1f, 1f, 8f, 8f], 4)],
            ("mode", "nearest"), ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor"));
        Out(g, o.Fp16, up, "sample", "batch", 3, "image_height", "image_width");
        return g;
    }

    /// <summary>The VAE encoder: channel k of the mean is the 8×8 block average of image channel k mod 3, ÷ s, + shift.</summary>
    internal static OnnxGraphBuilder VaeEncoder(FlowTestModelOptions o)
    {
        const int c = FlowTestModelFactory.LatentChannels;
        var g = new OnnxGraphBuilder("test_flow_vae_encoder");
        var image = FloatInput(g, o.Fp16, "sample", "batch", 3, "image_height", "image_width");
        var pooled = g.Node("AveragePool", [image], ("kernel_shape", new long[] { 8, 8 }), ("strides", new long[] { 8, 8 }));
        var spread = g.Gather(pooled, g.Longs(Enumerable.Range(0, c).Select(i => (long)(i % 3)).ToArray()), 1);
        var mean = g.Add(g.Div(spread, g.Scalar(o.ResolvedScalingFactor)), g.Scalar(o.ResolvedShiftFactor));
        if (o.Encoder == VaeEncoderForm.LatentSample)
        {
            Out(g, o.Fp16, mean, "latent_sample", "batch", c, "height", "width");
        }
        else
        {
            var logVar = g.Add(g.Mul(mean, g.Scalar(0f)), g.Scalar(TestModelFactory.EncoderLogVariance));
            Out(g, o.Fp16, g.Concat(1, mean, logVar), "latent_parameters", "batch", 2 * c, "height", "width");
        }
        return g;
    }
}

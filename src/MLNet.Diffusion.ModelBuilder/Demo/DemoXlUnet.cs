using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The demo XL model's UNet, <c>unet/model.onnx</c>, with SDXL's contract: <c>sample</c> [B, 4, 32, 32],
/// <c>timestep</c> [B] float, <c>encoder_hidden_states</c> [B, L, <see cref="ContextDimension"/>], <c>text_embeds</c>
/// [B, <see cref="PooledDimension"/>] and <c>time_ids</c> [B, 6] → <c>out_sample</c> [B, 4, 32, 32] (ε-prediction).
/// Like <see cref="DemoUnet"/> it is the exact posterior-mean denoiser of the demo dataset; only the prior differs.
/// </summary>
/// <remarks>
/// <para>The context is the concatenation of the two encoders' penultimate hidden states (first encoder's slots, then the
/// second's), as SDXL builds it. With c₁, c₂ the two halves summed over positions and p the pooled <c>text_embeds</c>,
/// the log prior of image k with attribute vector a_k is
/// log π_k = <see cref="DemoUnet.PriorSharpness"/> · r · (c₁ · M₁a_k + c₂ · M₂a_k + p · M₃a_k),
/// M₁, M₂, M₃ masking a_k to the slots each input carries (<see cref="DemoXlTextEncoder"/>: shape and colour; size and
/// place; background). With the right inputs the sum is the demo's pooled prompt · a_k, so at r = 1 the prior is the demo
/// model's; swapping the halves, reading another layer or dropping the pooled embedding loses or inverts attributes.</para>
/// <para>r is the size conditioning from <c>time_ids</c> = (original height, original width, crop top, crop left, target
/// height, target width): r = min(1, original height / target height) · min(1, original width / target width) (each
/// ratio clamped to [0, 1], target sizes below 1 taken as 1). SDXL learnt that a small original size means an upscaled,
/// less detailed picture; here a smaller original size weakens how strongly the prompt picks the image (at r = 0 the
/// prior is uniform and the model draws any dataset image). The defaults (size, size, 0, 0, size, size) give r = 1.
/// The crop coordinates are read but do not change the output (the dataset has no cropped images).</para>
/// <para>Zero context and zero <c>text_embeds</c> (SDXL's negative for an empty prompt with
/// <c>force_zeros_for_empty_prompt</c>) give the uniform prior, so classifier-free guidance works as with the demo model.</para>
/// </remarks>
public static class DemoXlUnet
{
    /// <summary>Width of <c>encoder_hidden_states</c>: the two encoders' widths together (<c>cross_attention_dim</c>).</summary>
    public static int ContextDimension => 2 * DemoXlTextEncoder.Dimension;

    /// <summary>Width of <c>text_embeds</c>.</summary>
    public static int PooledDimension => DemoXlTextEncoder.Dimension;

    /// <summary>Values in one row of <c>time_ids</c>.</summary>
    public const int TimeIdCount = 6;

    /// <summary>SDXL's <c>addition_time_embed_dim</c>: each time id is embedded in 256 sinusoids, so
    /// <c>projection_class_embeddings_input_dim</c> = pooled width + 6 · 256.</summary>
    public const int AdditionTimeEmbedDim = 256;

    /// <summary>The size-conditioning factor r for one <c>time_ids</c> row (see the remarks).</summary>
    public static double SizeFactor(ReadOnlySpan<float> timeIds)
    {
        if (timeIds.Length != TimeIdCount)
            throw new ArgumentException($"time_ids has {timeIds.Length} values per row; the demo XL UNet takes {TimeIdCount}.", nameof(timeIds));
        float h = Math.Clamp(timeIds[0] / Math.Max(timeIds[4], 1f), 0f, 1f);
        float w = Math.Clamp(timeIds[1] / Math.Max(timeIds[5], 1f), 0f, 1f);
        return h * w;
    }

    /// <summary>The prior's weight matrix W ([2D + D, K] row-major): rows of the context halves and of the pooled
    /// embedding, each masked to its slots, times <see cref="DemoUnet.PriorSharpness"/>.</summary>
    public static float[] PriorMatrix(ReadOnlySpan<float> captionEmbeddings)
    {
        int d = DemoVocabulary.Dimension, count = captionEmbeddings.Length / d, rows = ContextDimension + PooledDimension;
        var masks = new[]
        {
            DemoXlTextEncoder.SlotMask(DemoXlTextEncoder.First.SlotGroups),
            DemoXlTextEncoder.SlotMask(DemoXlTextEncoder.Second.SlotGroups),
            DemoXlTextEncoder.SlotMask(DemoXlTextEncoder.PooledSlotGroups),
        };
        var w = new float[rows * count];
        for (int part = 0; part < 3; part++)
            for (int i = 0; i < d; i++)
                for (int k = 0; k < count; k++)
                    w[(part * d + i) * count + k] = DemoUnet.PriorSharpness * masks[part][i] * captionEmbeddings[k * d + i];
        return w;
    }

    /// <summary>
    /// The reference computation of the graph in double precision: ε̂ for <paramref name="sample"/> ([B, 4, 32, 32]), one
    /// timestep per batch entry (or one for all), <paramref name="context"/> ([B, L, 2D]), <paramref name="textEmbeds"/>
    /// ([B, D]) and <paramref name="timeIds"/> ([B, 6]).
    /// </summary>
    public static float[] Predict(ReadOnlySpan<float> sample, ReadOnlySpan<float> timesteps, ReadOnlySpan<float> context,
        ReadOnlySpan<float> textEmbeds, ReadOnlySpan<float> timeIds, ReadOnlySpan<float> datasetLatents, ReadOnlySpan<float> captionEmbeddings)
    {
        int batch = sample.Length / DemoUnet.LatentLength, width = ContextDimension, d = PooledDimension;
        int seq = context.Length / (batch * width), count = captionEmbeddings.Length / DemoVocabulary.Dimension;
        var w = PriorMatrix(captionEmbeddings);
        var logPriors = new double[batch][];
        var u = new double[width + d];
        for (int b = 0; b < batch; b++)
        {
            Array.Clear(u);
            for (int l = 0; l < seq; l++)
                for (int i = 0; i < width; i++) u[i] += context[(b * seq + l) * width + i];
            for (int i = 0; i < d; i++) u[width + i] = textEmbeds[b * d + i];
            double r = SizeFactor(timeIds.Slice(b * TimeIdCount, TimeIdCount));
            var lp = new double[count];
            for (int k = 0; k < count; k++)
            {
                double dot = 0;
                for (int i = 0; i < u.Length; i++) dot += u[i] * w[i * count + k];
                lp[k] = r * dot;
            }
            logPriors[b] = lp;
        }
        return DemoUnet.PosteriorMeanEpsilon(sample, timesteps, logPriors, datasetLatents);
    }

    /// <summary>Builds the graph over the dataset's latent table and caption embeddings ([K, D]).</summary>
    public static OnnxGraphBuilder BuildGraph(DemoLatentTable table, float[] captionEmbeddings)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(captionEmbeddings);
        int count = DemoDataset.Items.Count;
        var g = new OnnxGraphBuilder("demo_xl_unet");
        var sample = g.Input("sample", OnnxElementType.Float, "batch", DemoVae.LatentChannels, DemoUnet.LatentSize, DemoUnet.LatentSize);
        var timestep = g.Input("timestep", OnnxElementType.Float, "batch");
        var context = g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "sequence", ContextDimension);
        var textEmbeds = g.Input("text_embeds", OnnxElementType.Float, "batch", PooledDimension);
        var timeIds = g.Input("time_ids", OnnxElementType.Float, "batch", TimeIdCount);
        DemoUnet.BuildPosteriorMean(g, sample, timestep, table, () =>
        {
            // [Σ_positions context, text_embeds] · W, W masking a_k to each input's slots.
            var u = g.Concat(1, g.ReduceSum(context, [1], keepDims: false), textEmbeds);     // [B, 3D]
            var dots = g.MatMul(u, g.Initializer("prior_matrix", PriorMatrix(captionEmbeddings), ContextDimension + PooledDimension, count));
            // r = clip(orig h / max(target h, 1), 0, 1) · clip(orig w / max(target w, 1), 0, 1), [B, 1].
            var original = g.Slice(timeIds, [0], [2], [1]);
            var target = g.Node("Max", [g.Slice(timeIds, [4], [6], [1]), g.Scalar(1f)]);
            var ratio = g.Clip(g.Div(original, target), 0, 1);
            var r = g.Mul(g.Slice(ratio, [0], [1], [1]), g.Slice(ratio, [1], [2], [1]));
            return g.Mul(dots, r);
        });
        return g;
    }
}

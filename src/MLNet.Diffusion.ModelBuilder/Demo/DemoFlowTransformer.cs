using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The demo flow model's transformer, <c>transformer/model.onnx</c>, with Stable Diffusion 3's contract: <c>hidden_states</c>
/// [B, 16, 32, 32], <c>encoder_hidden_states</c> [B, 77 + T, <see cref="DemoT5TextEncoder.Width"/>], <c>pooled_projections</c>
/// [B, <see cref="PooledDimension"/>] and <c>timestep</c> [B] = 1000·σ → <c>out_hidden_states</c> [B, 16, 32, 32]. It is no
/// network: it computes the exact flow-matching velocity of the demo dataset's latents under the prompt's prior.
/// </summary>
/// <remarks>
/// <para>Flow matching (rectified flow, as Stable Diffusion 3 is trained) noises data x₀ as x_σ = (1 − σ)·x₀ + σ·ε and
/// learns the velocity v = ε − x₀, whose conditional mean is v(x, σ) = E[ε − x₀ | x] = (x − E[x₀ | x, σ]) / σ. The data
/// here are the demo dataset's latents z_k widened to 16 channels (E·z_k, <see cref="DemoFlowVae"/>) with prior π(c), so
/// E[x₀ | x, σ] = E·Σ_k w_k z_k with w_k ∝ π_k(c)·exp(−‖Eᵀx − (1 − σ)·z_k‖² / (2σ²)): since E has orthonormal columns,
/// the part of x outside E's span adds the same to every distance and leaves the weights alone. The posterior is
/// <see cref="DemoUnet"/>'s with signal 1 − σ and variance σ² in place of √ᾱ and 1 − ᾱ (the same code). σ is
/// clamped to [<see cref="MinSigma"/>, 1].</para>
/// <para>The prior is the demo's, log π_k = <see cref="DemoUnet.PriorSharpness"/> · (prompt · a_k), with the prompt's
/// attributes gathered from every input Stable Diffusion 3 conditions on: the first 77 positions of
/// <c>encoder_hidden_states</c> hold CLIP-L's and CLIP-G's penultimate states side by side (summed over positions: CLIP-L's
/// <see cref="DemoFlowTextEncoders.ClipL"/> shape in columns [0, D), CLIP-G's <see cref="DemoFlowTextEncoders.ClipG"/>
/// colour in [D, 2D)), the positions after them T5's states (the place, columns [0, D)), and <c>pooled_projections</c> the
/// two <c>text_embeds</c> (CLIP-L's size, CLIP-G's background). With every input right the sum is the demo's pooled prompt
/// · a_k, so the prior is the demo model's; a part read from the wrong place loses or mixes attributes. Zeros (an empty
/// negative prompt) give the uniform prior, so classifier-free guidance works; without T5 the place is free.</para>
/// </remarks>
public static class DemoFlowTransformer
{
    /// <summary>The CLIP positions at the start of <c>encoder_hidden_states</c>.</summary>
    public const int ClipPositions = 77;

    /// <summary>The smallest σ the transformer evaluates (timesteps below 1000·<see cref="MinSigma"/> are raised to it).</summary>
    public const float MinSigma = 1e-4f;

    /// <summary>The timestep of σ = 1 (<c>num_train_timesteps</c>).</summary>
    public const int TrainTimesteps = 1000;

    /// <summary>Width of <c>pooled_projections</c>: CLIP-L's and CLIP-G's <c>text_embeds</c> (SD3: 768 + 1280 = 2048).</summary>
    public static int PooledDimension => 2 * DemoVocabulary.Dimension;

    /// <summary>Values in one 16-channel latent.</summary>
    public const int LatentLength = DemoFlowVae.LatentChannels * DemoUnet.LatentSize * DemoUnet.LatentSize;

    /// <summary>The prior's weight matrix W ([5D, K] row-major), rows for the summed CLIP context (2D), the summed T5 part
    /// (D) and the pooled projections (2D), each masked to the slots its encoder carries, times the prior's sharpness.</summary>
    public static float[] PriorMatrix(ReadOnlySpan<float> captionEmbeddings)
    {
        int d = DemoVocabulary.Dimension, count = captionEmbeddings.Length / d;
        var masks = new[]
        {
            DemoXlTextEncoder.SlotMask(DemoFlowTextEncoders.ClipL.SlotGroups),
            DemoXlTextEncoder.SlotMask(DemoFlowTextEncoders.ClipG.SlotGroups),
            DemoXlTextEncoder.SlotMask(DemoT5TextEncoder.SlotGroups),
            DemoXlTextEncoder.SlotMask(DemoFlowTextEncoders.ClipL.ProjectionSlotGroups),
            DemoXlTextEncoder.SlotMask(DemoFlowTextEncoders.ClipG.ProjectionSlotGroups),
        };
        var w = new float[masks.Length * d * count];
        for (int part = 0; part < masks.Length; part++)
            for (int i = 0; i < d; i++)
                for (int k = 0; k < count; k++)
                    w[(part * d + i) * count + k] = DemoUnet.PriorSharpness * masks[part][i] * captionEmbeddings[k * d + i];
        return w;
    }

    /// <summary>Each batch entry's log prior ([K]) from <c>encoder_hidden_states</c> ([B, S, J]) and <c>pooled_projections</c> ([B, 2D]).</summary>
    public static double[][] LogPriors(ReadOnlySpan<float> encoderHiddenStates, ReadOnlySpan<float> pooledProjections, int batch,
        ReadOnlySpan<float> captionEmbeddings)
    {
        int d = DemoVocabulary.Dimension, j = DemoT5TextEncoder.Width, seq = encoderHiddenStates.Length / (batch * j);
        int count = captionEmbeddings.Length / d;
        var w = PriorMatrix(captionEmbeddings);
        var result = new double[batch][];
        var u = new double[5 * d];
        for (int b = 0; b < batch; b++)
        {
            Array.Clear(u);
            for (int l = 0; l < seq; l++)
            {
                var row = encoderHiddenStates.Slice((b * seq + l) * j, j);
                if (l < ClipPositions) for (int i = 0; i < 2 * d; i++) u[i] += row[i];
                else for (int i = 0; i < d; i++) u[2 * d + i] += row[i];
            }
            for (int i = 0; i < 2 * d; i++) u[3 * d + i] = pooledProjections[b * 2 * d + i];
            var lp = new double[count];
            for (int k = 0; k < count; k++)
            {
                double dot = 0;
                for (int i = 0; i < u.Length; i++) dot += u[i] * w[i * count + k];
                lp[k] = dot;
            }
            result[b] = lp;
        }
        return result;
    }

    /// <summary>
    /// The reference computation of the graph in double precision: the velocity for <paramref name="hiddenStates"/>
    /// ([B, 16, 32, 32]), one timestep (1000·σ) per batch entry (or one for all), <paramref name="encoderHiddenStates"/>
    /// ([B, S, J]) and <paramref name="pooledProjections"/> ([B, 2D]); <paramref name="datasetLatents"/> are the demo's
    /// 4-channel scaled latents ([K, 4, 32, 32], <see cref="DemoUnet.DatasetLatents"/>).
    /// </summary>
    public static float[] Predict(ReadOnlySpan<float> hiddenStates, ReadOnlySpan<float> timesteps, ReadOnlySpan<float> encoderHiddenStates,
        ReadOnlySpan<float> pooledProjections, ReadOnlySpan<float> datasetLatents, ReadOnlySpan<float> captionEmbeddings)
    {
        int batch = hiddenStates.Length / LatentLength, plane = DemoUnet.LatentSize * DemoUnet.LatentSize;
        var logPriors = LogPriors(encoderHiddenStates, pooledProjections, batch, captionEmbeddings);
        var narrow = DemoFlowVae.Narrow(hiddenStates, plane);
        var output = new float[hiddenStates.Length];
        var mean = new double[DemoUnet.LatentLength];
        var mean4 = new float[DemoUnet.LatentLength];
        for (int b = 0; b < batch; b++)
        {
            double sigma = Math.Clamp(timesteps[timesteps.Length == 1 ? 0 : b] / (double)TrainTimesteps, MinSigma, 1);
            DemoUnet.PosteriorMean(narrow.AsSpan(b * DemoUnet.LatentLength, DemoUnet.LatentLength), 1 - sigma, sigma * sigma,
                logPriors[b], datasetLatents, mean);
            for (int i = 0; i < mean.Length; i++) mean4[i] = (float)mean[i];
            var x0 = DemoFlowVae.Widen(mean4, plane);
            for (int i = 0; i < LatentLength; i++)
                output[b * LatentLength + i] = (float)((hiddenStates[b * LatentLength + i] - (double)x0[i]) / sigma);
        }
        return output;
    }

    /// <summary>Builds the graph over the dataset's latent table and caption embeddings ([K, D]).</summary>
    public static OnnxGraphBuilder BuildGraph(DemoLatentTable table, float[] captionEmbeddings)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(captionEmbeddings);
        int d = DemoVocabulary.Dimension, count = DemoDataset.Items.Count, size = DemoUnet.LatentSize;
        var g = new OnnxGraphBuilder("demo_flow_transformer");
        var sample = g.Input("hidden_states", OnnxElementType.Float, "batch", DemoFlowVae.LatentChannels, size, size);
        var context = g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "sequence", DemoT5TextEncoder.Width);
        var pooled = g.Input("pooled_projections", OnnxElementType.Float, "batch", PooledDimension);
        var timestep = g.Input("timestep", OnnxElementType.Float, "batch");

        // σ = clip(t / 1000, σ_min, 1) per batch entry ([B, 1]); the posterior's signal 1 − σ and variance σ².
        var sigma = g.Clip(g.Mul(g.Reshape(timestep, -1, 1), g.Scalar(1f / TrainTimesteps)), MinSigma, 1);
        var signal = g.Sub(g.Scalar(1f), sigma);
        var signalSquared = g.Mul(signal, signal);
        var variance = g.Mul(sigma, sigma);

        var x0 = DemoUnet.AddPosteriorMean(g, () => g.Reshape(DemoFlowVae.AddNarrow(g, sample, "channel_gather"), 0, -1),
            signal, signalSquared, variance, table, () =>
            {
                // u = [Σ_{p<77} context[:, p, :2D], Σ_{p≥77} context[:, p, :D], pooled] ([B, 5D]); log prior = u · W.
                var clip = g.Slice(g.ReduceSum(g.Slice(context, [0], [ClipPositions], [1]), [1], keepDims: false), [0], [2 * d], [1]);
                var t5 = g.Slice(g.ReduceSum(g.Slice(context, [ClipPositions], [long.MaxValue], [1]), [1], keepDims: false), [0], [d], [1]);
                var u = g.Concat(1, clip, t5, pooled);
                return g.MatMul(u, g.Initializer("prior_matrix", PriorMatrix(captionEmbeddings), 5 * d, count));
            });
        var x0Wide = DemoFlowVae.AddWiden(g, g.Reshape(x0, -1, DemoVae.LatentChannels, size, size), "channel_spread");
        var velocity = g.Div(g.Sub(sample, x0Wide), g.Reshape(sigma, -1, 1, 1, 1));
        g.Identity(velocity, "out_hidden_states");
        g.Output("out_hidden_states", OnnxElementType.Float, "batch", DemoFlowVae.LatentChannels, size, size);
        return g;
    }
}

using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The demo model's UNet, <c>unet/model.onnx</c>, with Stable Diffusion's contract (<c>sample</c> [B, 4, 32, 32],
/// <c>timestep</c> [B] float, <c>encoder_hidden_states</c> [B, L, D] → <c>out_sample</c> [B, 4, 32, 32], ε-prediction).
/// It is no network: it computes the exact posterior-mean denoiser of the demo dataset.
/// </summary>
/// <remarks>
/// <para>With the scaled dataset latents z_k (<see cref="DemoVae.ScalingFactor"/> × encoder output) and the noise level
/// ᾱ of the timestep, x_t = √ᾱ·z + √(1 − ᾱ)·ε has posterior weights
/// w_k ∝ π_k(c) · exp(−‖x_t − √ᾱ·z_k‖² / (2(1 − ᾱ))), so E[z | x_t] = Σ_k w_k z_k = x̂₀ and the model returns
/// ε̂ = (x_t − √ᾱ·x̂₀) / √(1 − ᾱ). The weights are a softmax over log π_k minus the scaled squared distances.</para>
/// <para>The prior is text-conditioned: the prompt's hidden states are summed over positions (padding and
/// unknown tokens embed to zero) and log π_k = <see cref="PriorSharpness"/> · (pooled · a_k), a_k being the sum of
/// the embeddings of image k's caption, i.e. its attribute vector. Each attribute the prompt names adds
/// <see cref="PriorSharpness"/> to the images that have it; since a prompt names each attribute once, counting
/// matches is the same as matches minus mismatches up to a constant. The empty prompt gives a uniform prior,
/// so classifier-free guidance works as in real models.</para>
/// <para>ᾱ comes from the schedule written in the model's <c>scheduler_config.json</c> (scaled_linear like Stable
/// Diffusion 1.5, β from 0.00085 to <see cref="BetaEnd"/>, 1000 steps) through a table of σ_t = √((1 − ᾱ_t)/ᾱ_t);
/// a fractional timestep interpolates σ linearly between floor(t) and floor(t) + 1 and uses ᾱ = 1/(1 + σ²), exactly as
/// Euler-type schedulers map σ back to t. Timesteps are clamped to [0, 999]. The latent must be 32×32 (256×256
/// images): the dataset latents have that size.</para>
/// <para>Why β ends at 0.03 rather than Stable Diffusion's 0.012: every sampler starts from x_T ~ N(0, I) (or σ_max ·
/// N(0, I)), which is the true distribution of noised latents only when √ᾱ_T · z is negligible. With SD 1.5's schedule
/// ᾱ is 0.0073 at t = 961, the first step of 25 PNDM steps, and √ᾱ · ‖z‖ ≈ 2.6 for 16×16 demo latents (twice that
/// for 32×32), so the start misses a mean offset that the sampler never makes up (Lin, Liu, Li and Yang 2024, "Common
/// Diffusion Noise Schedules and Sample Steps are Flawed", WACV, §3: the non-zero terminal SNR). With that schedule a
/// full caption sampled at guidance 1 (DDIM in double precision, 100 steps, 500 seeds) showed another colour, size or
/// background in 10.6 % of seeds started from N(0, I) and in 0.6 % of seeds started from the exact noised
/// distribution, where the declared weights give 0.3 %. With β_end = 0.03, ᾱ(961) = 1.7e-5 and ᾱ(901) = 8.9e-5
/// (10 steps): the start is exact to within a few hundredths of a nat.</para>
/// </remarks>
public static class DemoUnet
{
    /// <summary>Log-prior added per matching attribute (the prior's sharpness).</summary>
    public const float PriorSharpness = 8f;

    /// <summary>The training timesteps of the schedule (<c>num_train_timesteps</c>).</summary>
    public const int TrainTimesteps = 1000;

    /// <summary>β at the first timestep (<c>beta_start</c>).</summary>
    public const double BetaStart = 0.00085;

    /// <summary>β at the last timestep (<c>beta_end</c>).</summary>
    public const double BetaEnd = 0.03;

    /// <summary>The latent height and width the UNet takes.</summary>
    public const int LatentSize = DemoDataset.ImageSize / DemoVae.Factor;

    /// <summary>Values in one latent (4 × 32 × 32).</summary>
    public const int LatentLength = DemoVae.LatentChannels * LatentSize * LatentSize;

    /// <summary>ᾱ_t of the scaled_linear schedule: β_t = (linspace(√β_start, √β_end, 1000)_t)², ᾱ_t = Π_{s ≤ t}(1 − β_s).</summary>
    public static double[] AlphasCumprod()
    {
        var result = new double[TrainTimesteps];
        double a = Math.Sqrt(BetaStart), b = Math.Sqrt(BetaEnd), product = 1;
        for (int t = 0; t < TrainTimesteps; t++)
        {
            double root = t == TrainTimesteps - 1 ? b : a + t * (b - a) / (TrainTimesteps - 1);
            product *= 1 - root * root;
            result[t] = product;
        }
        return result;
    }

    /// <summary>σ_t = √((1 − ᾱ_t)/ᾱ_t) in single precision, the table the graph holds.</summary>
    public static float[] SigmaTable() => AlphasCumprod().Select(a => (float)Math.Sqrt((1 - a) / a)).ToArray();

    /// <summary>ᾱ at a (possibly fractional) timestep, as the graph computes it: σ interpolated in the table, ᾱ = 1/(1 + σ²).</summary>
    public static double AlphaBar(double timestep)
    {
        var sigmas = SigmaTable();
        double t = Math.Clamp(timestep, 0, TrainTimesteps - 1);
        int lo = (int)Math.Clamp(Math.Floor(t), 0, TrainTimesteps - 2);
        double frac = t - lo;
        double sigma = sigmas[lo] + frac * (sigmas[lo + 1] - (double)sigmas[lo]);
        return 1 / (1 + sigma * sigma);
    }

    /// <summary>The caption embeddings a_k ([K, D] row-major): the pooled embedding of each image's caption.</summary>
    public static float[] CaptionEmbeddings()
    {
        var items = DemoDataset.Items;
        int d = DemoVocabulary.Dimension;
        var a = new float[items.Count * d];
        for (int k = 0; k < items.Count; k++) DemoVocabulary.Pool(items[k].Caption).CopyTo(a, k * d);
        return a;
    }

    /// <summary>
    /// The scaled latents of every dataset image ([K, 4, 32, 32] flattened): the VAE encoder's output for each image
    /// times <see cref="DemoVae.ScalingFactor"/>, composed from <see cref="DemoLatentTable"/>.
    /// </summary>
    public static float[] DatasetLatents() => DemoLatentTable.Create().Compose();

    /// <summary>The prior π(c) over the dataset images for a pooled prompt embedding (a softmax, in double precision).</summary>
    public static double[] PriorWeights(ReadOnlySpan<float> pooled, ReadOnlySpan<float> captionEmbeddings) =>
        Softmax(LogPrior(pooled, captionEmbeddings, PriorSharpness));

    /// <summary>
    /// The reference computation of the graph in double precision: ε̂ for <paramref name="sample"/> ([B, 4, 16, 16]),
    /// one timestep per batch entry (or one for all), and encoder hidden states ([B, L, D]).
    /// </summary>
    public static float[] Predict(ReadOnlySpan<float> sample, ReadOnlySpan<float> timesteps, ReadOnlySpan<float> hiddenStates,
        ReadOnlySpan<float> datasetLatents, ReadOnlySpan<float> captionEmbeddings)
    {
        var logPriors = TextLogPriors(hiddenStates, sample.Length / LatentLength, captionEmbeddings);
        return PosteriorMeanEpsilon(sample, timesteps, logPriors, datasetLatents);
    }

    /// <summary>Each batch entry's log prior ([K]) from its encoder hidden states ([B, L, D]), pooled over positions.</summary>
    internal static double[][] TextLogPriors(ReadOnlySpan<float> hiddenStates, int batch, ReadOnlySpan<float> captionEmbeddings)
    {
        int d = DemoVocabulary.Dimension, seq = hiddenStates.Length / (batch * d);
        var logPriors = new double[batch][];
        var pooled = new float[d];
        for (int b = 0; b < batch; b++)
        {
            Array.Clear(pooled);
            for (int l = 0; l < seq; l++)
                for (int i = 0; i < d; i++) pooled[i] += hiddenStates[(b * seq + l) * d + i];
            logPriors[b] = LogPrior(pooled, captionEmbeddings, PriorSharpness);
        }
        return logPriors;
    }

    /// <summary>log π_k up to a constant: <paramref name="sharpness"/> · (<paramref name="pooled"/> · a_k) for every image k.</summary>
    internal static double[] LogPrior(ReadOnlySpan<float> pooled, ReadOnlySpan<float> captionEmbeddings, double sharpness)
    {
        int d = DemoVocabulary.Dimension, count = captionEmbeddings.Length / d;
        var logits = new double[count];
        for (int k = 0; k < count; k++)
        {
            double dot = 0;
            for (int i = 0; i < d; i++) dot += pooled[i] * (double)captionEmbeddings[k * d + i];
            logits[k] = sharpness * dot;
        }
        return logits;
    }

    /// <summary>
    /// The posterior-mean denoiser in double precision for given log priors (one [K] row per batch entry):
    /// w_k = softmax(log π_k − ‖x − √ᾱ z_k‖² / (2(1 − ᾱ))), x̂₀ = Σ w_k z_k, ε̂ = (x − √ᾱ x̂₀) / √(1 − ᾱ).
    /// </summary>
    internal static float[] PosteriorMeanEpsilon(ReadOnlySpan<float> sample, ReadOnlySpan<float> timesteps, double[][] logPriors,
        ReadOnlySpan<float> datasetLatents)
    {
        int batch = sample.Length / LatentLength;
        var output = new float[sample.Length];
        var x0 = new double[LatentLength];
        for (int b = 0; b < batch; b++)
        {
            double alphaBar = AlphaBar(timesteps[timesteps.Length == 1 ? 0 : b]);
            double sa = Math.Sqrt(alphaBar), variance = 1 - alphaBar;
            var x = sample.Slice(b * LatentLength, LatentLength);
            PosteriorMean(x, sa, variance, logPriors[b], datasetLatents, x0);
            for (int i = 0; i < LatentLength; i++) output[b * LatentLength + i] = (float)((x[i] - sa * x0[i]) / Math.Sqrt(variance));
        }
        return output;
    }

    /// <summary>
    /// The posterior mean E[z | x] in double precision for one latent <paramref name="x"/> ([4 · 32 · 32]) observed as
    /// x = a·z + s·ε with z drawn from the dataset latents (rows of <paramref name="datasetLatents"/>) under the log prior
    /// <paramref name="logPrior"/> ([K]): w_k = softmax(log π_k − ‖x − a z_k‖² / (2s²)), E[z | x] = Σ w_k z_k. The diffusion
    /// UNets take a = √ᾱ, s² = 1 − ᾱ; the flow-matching transformer a = 1 − σ, s² = σ².
    /// </summary>
    internal static void PosteriorMean(ReadOnlySpan<float> x, double signal, double variance, double[] logPrior,
        ReadOnlySpan<float> datasetLatents, Span<double> mean)
    {
        int count = datasetLatents.Length / LatentLength;
        var logits = new double[count];
        for (int k = 0; k < count; k++)
        {
            var z = datasetLatents.Slice(k * LatentLength, LatentLength);
            double dist = 0;
            for (int i = 0; i < LatentLength; i++)
            {
                double r = x[i] - signal * z[i];
                dist += r * r;
            }
            logits[k] = logPrior[k] - dist / (2 * variance);
        }
        var w = Softmax(logits);
        for (int i = 0; i < LatentLength; i++)
        {
            double sum = 0;
            for (int k = 0; k < count; k++) sum += w[k] * datasetLatents[k * LatentLength + i];
            mean[i] = sum;
        }
    }

    /// <summary>Builds the graph over the dataset's latent table and caption embeddings ([K, D]).</summary>
    public static OnnxGraphBuilder BuildGraph(DemoLatentTable table, float[] captionEmbeddings)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(captionEmbeddings);
        int d = DemoVocabulary.Dimension;
        var g = new OnnxGraphBuilder("demo_unet");
        var sample = g.Input("sample", OnnxElementType.Float, "batch", DemoVae.LatentChannels, LatentSize, LatentSize);
        var timestep = g.Input("timestep", OnnxElementType.Float, "batch");
        var hidden = g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "sequence", d);
        BuildPosteriorMean(g, sample, timestep, table, () => CaptionPrior(g, hidden, captionEmbeddings));
        return g;
    }

    /// <summary>Adds the text-conditioned log prior ([B, K]): <see cref="PriorSharpness"/> · (Σ_positions hidden) · a_k.</summary>
    internal static string CaptionPrior(OnnxGraphBuilder g, string hidden, float[] captionEmbeddings)
    {
        int d = DemoVocabulary.Dimension, count = DemoDataset.Items.Count;
        var captionsT = new float[d * count];
        for (int k = 0; k < count; k++)
            for (int i = 0; i < d; i++) captionsT[i * count + k] = PriorSharpness * captionEmbeddings[k * d + i];
        var pooled = g.ReduceSum(hidden, [1], keepDims: false);      // [B, D]
        return g.MatMul(pooled, g.Initializer("caption_embeddings_scaled", captionsT, d, count));
    }

    /// <summary>
    /// Adds the posterior-mean denoiser to <paramref name="g"/> over the <paramref name="sample"/> and
    /// <paramref name="timestep"/> inputs and writes <c>out_sample</c>; <paramref name="logPrior"/> adds the nodes of the
    /// log prior ([B, K], up to a constant per row) and returns its value name.
    /// </summary>
    internal static void BuildPosteriorMean(OnnxGraphBuilder g, string sample, string timestep, DemoLatentTable table, Func<string> logPrior)
    {
        // Noise level: σ interpolated between the table entries around t, ᾱ = 1/(1 + σ²), 1 − ᾱ = σ²/(1 + σ²).
        var sigmas = g.Initializer("sigma_table", SigmaTable(), TrainTimesteps);
        var t = g.Clip(g.Reshape(timestep, -1, 1), 0, TrainTimesteps - 1);
        var lo = g.Clip(g.Floor(t), 0, TrainTimesteps - 2);
        var frac = g.Sub(t, lo);
        var index = g.Cast(lo, OnnxElementType.Int64);
        var sigmaLo = g.Gather(sigmas, index);
        var sigmaHi = g.Gather(sigmas, g.Add(index, g.Initializer("one_i64", new long[] { 1 }, 1)));
        var sigma = g.Add(sigmaLo, g.Mul(frac, g.Sub(sigmaHi, sigmaLo)));
        var sigma2 = g.Mul(sigma, sigma);
        var alphaBar = g.Div(g.Scalar(1f), g.Add(sigma2, g.Scalar(1f)));
        var sqrtAlphaBar = g.Sqrt(alphaBar);                    // [T, 1]
        var variance = g.Mul(sigma2, alphaBar);
        var sqrtVariance = g.Sqrt(variance);

        string x = "";
        var x0 = AddPosteriorMean(g, () => x = g.Reshape(sample, 0, -1), sqrtAlphaBar, alphaBar, variance, table, logPrior);
        var eps = g.Div(g.Sub(x, g.Mul(x0, sqrtAlphaBar)), sqrtVariance);
        g.NodeNamed("Reshape", [eps, g.Node("Shape", [sample])], "out_sample");
        g.Output("out_sample", OnnxElementType.Float, "batch", DemoVae.LatentChannels, LatentSize, LatentSize);
    }

    /// <summary>
    /// Adds the posterior mean E[z | x] ([B, P], P = 4·32·32) of the dataset latents for x = a·z + s·ε and returns its value
    /// name: <paramref name="flatSample"/> adds the nodes of x as [B, P] (called after the dataset latents are in place),
    /// <paramref name="signal"/> is a ([B, 1]), <paramref name="signalSquared"/> a², <paramref name="variance"/> s², and
    /// <paramref name="logPrior"/> adds the nodes of the log prior ([B, K], up to a constant per row).
    /// </summary>
    internal static string AddPosteriorMean(OnnxGraphBuilder g, Func<string> flatSample, string signal, string signalSquared, string variance,
        DemoLatentTable table, Func<string> logPrior)
    {
        var items = DemoDataset.Items;
        int count = items.Count, p = DemoLatentTable.PlaneLength;

        // Likelihood: −‖x − a z_k‖² / (2s²) = (a·x·z_k − ½a²‖z_k‖²)/s² − ‖x‖²/(2s²). The last term is
        // the same for every k and cancels in the softmax, so one [B, P] × [P, K] product (Gemm with transB over the
        // [K, P] latents, P = 4·32·32) and the constant ‖z_k‖² replace forming the [B, K, P] differences (3× faster).
        // The dataset latents z_k [K, P], assembled from the table (ONNX Runtime folds this into a constant at load):
        // distance and colour weight by geometry, background by background, colour channels = weight × colour code.
        var geometry = g.Initializer("item_geometry", items.Select(i => (long)DemoLatentTable.GeometryIndex(i)).ToArray(), count);
        var weight = g.Gather(g.Initializer("geometry_colour_weight", table.ColourWeight, DemoLatentTable.GeometryCount, p), geometry);
        var colour = g.Initializer("item_colour", items.Select(i => (long)i.Colour).ToArray(), count);
        var codes = g.Gather(g.Initializer("colour_codes", table.ColourCodes, DemoDataset.ShapeColours.Count, 2), colour);   // [K, 2]
        var z = g.Concat(1,
            g.Gather(g.Initializer("geometry_distance", table.Distance, DemoLatentTable.GeometryCount, p), geometry),
            g.Gather(g.Initializer("background_channel", table.Background, DemoDataset.BackgroundColours.Count, p),
                g.Initializer("item_background", items.Select(i => (long)i.Background).ToArray(), count)),
            g.Mul(weight, g.Slice(codes, [0], [1], [1])),
            g.Mul(weight, g.Slice(codes, [1], [2], [1])));
        var datasetLatents = table.Compose();
        var norms = new float[count];
        for (int k = 0; k < count; k++)
        {
            double sum = 0;
            for (int i = 0; i < LatentLength; i++) sum += (double)datasetLatents[k * LatentLength + i] * datasetLatents[k * LatentLength + i];
            norms[k] = (float)sum;
        }
        var x = flatSample();                                    // [B, P]
        var dots = g.Node("Gemm", [x, z], ("transB", 1L));       // [B, K]: x·z_k
        var halfNormTerm = g.Mul(g.Mul(signalSquared, g.Scalar(0.5f)), g.Initializer("dataset_latent_norms", norms, 1, count));
        var logLikelihood = g.Div(g.Sub(g.Mul(dots, signal), halfNormTerm), variance);

        // Logits more than 80 below the largest are raised to that floor (a weight of e⁻⁸⁰ ≈ 2e-35 instead of less):
        // far-away images otherwise get subnormal weights, which the CPU multiplies ~5× slower in the product below.
        var logits = g.Add(logPrior(), logLikelihood);
        var floor = g.Sub(g.ReduceMax(logits, [1]), g.Scalar(80f));
        var weights = g.Softmax(g.Node("Max", [logits, floor]), axis: -1);
        return g.MatMul(weights, z);                            // [B, P]
    }

    private static double[] Softmax(double[] logits)
    {
        double max = logits.Max(), total = 0;
        var w = new double[logits.Length];
        for (int i = 0; i < w.Length; i++) total += w[i] = Math.Exp(logits[i] - max);
        for (int i = 0; i < w.Length; i++) w[i] /= total;
        return w;
    }
}

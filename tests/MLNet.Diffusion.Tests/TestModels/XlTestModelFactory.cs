using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>
/// Writes tiny SDXL-family ONNX model folders (SDXL base, SDXL-Turbo, SDXL refiner, LCM on SDXL or SD 1.x) in each
/// exporter convention of <see cref="XlTestModelOptions"/>, whose components have closed forms, so that tests can
/// predict exactly what reaches the UNet: which hidden state of which encoder, the pooled embedding, the time ids and
/// the guidance embedding.
/// </summary>
/// <remarks>
/// <para><b>Text encoders</b> (encoder e of width D with L layers; tables differ per encoder):
/// <c>hidden_states.0</c> = h₀[p,d] = (A[t_p mod 61, d] + B[t_p mod 67, d])·S[p,d] + P[p,d] (the SD test encoder's form);
/// layer k = 1…L: h_k[p] = tanh(h_{k−1}[p]·G_k + m_{k−1}[p]·Q_k + R_k) per channel, with m[p] the causal mean of h over
/// positions 0…p (so every position after the first, the EOS one included, depends on the tokens before it, as with
/// CLIP's causal attention); <c>hidden_states.k</c> is h_k, each layer with its own G, Q, R;
/// <c>last_hidden_state</c> = LayerNorm(h_L)·γ + β over channels (ε = <see cref="LayerNormEpsilon"/>), as CLIP's final layer
/// norm, so it differs from <c>hidden_states.L</c> and from the penultimate <c>hidden_states.(L−1)</c> that SDXL uses.
/// The pooled vector is <c>last_hidden_state</c> at the first position of the largest id (CLIP's argmax pooling: the EOS
/// token): text_encoder's <c>pooler_output</c>; text_encoder_2's <c>text_embeds</c> is it times a projection [D × P].</para>
/// <para><b>Oracle UNet</b> (epsilon prediction): with c = <c>encoder_hidden_states</c> [77 × Dc], per latent channel ch,
/// z[ch] = tanh(Σ_d mean_p(c)[d]·W[d,ch] + Σ_j pooled[j]·Wp[j,ch] + Σ_i time_ids[i]·Wt[i,ch] + Σ_k cond[k]·Wg[k,ch])
/// (<see cref="TargetLatent"/>; terms for inputs the family lacks are absent), broadcast over h×w. Wt[i,·] is divided
/// by the scale of the value at position i (<see cref="TimeIdSizeScale"/> for sizes, <see cref="CropScale"/> for crops,
/// <see cref="AestheticScoreScale"/> for the refiner's aesthetic score), and differs per position, so swapping height and
/// width changes z. The output is ε̂ = (x − √ᾱ·z)/√(1 − ᾱ) with ᾱ at the (fractional) timestep as the SD test UNet
/// interpolates it (<see cref="NoisePrediction"/>).</para>
/// <para><b>VAE</b>: the SD test model's graphs (<see cref="TestModelFactory.DecoderOutput"/>,
/// <see cref="TestModelFactory.EncoderOutput"/>) with the family's scaling factor (0.13025 for SDXL).</para>
/// </remarks>
public static class XlTestModelFactory
{
    /// <summary>The width of LCM's guidance-scale embedding (<c>timestep_cond</c>).</summary>
    public const int GuidanceEmbeddingWidth = 256;
    /// <summary>The final layer norm's ε.</summary>
    public const float LayerNormEpsilon = 1e-5f;
    /// <summary>The gain of the context projection W (entries uniform in [−1, 1)·gain/√Dc).</summary>
    public const float ContextGain = 8f;
    /// <summary>The gain of the pooled projection Wp (entries uniform in [−1, 1)·gain/√P).</summary>
    public const float PooledGain = 1f;
    /// <summary>The gain of the time-id projection Wt (entries uniform in [−1, 1)·gain/scale).</summary>
    public const float TimeIdGain = 0.5f;
    /// <summary>The gain of the guidance-embedding projection Wg (entries uniform in [−1, 1)·gain/√256).</summary>
    public const float GuidanceGain = 1f;
    /// <summary>The scale of the sizes in the time ids (a value of this size contributes about ±gain).</summary>
    public const float TimeIdSizeScale = 1024f;
    /// <summary>The scale of the crop coordinates in the time ids (positions 2 and 3).</summary>
    public const float CropScale = 128f;
    /// <summary>The scale of the refiner's aesthetic score (fifth time id).</summary>
    public const float AestheticScoreScale = 8f;
    /// <summary>The name of the pooled input in the <see cref="XlExtraInputNaming.Unnamed"/> conventions.</summary>
    public const string UnnamedTextEmbeds = "onnx::Concat_3";
    /// <summary>The name of the time-ids input in the <see cref="XlExtraInputNaming.Unnamed"/> conventions.</summary>
    public const string UnnamedTimeIds = "input.7";
    /// <summary>The name of the guidance-embedding input in the <see cref="XlExtraInputNaming.Unnamed"/> conventions.</summary>
    public const string UnnamedTimestepCond = "onnx::Gemm_5";


    /// <summary>Writes the model folder into <paramref name="directory"/> (created if needed) and returns its full path.</summary>
    public static string Create(string directory, XlTestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Validate(options);
        var o = options;
        string root = Path.GetFullPath(directory);
        Directory.CreateDirectory(root);

        string schedulerJson = o.ResolvedSchedulerConfigJson;
        var scheduler = SchedulerConfig.Parse(schedulerJson, "XL test model scheduler config");
        WriteJson(Path.Combine(root, "model_index.json"), ModelIndex(o, scheduler.ClassName ?? "EulerDiscreteScheduler"));
        Directory.CreateDirectory(Path.Combine(root, "scheduler"));
        File.WriteAllText(Path.Combine(root, "scheduler", "scheduler_config.json"), schedulerJson);

        string? textExternal = o.ExternalWeights == "model.onnx_data" ? o.ExternalWeights : null;
        if (o.HasTextEncoder)
        {
            TestTokenizer.Write(Path.Combine(root, "tokenizer"), null);
            XlTestModelGraphs.TextEncoder(o, 1).Save(Path.Combine(root, "text_encoder", "model.onnx"), textExternal);
            WriteJson(Path.Combine(root, "text_encoder", "config.json"), EncoderConfig("CLIPTextModel", o.TextEncoderWidth, o.TextEncoderLayers, o.TextEncoderWidth));
        }
        if (o.HasTextEncoder2)
        {
            TestTokenizer.Write(Path.Combine(root, "tokenizer_2"), "!");
            XlTestModelGraphs.TextEncoder(o, 2).Save(Path.Combine(root, "text_encoder_2", "model.onnx"), textExternal);
            WriteJson(Path.Combine(root, "text_encoder_2", "config.json"), EncoderConfig("CLIPTextModelWithProjection", o.TextEncoder2Width, o.TextEncoder2Layers, o.ResolvedPooledWidth));
        }

        XlTestModelGraphs.Unet(o, TestModelFactory.AlphasCumprod(scheduler)).Save(Path.Combine(root, "unet", "model.onnx"), o.ExternalWeights);
        var unet = new JsonObject
        {
            ["_class_name"] = "UNet2DConditionModel",
            ["addition_embed_type"] = o.IsXl ? "text_time" : null,
            ["addition_time_embed_dim"] = o.IsXl ? 256 : null,
            ["cross_attention_dim"] = o.ContextWidth,
            ["in_channels"] = 4,
            ["out_channels"] = 4,
            ["projection_class_embeddings_input_dim"] = o.IsXl ? o.ResolvedPooledWidth + o.TimeIdCount * 256 : null,
            ["sample_size"] = o.ResolvedSampleSize,
            ["time_cond_proj_dim"] = o.Lcm ? GuidanceEmbeddingWidth : null,
        };
        WriteJson(Path.Combine(root, "unet", "config.json"), unet);

        var vae = o.VaeOptions;
        foreach (var part in new[] { "vae_decoder", "vae_encoder" })
        {
            var graph = part == "vae_decoder" ? TestModelGraphs.VaeDecoder(vae) : TestModelGraphs.VaeEncoder(vae);
            graph.Save(Path.Combine(root, part, "model.onnx"));
            var config = new JsonObject
            {
                ["_class_name"] = "AutoencoderKL",
                ["latent_channels"] = 4,
                ["sample_size"] = o.ResolvedSampleSize * 8,
                ["scaling_factor"] = o.ResolvedScalingFactor,
            };
            if (o.IsXl) config["force_upcast"] = true;
            WriteJson(Path.Combine(root, part, "config.json"), config);
        }
        return root;
    }

    /// <summary>Writes the model folder into a new temporary folder that deletes itself when disposed.</summary>
    public static XlTempModelFolder CreateTemp(XlTestModelOptions? options = null)
    {
        options ??= new XlTestModelOptions();
        var folder = new XlTempModelFolder(options);
        return TestModelFolders.WriteInto(folder, folder.Path, path => Create(path, options));
    }

    /// <summary>
    /// A broken folder: the model is written, then <paramref name="relativePath"/> (a component folder such as
    /// "text_encoder_2", or a file such as "tokenizer_2/vocab.json") is deleted.
    /// </summary>
    public static string CreateWithout(string directory, string relativePath, XlTestModelOptions? options = null)
    {
        return TestModelFolders.Remove(Create(directory, options ?? new XlTestModelOptions()), relativePath, "XL test model");
    }

    /// <summary>The name of hidden-state output <paramref name="layer"/> (0 = the embeddings).</summary>
    public static string HiddenStateName(int layer) => $"hidden_states.{layer}";

    /// <summary>The UNet input name of an extra input under a naming convention.</summary>
    public static string InputName(XlUnetInput input, XlExtraInputNaming naming) =>
        naming == XlExtraInputNaming.Canonical
            ? input switch { XlUnetInput.TextEmbeds => "text_embeds", XlUnetInput.TimeIds => "time_ids", _ => "timestep_cond" }
            : UnnamedInputName(input);

    internal static string UnnamedInputName(XlUnetInput input) => input switch
    {
        XlUnetInput.TextEmbeds => UnnamedTextEmbeds,
        XlUnetInput.TimeIds => UnnamedTimeIds,
        _ => UnnamedTimestepCond,
    };

    /// <summary>The UNet's extra inputs as the folder declares them, in declaration order: (meaning, name, width).</summary>
    public static IReadOnlyList<(XlUnetInput Input, string Name, int Width)> ExtraInputs(XlTestModelOptions options) =>
        XlTestModelGraphs.ExtraInputs(options);

    // ---- Closed forms: text encoders ----------------------------------------------------------------

    /// <summary>
    /// Every hidden state of an encoder for one row of token ids: element k (k = 0…L) is <c>hidden_states.k</c>,
    /// [ids.Length × D] row-major.
    /// </summary>
    public static float[][] HiddenStates(XlTextEncoder encoder, ReadOnlySpan<long> ids, XlTestModelOptions options)
    {
        var t = Tables(encoder, options);
        if (ids.Length == 0 || ids.Length > TestTokenizer.MaxLength)
            throw new ArgumentException($"Expected 1 to {TestTokenizer.MaxLength} ids, got {ids.Length}.", nameof(ids));
        int d = t.Width, n = ids.Length * d;
        var states = new float[t.Layers + 1][];
        var h = new float[n];
        for (int p = 0; p < ids.Length; p++)
        {
            int a = (int)(ids[p] % TestModelFactory.TableA), b = (int)(ids[p] % TestModelFactory.TableB);
            for (int k = 0; k < d; k++)
                h[p * d + k] = (t.A[a * d + k] + t.B[b * d + k]) * t.S[p * d + k] + t.P[p * d + k];
        }
        states[0] = h;
        int len = ids.Length;
        var mean = new float[n];
        for (int layer = 1; layer <= t.Layers; layer++)
        {
            // The causal mean over positions 0…p, as the graph's averaging matrix (weights 1/(p + 1)) applies it.
            for (int k = 0; k < d; k++)
            {
                double sum = 0;
                for (int p = 0; p < len; p++)
                {
                    sum += h[p * d + k];
                    mean[p * d + k] = (float)(sum / (p + 1));
                }
            }
            var next = new float[n];
            int off = (layer - 1) * d;
            for (int i = 0; i < n; i++)
            {
                int k = off + i % d;
                next[i] = MathF.Tanh(h[i] * t.Gain[k] + mean[i] * t.Mix[k] + t.Bias[k]);
            }
            states[layer] = h = next;
        }
        return states;
    }

    /// <summary><c>hidden_states.layer</c> of an encoder for one row of ids ([ids.Length × D]).</summary>
    public static float[] HiddenState(XlTextEncoder encoder, ReadOnlySpan<long> ids, int layer, XlTestModelOptions options)
    {
        var states = HiddenStates(encoder, ids, options);
        if (layer < 0 || layer >= states.Length)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"The encoder has hidden states 0 to {states.Length - 1}.");
        return states[layer];
    }

    /// <summary>The penultimate hidden state <c>hidden_states.(L−1)</c>, which SDXL conditions on.</summary>
    public static float[] PenultimateHiddenState(XlTextEncoder encoder, ReadOnlySpan<long> ids, XlTestModelOptions options)
    {
        var states = HiddenStates(encoder, ids, options);
        return states[^2];
    }

    /// <summary><c>last_hidden_state</c>: the final layer norm of <c>hidden_states.L</c> ([ids.Length × D]).</summary>
    public static float[] LastHiddenState(XlTextEncoder encoder, ReadOnlySpan<long> ids, XlTestModelOptions options)
    {
        var t = Tables(encoder, options);
        var h = HiddenStates(encoder, ids, options)[^1];
        int d = t.Width;
        var y = new float[h.Length];
        for (int p = 0; p < h.Length / d; p++)
        {
            var row = h.AsSpan(p * d, d);
            double mean = 0, variance = 0;
            foreach (var v in row) mean += v;
            mean /= d;
            foreach (var v in row) variance += (v - mean) * (v - mean);
            variance /= d;
            double inv = 1 / Math.Sqrt(variance + LayerNormEpsilon);
            for (int k = 0; k < d; k++) y[p * d + k] = (float)((row[k] - mean) * inv * t.NormScale[k] + t.NormBias[k]);
        }
        return y;
    }

    /// <summary>The position CLIP pools at: the first position of the largest id (the EOS token).</summary>
    public static int PoolingPosition(ReadOnlySpan<long> ids)
    {
        int best = 0;
        for (int p = 1; p < ids.Length; p++) if (ids[p] > ids[best]) best = p;
        return best;
    }

    /// <summary>The pooled vector [D]: <c>last_hidden_state</c> at <see cref="PoolingPosition"/>; text_encoder's
    /// <c>pooler_output</c>.</summary>
    public static float[] PooledOutput(XlTextEncoder encoder, ReadOnlySpan<long> ids, XlTestModelOptions options)
    {
        int d = Tables(encoder, options).Width;
        return LastHiddenState(encoder, ids, options).AsSpan(PoolingPosition(ids) * d, d).ToArray();
    }

    /// <summary>text_encoder_2's <c>text_embeds</c> [P]: the pooled vector times the projection [D2 × P].</summary>
    public static float[] TextEmbeds(ReadOnlySpan<long> ids, XlTestModelOptions options)
    {
        var t = Tables(XlTextEncoder.TextEncoder2, options);
        var pooled = PooledOutput(XlTextEncoder.TextEncoder2, ids, options);
        int d = t.Width, p = options.ResolvedPooledWidth;
        var y = new float[p];
        for (int j = 0; j < p; j++)
        {
            double sum = 0;
            for (int k = 0; k < d; k++) sum += pooled[k] * t.Projection![k * p + j];
            y[j] = (float)sum;
        }
        return y;
    }

    /// <summary>
    /// The prompt embedding the family's UNet takes as <c>encoder_hidden_states</c>, for one prompt's ids from each
    /// tokenizer ([77 × Dc]): SDXL base, the concatenation on the last axis of both encoders' penultimate hidden states
    /// (diffusers' <c>prompt_embeds</c>); refiner, text_encoder_2's penultimate hidden state (<paramref name="ids"/> unused,
    /// may be empty); Sd, text_encoder's <c>last_hidden_state</c> (<paramref name="ids2"/> unused, may be empty).
    /// </summary>
    public static float[] PromptEmbeds(ReadOnlySpan<long> ids, ReadOnlySpan<long> ids2, XlTestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        switch (options.Family)
        {
            case XlTestFamily.SdxlRefiner: return PenultimateHiddenState(XlTextEncoder.TextEncoder2, ids2, options);
            case XlTestFamily.Sd: return LastHiddenState(XlTextEncoder.TextEncoder, ids, options);
        }
        if (ids.Length != ids2.Length) throw new ArgumentException($"Both tokenizers give {TestTokenizer.MaxLength} ids; got {ids.Length} and {ids2.Length}.");
        var a = PenultimateHiddenState(XlTextEncoder.TextEncoder, ids, options);
        var b = PenultimateHiddenState(XlTextEncoder.TextEncoder2, ids2, options);
        int d1 = options.TextEncoderWidth, d2 = options.TextEncoder2Width;
        var c = new float[ids.Length * (d1 + d2)];
        for (int p = 0; p < ids.Length; p++)
        {
            a.AsSpan(p * d1, d1).CopyTo(c.AsSpan(p * (d1 + d2)));
            b.AsSpan(p * d2, d2).CopyTo(c.AsSpan(p * (d1 + d2) + d1));
        }
        return c;
    }

    /// <summary>A prompt's ids as the folder's tokenizer for <paramref name="encoder"/> gives them
    /// (tokenizer/ pads with &lt;|endoftext|&gt;, tokenizer_2/ with "!", id 0).</summary>
    public static long[] TokenIds(XlTextEncoder encoder, string prompt) =>
        TestTokenizer.Encode(prompt, encoder == XlTextEncoder.TextEncoder2 ? "!" : null);

    /// <summary><see cref="PromptEmbeds"/> of a prompt, tokenized with <see cref="TokenIds"/>.</summary>
    public static float[] PromptEmbedsForPrompt(string prompt, XlTestModelOptions options) =>
        PromptEmbeds(TokenIds(XlTextEncoder.TextEncoder, prompt), TokenIds(XlTextEncoder.TextEncoder2, prompt), options);

    /// <summary>The pooled embedding the SDXL families' UNet takes as <c>text_embeds</c>: text_encoder_2's
    /// <c>text_embeds</c> of a prompt.</summary>
    public static float[] PooledForPrompt(string prompt, XlTestModelOptions options) =>
        TextEmbeds(TokenIds(XlTextEncoder.TextEncoder2, prompt), options);

    // ---- Closed forms: UNet -------------------------------------------------------------------------

    /// <summary>
    /// The oracle UNet's target z [4] for one batch row: <paramref name="context"/> is <c>encoder_hidden_states</c>
    /// [L × Dc], <paramref name="pooled"/> <c>text_embeds</c> [P], <paramref name="timeIds"/> [6 or 5],
    /// <paramref name="timestepCond"/> [256]; pass empty spans for inputs the family lacks (Sd: pooled and time ids;
    /// without LCM: the guidance embedding).
    /// </summary>
    public static float[] TargetLatent(ReadOnlySpan<float> context, ReadOnlySpan<float> pooled, ReadOnlySpan<float> timeIds,
        ReadOnlySpan<float> timestepCond, XlTestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int dc = options.ContextWidth, p = options.IsXl ? options.ResolvedPooledWidth : 0, n = options.TimeIdCount;
        int g = options.Lcm ? GuidanceEmbeddingWidth : 0;
        if (context.Length == 0 || context.Length % dc != 0)
            throw new ArgumentException($"{context.Length} context values are not rows of width {dc}.", nameof(context));
        if (pooled.Length != p) throw new ArgumentException($"Expected {p} pooled values, got {pooled.Length}.", nameof(pooled));
        if (timeIds.Length != n) throw new ArgumentException($"Expected {n} time ids, got {timeIds.Length}.", nameof(timeIds));
        if (timestepCond.Length != g) throw new ArgumentException($"Expected {g} guidance-embedding values, got {timestepCond.Length}.", nameof(timestepCond));
        var t = XlTestModelGraphs.Unet(dc, p, n, options.Lcm);
        int len = context.Length / dc;
        var z = new float[4];
        for (int ch = 0; ch < 4; ch++)
        {
            double pre = 0;
            for (int k = 0; k < dc; k++)
            {
                double mean = 0;
                for (int q = 0; q < len; q++) mean += context[q * dc + k];
                pre += mean / len * t.Context[k * 4 + ch];
            }
            for (int j = 0; j < p; j++) pre += pooled[j] * (double)t.Pooled[j * 4 + ch];
            for (int i = 0; i < n; i++) pre += timeIds[i] * (double)t.TimeIds[i * 4 + ch];
            for (int k = 0; k < g; k++) pre += timestepCond[k] * (double)t.Guidance[k * 4 + ch];
            z[ch] = (float)Math.Tanh(pre);
        }
        return z;
    }

    /// <summary>ᾱ_t (t = 0 … N − 1) of the folder's scheduler config, as the UNet's table is built from it.</summary>
    public static double[] AlphasCumprod(XlTestModelOptions options) =>
        TestModelFactory.AlphasCumprod(SchedulerConfig.Parse(options.ResolvedSchedulerConfigJson, "XL test model scheduler config"));

    /// <summary>
    /// √ᾱ and √(1 − ᾱ) at a (fractional) timestep as the UNet computes them: σ interpolated linearly between ⌊t⌋ and
    /// ⌊t⌋ + 1, t clamped to [0, N − 1], √ᾱ = 1/√(1 + σ²), √(1 − ᾱ) = σ·√ᾱ.
    /// </summary>
    public static (double SqrtAlpha, double SqrtOneMinusAlpha) NoiseLevels(float timestep, double[] alphasCumprod)
    {
        int n = alphasCumprod.Length;
        static double Sigma(double a) => Math.Sqrt((1 - Math.Max(a, 1.0 / (1 << 24))) / Math.Max(a, 1.0 / (1 << 24)));
        double t = Math.Clamp(timestep, 0, n - 1), floor = Math.Floor(t);
        int lo = (int)floor;
        double sLo = Sigma(alphasCumprod[lo]), sHi = Sigma(alphasCumprod[Math.Min(lo + 1, n - 1)]);
        double sigma = sLo + (t - floor) * (sHi - sLo);
        double sqrtA = 1 / Math.Sqrt(1 + sigma * sigma);
        return (sqrtA, sigma * sqrtA);
    }

    /// <summary>
    /// The UNet's <c>out_sample</c> for one batch row: ε̂ = (x − √ᾱ·z[ch])/√(1 − ᾱ) per element of
    /// <paramref name="sample"/> [4 × h × w], with <paramref name="target"/> from <see cref="TargetLatent"/>.
    /// </summary>
    public static float[] NoisePrediction(ReadOnlySpan<float> sample, float timestep, ReadOnlySpan<float> target, XlTestModelOptions options)
    {
        if (target.Length != 4 || sample.Length % 4 != 0) throw new ArgumentException("Expected a 4-value target and 4 latent channels.");
        var (sa, sb) = NoiseLevels(timestep, AlphasCumprod(options));
        int hw = sample.Length / 4;
        var eps = new float[sample.Length];
        for (int i = 0; i < eps.Length; i++) eps[i] = (float)((sample[i] - sa * target[i / hw]) / sb);
        return eps;
    }

    // ---- Folder files -------------------------------------------------------------------------------

    private static XlTestModelGraphs.EncoderTables Tables(XlTextEncoder encoder, XlTestModelOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        return encoder == XlTextEncoder.TextEncoder2
            ? XlTestModelGraphs.Encoder(2, o.TextEncoder2Width, o.TextEncoder2Layers, o.ResolvedPooledWidth)
            : XlTestModelGraphs.Encoder(1, o.TextEncoderWidth, o.TextEncoderLayers, 0);
    }

    private static JsonObject ModelIndex(XlTestModelOptions o, string schedulerClass)
    {
        static JsonArray Entry(string library, string type) => new(library, type);
        static JsonArray None() => new(null, null);
        if (!o.IsXl)
        {
            return new JsonObject
            {
                ["_class_name"] = o.PipelineClassName ?? (o.Lcm ? "LatentConsistencyModelPipeline" : "StableDiffusionPipeline"),
                ["_diffusers_version"] = "0.22.0.dev0",
                ["feature_extractor"] = None(),
                ["requires_safety_checker"] = false,
                ["safety_checker"] = None(),
                ["scheduler"] = Entry("diffusers", schedulerClass),
                ["text_encoder"] = Entry("transformers", "CLIPTextModel"),
                ["tokenizer"] = Entry("transformers", "CLIPTokenizer"),
                ["unet"] = Entry("diffusers", "UNet2DConditionModel"),
                ["vae_decoder"] = Entry("diffusers", "AutoencoderKL"),
                ["vae_encoder"] = Entry("diffusers", "AutoencoderKL"),
            };
        }
        bool refiner = o.Family == XlTestFamily.SdxlRefiner;
        var index = new JsonObject
        {
            ["_class_name"] = o.PipelineClassName ?? (refiner ? "StableDiffusionXLImg2ImgPipeline" : "StableDiffusionXLPipeline"),
            ["_diffusers_version"] = "0.19.0.dev0",
            ["force_zeros_for_empty_prompt"] = o.ResolvedForceZerosForEmptyPrompt,
            ["add_watermarker"] = null,
        };
        if (refiner) index["requires_aesthetics_score"] = true;
        index["scheduler"] = Entry("diffusers", schedulerClass);
        index["text_encoder"] = refiner ? None() : Entry("transformers", "CLIPTextModel");
        index["text_encoder_2"] = Entry("transformers", "CLIPTextModelWithProjection");
        index["tokenizer"] = refiner ? None() : Entry("transformers", "CLIPTokenizer");
        index["tokenizer_2"] = Entry("transformers", "CLIPTokenizer");
        index["unet"] = Entry("diffusers", "UNet2DConditionModel");
        index["vae_decoder"] = Entry("diffusers", "AutoencoderKL");
        index["vae_encoder"] = Entry("diffusers", "AutoencoderKL");
        return index;
    }

    private static JsonObject EncoderConfig(string architecture, int width, int layers, int projection) => new()
    {
        ["architectures"] = new JsonArray(architecture),
        ["hidden_size"] = width,
        ["max_position_embeddings"] = TestTokenizer.MaxLength,
        ["model_type"] = "clip_text_model",
        ["num_hidden_layers"] = layers,
        ["projection_dim"] = projection,
        ["vocab_size"] = TestTokenizer.Vocabulary.Count,
    };

    private static void Validate(XlTestModelOptions o)
    {
        foreach (var (name, type) in new[] { ("TextEncoderIdType", o.TextEncoderIdType), ("TextEncoder2IdType", o.TextEncoder2IdType) })
            if (type is not (OnnxElementType.Int32 or OnnxElementType.Int64))
                throw new ArgumentException($"{name} must be Int32 or Int64, not {type}.", nameof(o));
        if (o.TextEncoderWidth < 4 || o.TextEncoder2Width < 4)
            throw new ArgumentException($"Encoder widths must be at least 4 (got {o.TextEncoderWidth} and {o.TextEncoder2Width}).", nameof(o));
        if (o.TextEncoderLayers < 2 || o.TextEncoder2Layers < 2)
            throw new ArgumentException($"TextEncoderLayers and TextEncoder2Layers must be at least 2, so the penultimate hidden state is a layer's output (got {o.TextEncoderLayers} and {o.TextEncoder2Layers}).", nameof(o));
        int p = o.ResolvedPooledWidth;
        if (p < 1 || (o.IsXl && (p == o.TimeIdCount || p == GuidanceEmbeddingWidth)))
            throw new ArgumentException($"PooledWidth {p} must be positive and differ from the time-id count {o.TimeIdCount} and {GuidanceEmbeddingWidth}, or the UNet's rank-2 inputs cannot be told apart by width.", nameof(o));
        if (o.ExternalWeights is not (null or "weights.pb" or "model.onnx_data"))
            throw new ArgumentException($"ExternalWeights must be null, weights.pb or model.onnx_data, not '{o.ExternalWeights}'.", nameof(o));
        if (o.ResolvedSampleSize < 1) throw new ArgumentException($"SampleSize must be positive, not {o.ResolvedSampleSize}.", nameof(o));
        if (o.UnetStaticBatch is < 1) throw new ArgumentException($"UnetStaticBatch must be positive, not {o.UnetStaticBatch}.", nameof(o));
        if (!(o.ResolvedScalingFactor > 0)) throw new ArgumentException($"ScalingFactor must be positive, not {o.ResolvedScalingFactor}.", nameof(o));
        using var doc = JsonDocument.Parse(o.ResolvedSchedulerConfigJson);
        if (doc.RootElement.TryGetProperty("prediction_type", out var prediction) && prediction.GetString() != "epsilon")
            throw new ArgumentException($"The XL oracle UNet predicts epsilon; the scheduler config says prediction_type '{prediction.GetString()}'.", nameof(o));
    }

    private static void WriteJson(string path, JsonObject value) => TestModelFolders.WriteJson(path, value);
}

/// <summary>A temporary folder holding an XL test model; disposing deletes it.</summary>
public sealed class XlTempModelFolder(XlTestModelOptions options) : TempTestModelFolder<XlTestModelOptions>(options, "mlnd-xltestmodel-");


using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>
/// Writes tiny Stable Diffusion 3 and FLUX.1 (schnell, dev) ONNX model folders in the diffusers/Optimum layout, in each
/// exporter convention of <see cref="FlowTestModelOptions"/>, whose components have closed forms, so that tests can
/// predict exactly which conditioning reaches the transformer and where the flow-matching sampler must land.
/// </summary>
/// <remarks>
/// <para><b>CLIP encoders</b>: the SDXL test encoders (<see cref="XlTestModelFactory"/>'s closed forms): text_encoder is
/// CLIP-L (the XL text_encoder's tables, width D1, L1 layers), text_encoder_2 CLIP-G (the XL text_encoder_2's tables).
/// SD3's CLIP-L is a CLIPTextModelWithProjection: <c>text_embeds</c> = pooled·Proj_L [D1 × P1] (its own projection,
/// <see cref="ClipTextEmbeds"/>); FLUX's is a CLIPTextModel (<c>last_hidden_state</c>, <c>pooler_output</c>).
/// tokenizer_2 pads with "!" as SD3's does.</para>
/// <para><b>T5 encoder</b> (<see cref="T5LastHiddenState"/>): h[p, d] = tanh(E[id_p mod V, d] + 0.5·Pos[p mod 64, d]),
/// V the vocabulary of the committed test SentencePiece model (<see cref="T5VocabularySize"/>); each position depends on
/// its own id and its position.</para>
/// <para><b>Oracle transformer</b>: it outputs the ideal flow-matching velocity for data that is a point mass at
/// μ(c): v = (x − μ)/σ (σ floored at <see cref="MinSigma"/>). With x_σ = (1 − σ)·x₀ + σ·ε the velocity target is ε − x₀,
/// and an Euler step x ← x + (σ' − σ)·v scales x − μ by σ'/σ, so any σ schedule ending at 0 lands exactly on μ; with
/// classifier-free guidance v_u + g·(v_c − v_u) it lands on μ_u + g·(μ_c − μ_u). σ = timestep/1000 for SD3 (diffusers
/// passes 1000·σ) and σ = timestep for FLUX (diffusers passes σ). With c̄ = mean over the sequence of
/// <c>encoder_hidden_states</c> [S × Dj] (every CLIP and T5 position counts), per latent channel ch:
/// pre[ch] = Σ_d c̄[d]·W[d, ch] + Σ_k pooled[k]·Wp[k, ch] (+ guidance·wg[ch] for FLUX dev) (+ mean(txt_ids)·wt[ch] for
/// FLUX, 0 with diffusers' zero txt_ids), and μ[ch, r, q] = tanh(pre[ch]) + α[ch]·r/<see cref="PositionScale"/> +
/// β[ch]·q/<see cref="PositionScale"/> at latent row r, column q (<see cref="TargetLatents"/>). SD3 takes r, q from the
/// tensor's own axes; FLUX from <c>img_ids</c>: token n, element 4c + 2a + b is at r = 2·img_ids[n, 1] + a,
/// q = 2·img_ids[n, 2] + b, so wrong ids or a wrong packing order give a different answer.</para>
/// <para><b>VAE</b> (16 channels): the decoder outputs <c>sample</c>[c] = s·(<c>latent_sample</c>[c] − shift) for c = 0, 1,
/// 2, nearest-upsampled ×8 (<see cref="DecoderOutput"/>); the pipeline decodes z/s + shift, so final latents z decode to
/// pixel values z[0..2] (<see cref="DecodedImage"/>). The encoder's mean channel k is the 8×8 block average of image channel
/// k mod 3, ÷ s, + shift (<see cref="EncoderOutput"/>), so (mean − shift)·s is in pixel units; <c>latent_parameters</c>
/// appends a log-variance of <see cref="TestModelFactory.EncoderLogVariance"/> on 16 more channels.</para>
/// </remarks>
public static class FlowTestModelFactory
{
    /// <summary>The latent channels of SD3's and FLUX's VAE.</summary>
    public const int LatentChannels = 16;
    /// <summary>The width of a packed FLUX token (16 channels × 2 × 2).</summary>
    public const int PackedChannels = 64;
    /// <summary>The period of the T5 position table.</summary>
    public const int T5PositionPeriod = 64;
    /// <summary>The weight of the T5 position table.</summary>
    public const float T5PositionWeight = 0.5f;
    /// <summary>The gain of the context projection W (entries uniform in [−1, 1)·gain/√Dj).</summary>
    public const float ContextGain = 4f;
    /// <summary>The gain of the pooled projection Wp (entries uniform in [−1, 1)·gain/√P).</summary>
    public const float PooledGain = 1f;
    /// <summary>The gain of FLUX dev's guidance weights wg (uniform in [−1, 1)·gain; guidance is about 3.5).</summary>
    public const float GuidanceGain = 0.25f;
    /// <summary>The gain of FLUX's txt-id weights wt.</summary>
    public const float TextIdGain = 1f;
    /// <summary>The gain of the position weights α, β.</summary>
    public const float PositionGain = 1f;
    /// <summary>The latent-position divisor of the position terms.</summary>
    public const float PositionScale = 32f;
    /// <summary>The smallest σ the transformer divides by.</summary>
    public const float MinSigma = 1e-6f;

    private static readonly Lazy<T5Tokenizer> s_t5 = new(() => new T5Tokenizer(SentencePieceModel.Load(T5ModelPath), T5ModelPath));

    /// <summary>The committed test SentencePiece model that every T5 tokenizer folder holds as <c>spiece.model</c>.</summary>
    public static string T5ModelPath => Path.Combine(AppContext.BaseDirectory, "Data", "t5", "t5_test.model");

    /// <summary>The T5 test model's vocabulary size V.</summary>
    public static int T5VocabularySize => s_t5.Value.VocabularySize;

    // ---- Folders ------------------------------------------------------------------------------------

    /// <summary>Writes the model folder into <paramref name="directory"/> (created if needed) and returns its full path.</summary>
    public static string Create(string directory, FlowTestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Validate(options);
        var o = options;
        string root = Path.GetFullPath(directory);
        Directory.CreateDirectory(root);

        WriteJson(Path.Combine(root, "model_index.json"), ModelIndex(o));
        Directory.CreateDirectory(Path.Combine(root, "scheduler"));
        File.WriteAllText(Path.Combine(root, "scheduler", "scheduler_config.json"), o.ResolvedSchedulerConfigJson);

        var clip = o.ClipOptions;
        TestTokenizer.Write(Path.Combine(root, "tokenizer"), null);
        XlTestModelGraphs.TextEncoder(clip, 1, o.IsFlux ? 0 : o.ClipLProjectionWidth).Save(Path.Combine(root, "text_encoder", "model.onnx"));
        WriteJson(Path.Combine(root, "text_encoder", "config.json"),
            ClipConfig(o.IsFlux ? "CLIPTextModel" : "CLIPTextModelWithProjection", o.ClipLWidth, o.ClipLLayers, o.IsFlux ? o.ClipLWidth : o.ClipLProjectionWidth));
        if (!o.IsFlux)
        {
            TestTokenizer.Write(Path.Combine(root, "tokenizer_2"), "!");
            XlTestModelGraphs.TextEncoder(clip, 2).Save(Path.Combine(root, "text_encoder_2", "model.onnx"));
            WriteJson(Path.Combine(root, "text_encoder_2", "config.json"),
                ClipConfig("CLIPTextModelWithProjection", o.ClipGWidth, o.ClipGLayers, o.ClipGProjectionWidth));
        }
        if (o.HasT5)
        {
            string tokenizer = Path.Combine(root, o.T5TokenizerFolder);
            Directory.CreateDirectory(tokenizer);
            File.Copy(T5ModelPath, Path.Combine(tokenizer, T5Tokenizer.ModelFileName), overwrite: true);
            WriteJson(Path.Combine(tokenizer, "tokenizer_config.json"), new JsonObject
            {
                ["additional_special_tokens"] = new JsonArray(),
                ["clean_up_tokenization_spaces"] = true,
                ["eos_token"] = "</s>",
                ["extra_ids"] = 0,
                ["model_max_length"] = o.T5ModelMaxLength,
                ["pad_token"] = "<pad>",
                ["tokenizer_class"] = "T5Tokenizer",
                ["unk_token"] = "<unk>",
            });
            WriteJson(Path.Combine(tokenizer, "special_tokens_map.json"), new JsonObject
            {
                ["eos_token"] = "</s>",
                ["pad_token"] = "<pad>",
                ["unk_token"] = "<unk>",
            });
            FlowTestModelGraphs.T5Encoder(o).Save(Path.Combine(root, o.T5EncoderFolder, "model.onnx"), o.ExternalWeights);
            WriteJson(Path.Combine(root, o.T5EncoderFolder, "config.json"), new JsonObject
            {
                ["architectures"] = new JsonArray("T5EncoderModel"),
                ["d_model"] = o.JointAttentionDim,
                ["model_type"] = "t5",
                ["num_layers"] = 1,
                ["vocab_size"] = T5VocabularySize,
            });
        }

        var transformer = o.IsFlux ? FlowTestModelGraphs.FluxTransformer(o) : FlowTestModelGraphs.Sd3Transformer(o);
        transformer.Save(Path.Combine(root, "transformer", "model.onnx"), o.ExternalWeights);
        WriteJson(Path.Combine(root, "transformer", "config.json"), TransformerConfig(o));

        foreach (var part in new[] { "vae_decoder", "vae_encoder" })
        {
            var graph = part == "vae_decoder" ? FlowTestModelGraphs.VaeDecoder(o) : FlowTestModelGraphs.VaeEncoder(o);
            graph.Save(Path.Combine(root, part, "model.onnx"));
            WriteJson(Path.Combine(root, part, "config.json"), new JsonObject
            {
                ["_class_name"] = "AutoencoderKL",
                ["force_upcast"] = true,
                ["in_channels"] = 3,
                ["latent_channels"] = LatentChannels,
                ["out_channels"] = 3,
                ["sample_size"] = o.SampleSize * 8,
                ["scaling_factor"] = o.ResolvedScalingFactor,
                ["shift_factor"] = o.ResolvedShiftFactor,
                ["use_post_quant_conv"] = false,
                ["use_quant_conv"] = false,
            });
        }
        return root;
    }

    /// <summary>Writes the model folder into a new temporary folder that deletes itself when disposed.</summary>
    public static FlowTempModelFolder CreateTemp(FlowTestModelOptions? options = null)
    {
        options ??= new FlowTestModelOptions();
        var folder = new FlowTempModelFolder(options);
        return TestModelFolders.WriteInto(folder, folder.Path, path => Create(path, options));
    }

    /// <summary>
    /// A broken folder: the model is written, then <paramref name="relativePath"/> (a component folder such as
    /// "text_encoder_3", or a file such as "tokenizer_3/spiece.model") is deleted.
    /// </summary>
    public static string CreateWithout(string directory, string relativePath, FlowTestModelOptions? options = null)
    {
        return TestModelFolders.Remove(Create(directory, options ?? new FlowTestModelOptions()), relativePath, "flow test model");
    }

    // ---- Closed forms: tokenizers and text encoders -------------------------------------------------

    /// <summary>A prompt's 77 CLIP ids as the folder's tokenizer/ (CLIP-L, pads with &lt;|endoftext|&gt;) or tokenizer_2/
    /// (SD3's CLIP-G, pads with "!") gives them.</summary>
    public static long[] ClipTokenIds(XlTextEncoder encoder, string prompt) => XlTestModelFactory.TokenIds(encoder, prompt);

    /// <summary>A prompt's T5 ids cut and padded to <paramref name="maxLength"/> (EOS 1, pad 0), as the folder's T5 tokenizer
    /// gives them.</summary>
    public static long[] T5TokenIds(string prompt, int maxLength) =>
        Array.ConvertAll(s_t5.Value.Encode(prompt, maxLength, out _), id => (long)id);

    /// <summary><c>hidden_states.layer</c> of CLIP-L (<see cref="XlTextEncoder.TextEncoder"/>) or CLIP-G
    /// (<see cref="XlTextEncoder.TextEncoder2"/>) for one row of ids ([77 × D]).</summary>
    public static float[] ClipHiddenState(XlTextEncoder encoder, ReadOnlySpan<long> ids, int layer, FlowTestModelOptions options) =>
        XlTestModelFactory.HiddenState(encoder, ids, layer, Clip(options));

    /// <summary>The penultimate hidden state <c>hidden_states.(L−1)</c> that SD3 conditions on ([77 × D]).</summary>
    public static float[] ClipPenultimateHiddenState(XlTextEncoder encoder, ReadOnlySpan<long> ids, FlowTestModelOptions options) =>
        XlTestModelFactory.PenultimateHiddenState(encoder, ids, Clip(options));

    /// <summary><c>last_hidden_state</c> of a CLIP encoder ([77 × D]).</summary>
    public static float[] ClipLastHiddenState(XlTextEncoder encoder, ReadOnlySpan<long> ids, FlowTestModelOptions options) =>
        XlTestModelFactory.LastHiddenState(encoder, ids, Clip(options));

    /// <summary>CLIP-L's <c>pooler_output</c> [D1] (FLUX's <c>pooled_projections</c>).</summary>
    public static float[] ClipPoolerOutput(ReadOnlySpan<long> ids, FlowTestModelOptions options) =>
        XlTestModelFactory.PooledOutput(XlTextEncoder.TextEncoder, ids, Clip(options));

    /// <summary>SD3's <c>text_embeds</c> of CLIP-L [P1] or CLIP-G [P2]: the pooled vector times the encoder's projection.</summary>
    public static float[] ClipTextEmbeds(XlTextEncoder encoder, ReadOnlySpan<long> ids, FlowTestModelOptions options)
    {
        var clip = Clip(options);
        if (encoder == XlTextEncoder.TextEncoder2) return XlTestModelFactory.TextEmbeds(ids, clip);
        var pooled = XlTestModelFactory.PooledOutput(XlTextEncoder.TextEncoder, ids, clip);
        int d = options.ClipLWidth, p = options.ClipLProjectionWidth;
        var projection = XlTestModelGraphs.Encoder(1, d, options.ClipLLayers, p).Projection!;
        var y = new float[p];
        for (int j = 0; j < p; j++)
        {
            double sum = 0;
            for (int k = 0; k < d; k++) sum += pooled[k] * projection[k * p + j];
            y[j] = (float)sum;
        }
        return y;
    }

    /// <summary>The T5 encoder's <c>last_hidden_state</c> for one row of ids ([T × Dj]).</summary>
    public static float[] T5LastHiddenState(ReadOnlySpan<long> ids, FlowTestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int d = options.JointAttentionDim, v = T5VocabularySize;
        var t = FlowTestModelGraphs.T5(d, v);
        var h = new float[ids.Length * d];
        for (int p = 0; p < ids.Length; p++)
        {
            int token = (int)(((ids[p] % v) + v) % v), position = p % T5PositionPeriod;
            for (int k = 0; k < d; k++)
                h[p * d + k] = MathF.Tanh(t.Embedding[token * d + k] + t.Position[position * d + k] * T5PositionWeight);
        }
        return h;
    }

    // ---- Closed forms: conditioning -----------------------------------------------------------------

    /// <summary>
    /// SD3's <c>encoder_hidden_states</c> for one prompt ([(77 + T) × Dj]), as diffusers' <c>encode_prompt</c> builds it:
    /// CLIP-L's and CLIP-G's penultimate hidden states concatenated along the width, zero-padded to Dj, then T5's
    /// <c>last_hidden_state</c> appended along the sequence; without T5 (<paramref name="t5Ids"/> null) T zero rows of width
    /// Dj take its place, T = <paramref name="t5Length"/>.
    /// </summary>
    public static float[] Sd3PromptEmbeds(ReadOnlySpan<long> clipLIds, ReadOnlySpan<long> clipGIds, long[]? t5Ids, int t5Length, FlowTestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (t5Ids is not null && t5Ids.Length != t5Length)
            throw new ArgumentException($"{t5Ids.Length} T5 ids given for a T5 length of {t5Length}.", nameof(t5Ids));
        int dj = options.JointAttentionDim, d1 = options.ClipLWidth, d2 = options.ClipGWidth, len = clipLIds.Length;
        var a = ClipPenultimateHiddenState(XlTextEncoder.TextEncoder, clipLIds, options);
        var b = ClipPenultimateHiddenState(XlTextEncoder.TextEncoder2, clipGIds, options);
        var c = new float[(len + t5Length) * dj];
        for (int p = 0; p < len; p++)
        {
            a.AsSpan(p * d1, d1).CopyTo(c.AsSpan(p * dj));
            b.AsSpan(p * d2, d2).CopyTo(c.AsSpan(p * dj + d1));
        }
        if (t5Ids is not null) T5LastHiddenState(t5Ids, options).CopyTo(c.AsSpan(len * dj));
        return c;
    }

    /// <summary>SD3's <c>pooled_projections</c> [P1 + P2]: CLIP-L's <c>text_embeds</c> then CLIP-G's.</summary>
    public static float[] Sd3PooledProjections(ReadOnlySpan<long> clipLIds, ReadOnlySpan<long> clipGIds, FlowTestModelOptions options) =>
        [.. ClipTextEmbeds(XlTextEncoder.TextEncoder, clipLIds, options), .. ClipTextEmbeds(XlTextEncoder.TextEncoder2, clipGIds, options)];

    /// <summary>SD3's conditioning of a prompt: tokenized by the folder's tokenizers (T5 cut and padded to
    /// <paramref name="t5Length"/>; <paramref name="withT5"/> false: zeros in its place).</summary>
    public static (float[] PromptEmbeds, float[] Pooled) Sd3ConditioningForPrompt(string prompt, int t5Length, bool withT5, FlowTestModelOptions options)
    {
        var l = ClipTokenIds(XlTextEncoder.TextEncoder, prompt);
        var g = ClipTokenIds(XlTextEncoder.TextEncoder2, prompt);
        return (Sd3PromptEmbeds(l, g, withT5 ? T5TokenIds(prompt, t5Length) : null, t5Length, options), Sd3PooledProjections(l, g, options));
    }

    /// <summary>FLUX's conditioning of a prompt: <c>encoder_hidden_states</c> = T5's states of the ids cut and padded to
    /// <paramref name="t5Length"/> ([T × Dj]); <c>pooled_projections</c> = CLIP-L's <c>pooler_output</c> [D1].</summary>
    public static (float[] PromptEmbeds, float[] Pooled) FluxConditioningForPrompt(string prompt, int t5Length, FlowTestModelOptions options) =>
        (T5LastHiddenState(T5TokenIds(prompt, t5Length), options), ClipPoolerOutput(ClipTokenIds(XlTextEncoder.TextEncoder, prompt), options));

    // ---- Closed forms: transformer ------------------------------------------------------------------

    /// <summary>
    /// tanh(pre[ch]) [16] for one batch row: <paramref name="promptEmbeds"/> is <c>encoder_hidden_states</c> [S × Dj],
    /// <paramref name="pooled"/> <c>pooled_projections</c>, <paramref name="guidance"/> FLUX dev's guidance (ignored
    /// otherwise), <paramref name="textIdMean"/> the mean of FLUX's <c>txt_ids</c> (0 as diffusers passes them).
    /// </summary>
    public static float[] ChannelTargets(ReadOnlySpan<float> promptEmbeds, ReadOnlySpan<float> pooled, float guidance, FlowTestModelOptions options, float textIdMean = 0)
    {
        ArgumentNullException.ThrowIfNull(options);
        int dj = options.JointAttentionDim, p = options.PooledWidth;
        if (promptEmbeds.Length == 0 || promptEmbeds.Length % dj != 0)
            throw new ArgumentException($"{promptEmbeds.Length} prompt-embedding values are not rows of width {dj}.", nameof(promptEmbeds));
        if (pooled.Length != p) throw new ArgumentException($"Expected {p} pooled values, got {pooled.Length}.", nameof(pooled));
        var t = FlowTestModelGraphs.Transformer(dj, p);
        int len = promptEmbeds.Length / dj;
        var z = new float[LatentChannels];
        for (int ch = 0; ch < LatentChannels; ch++)
        {
            double pre = 0;
            for (int k = 0; k < dj; k++)
            {
                double sum = 0;
                for (int q = 0; q < len; q++) sum += promptEmbeds[q * dj + k];
                pre += sum / len * t.Context[k * LatentChannels + ch];
            }
            for (int j = 0; j < p; j++) pre += pooled[j] * (double)t.Pooled[j * LatentChannels + ch];
            if (options.HasGuidance) pre += guidance * (double)t.Guidance[ch];
            if (options.IsFlux) pre += textIdMean * (double)t.TextIds[ch];
            z[ch] = (float)Math.Tanh(pre);
        }
        return z;
    }

    /// <summary>
    /// μ, the latents every flow-matching sampler must end on ([16 × h × w], unpacked): μ[ch, r, q] = tanh(pre[ch]) +
    /// α[ch]·r/S + β[ch]·q/S (FLUX's standard img_ids put token (i, j) at rows 2i, 2i + 1 and columns 2j, 2j + 1). With
    /// classifier-free guidance (SD3) the answer is μ_u + g·(μ_c − μ_u) of the two conditionings' μ.
    /// </summary>
    public static float[] TargetLatents(ReadOnlySpan<float> promptEmbeds, ReadOnlySpan<float> pooled, float guidance, int height, int width, FlowTestModelOptions options)
    {
        if (height < 1 || width < 1) throw new ArgumentException($"The latent size {height}×{width} must be positive.");
        var z = ChannelTargets(promptEmbeds, pooled, guidance, options);
        var t = FlowTestModelGraphs.Transformer(options.JointAttentionDim, options.PooledWidth);
        var mu = new float[LatentChannels * height * width];
        for (int ch = 0; ch < LatentChannels; ch++)
            for (int r = 0; r < height; r++)
                for (int q = 0; q < width; q++)
                    mu[(ch * height + r) * width + q] = z[ch] + t.RowGain[ch] * (r / PositionScale) + t.ColumnGain[ch] * (q / PositionScale);
        return mu;
    }

    /// <summary>
    /// FLUX's μ in the packed layout for arbitrary <paramref name="imageIds"/> ([N × 3]) and <paramref name="textIds"/>
    /// ([T × 3]) ([N × 64]): what the graph computes, so tests can show that wrong ids change the answer.
    /// </summary>
    public static float[] PackedTargets(ReadOnlySpan<float> promptEmbeds, ReadOnlySpan<float> pooled, float guidance,
        ReadOnlySpan<float> imageIds, ReadOnlySpan<float> textIds, FlowTestModelOptions options)
    {
        if (imageIds.Length % 3 != 0 || textIds.Length % 3 != 0 || textIds.Length == 0)
            throw new ArgumentException("img_ids and txt_ids are rows of 3 values.");
        double idSum = 0;
        foreach (var v in textIds) idSum += v;
        var z = ChannelTargets(promptEmbeds, pooled, guidance, options, (float)(idSum / textIds.Length));
        var t = FlowTestModelGraphs.Transformer(options.JointAttentionDim, options.PooledWidth);
        int n = imageIds.Length / 3;
        var mu = new float[n * PackedChannels];
        for (int token = 0; token < n; token++)
            for (int e = 0; e < PackedChannels; e++)
            {
                int ch = e / 4;
                float r = 2 * imageIds[token * 3 + 1] + e / 2 % 2, q = 2 * imageIds[token * 3 + 2] + e % 2;
                mu[token * PackedChannels + e] = z[ch] + t.RowGain[ch] * (r / PositionScale) + t.ColumnGain[ch] * (q / PositionScale);
            }
        return mu;
    }

    /// <summary>The oracle's velocity v = (x − μ)/max(σ, <see cref="MinSigma"/>) elementwise (any layout, μ in the same
    /// layout as <paramref name="sample"/>).</summary>
    public static float[] Velocity(ReadOnlySpan<float> sample, float sigma, ReadOnlySpan<float> target)
    {
        if (sample.Length != target.Length) throw new ArgumentException($"{sample.Length} sample values and {target.Length} target values.");
        float s = MathF.Max(sigma, MinSigma);
        var v = new float[sample.Length];
        for (int i = 0; i < v.Length; i++) v[i] = (sample[i] - target[i]) / s;
        return v;
    }

    /// <summary>σ from the transformer's <c>timestep</c> input: timestep/1000 (SD3) or timestep (FLUX).</summary>
    public static float SigmaOfTimestep(float timestep, FlowTestModelOptions options) => options.IsFlux ? timestep : timestep / 1000f;

    /// <summary>Packs [16, h, w] latents into FLUX's [(h/2)(w/2), 64] tokens (diffusers' <c>_pack_latents</c>).</summary>
    public static float[] Pack(ReadOnlySpan<float> latents, int height, int width)
    {
        var packed = new float[latents.Length];
        LatentPacking.Pack(latents, packed, 1, LatentChannels, height, width);
        return packed;
    }

    /// <summary>Unpacks FLUX's [(h/2)(w/2), 64] tokens into [16, h, w] latents.</summary>
    public static float[] Unpack(ReadOnlySpan<float> packed, int height, int width)
    {
        var latents = new float[packed.Length];
        LatentPacking.Unpack(packed, latents, 1, LatentChannels, height, width);
        return latents;
    }

    /// <summary>diffusers' <c>img_ids</c> for [h, w] latents: [(h/2)(w/2) × 3] rows (0, i, j).</summary>
    public static float[] ImageIds(int height, int width) => LatentPacking.ImageIds(height, width);

    // ---- Closed forms: VAE --------------------------------------------------------------------------

    /// <summary>The VAE decoder's <c>sample</c> [3, 8h, 8w] for one <c>latent_sample</c> [16, h, w]:
    /// s·(latent[c] − shift) for c = 0, 1, 2, nearest-upsampled ×8, not clamped.</summary>
    public static float[] DecoderOutput(ReadOnlySpan<float> latentSample, int height, int width, FlowTestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (latentSample.Length != LatentChannels * height * width) throw new ArgumentException($"Expected 16×{height}×{width} latents, got {latentSample.Length} values.", nameof(latentSample));
        float s = options.ResolvedScalingFactor, shift = options.ResolvedShiftFactor;
        int oh = height * 8, ow = width * 8;
        var image = new float[3 * oh * ow];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++)
                    image[(c * oh + y) * ow + x] = (latentSample[(c * height + y / 8) * width + x / 8] - shift) * s;
        return image;
    }

    /// <summary>The image [3, 8h, 8w] (before clamping) the pipeline decodes from final latents z [16, h, w]: the decoder
    /// of z/s + shift, as diffusers calls <c>vae.decode</c>.</summary>
    public static float[] DecodedImage(ReadOnlySpan<float> latents, int height, int width, FlowTestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        float s = options.ResolvedScalingFactor, shift = options.ResolvedShiftFactor;
        var input = new float[latents.Length];
        for (int i = 0; i < input.Length; i++) input[i] = latents[i] / s + shift;
        return DecoderOutput(input, height, width, options);
    }

    /// <summary>The VAE encoder's mean [16, H/8, W/8] for one image [3, H, W]: channel k the 8×8 block average of image
    /// channel k mod 3, ÷ s, + shift (<c>latent_sample</c>, and the first 16 channels of <c>latent_parameters</c>).</summary>
    public static float[] EncoderOutput(ReadOnlySpan<float> image, int height, int width, FlowTestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (image.Length != 3 * height * width || height % 8 != 0 || width % 8 != 0)
            throw new ArgumentException($"Expected a 3×H×W image with H and W multiples of 8 (got {image.Length} values for {height}×{width}).", nameof(image));
        float s = options.ResolvedScalingFactor, shift = options.ResolvedShiftFactor;
        int h = height / 8, w = width / 8;
        var latent = new float[LatentChannels * h * w];
        for (int k = 0; k < LatentChannels; k++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    double sum = 0;
                    for (int dy = 0; dy < 8; dy++)
                        for (int dx = 0; dx < 8; dx++)
                            sum += image[((k % 3) * height + y * 8 + dy) * width + x * 8 + dx];
                    latent[(k * h + y) * w + x] = (float)(sum / 64 / s + shift);
                }
        return latent;
    }

    // ---- Folder files -------------------------------------------------------------------------------

    private static XlTestModelOptions Clip(FlowTestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.ClipOptions;
    }

    private static JsonObject ModelIndex(FlowTestModelOptions o)
    {
        static JsonArray Entry(string library, string type) => new(library, type);
        static JsonArray None() => new(null, null);
        using var scheduler = JsonDocument.Parse(o.ResolvedSchedulerConfigJson);
        string schedulerClass = scheduler.RootElement.TryGetProperty("_class_name", out var name) ? name.GetString()! : "FlowMatchEulerDiscreteScheduler";
        if (o.IsFlux)
        {
            return new JsonObject
            {
                ["_class_name"] = o.PipelineClassName ?? "FluxPipeline",
                ["_diffusers_version"] = "0.30.0.dev0",
                ["scheduler"] = Entry("diffusers", schedulerClass),
                ["text_encoder"] = Entry("transformers", "CLIPTextModel"),
                ["text_encoder_2"] = Entry("transformers", "T5EncoderModel"),
                ["tokenizer"] = Entry("transformers", "CLIPTokenizer"),
                ["tokenizer_2"] = Entry("transformers", "T5TokenizerFast"),
                ["transformer"] = Entry("diffusers", "FluxTransformer2DModel"),
                ["vae_decoder"] = Entry("diffusers", "AutoencoderKL"),
                ["vae_encoder"] = Entry("diffusers", "AutoencoderKL"),
            };
        }
        return new JsonObject
        {
            ["_class_name"] = o.PipelineClassName ?? "StableDiffusion3Pipeline",
            ["_diffusers_version"] = "0.29.0.dev0",
            ["scheduler"] = Entry("diffusers", schedulerClass),
            ["text_encoder"] = Entry("transformers", "CLIPTextModelWithProjection"),
            ["text_encoder_2"] = Entry("transformers", "CLIPTextModelWithProjection"),
            ["text_encoder_3"] = o.IncludeT5 ? Entry("transformers", "T5EncoderModel") : None(),
            ["tokenizer"] = Entry("transformers", "CLIPTokenizer"),
            ["tokenizer_2"] = Entry("transformers", "CLIPTokenizer"),
            ["tokenizer_3"] = o.IncludeT5 ? Entry("transformers", "T5TokenizerFast") : None(),
            ["transformer"] = Entry("diffusers", "SD3Transformer2DModel"),
            ["vae_decoder"] = Entry("diffusers", "AutoencoderKL"),
            ["vae_encoder"] = Entry("diffusers", "AutoencoderKL"),
        };
    }

    private static JsonObject ClipConfig(string architecture, int width, int layers, int projection) => new()
    {
        ["architectures"] = new JsonArray(architecture),
        ["hidden_size"] = width,
        ["max_position_embeddings"] = TestTokenizer.MaxLength,
        ["model_type"] = "clip_text_model",
        ["num_hidden_layers"] = layers,
        ["projection_dim"] = projection,
        ["vocab_size"] = TestTokenizer.Vocabulary.Count,
    };

    private static JsonObject TransformerConfig(FlowTestModelOptions o)
    {
        if (o.IsFlux)
        {
            return new JsonObject
            {
                ["_class_name"] = "FluxTransformer2DModel",
                ["_diffusers_version"] = "0.30.0.dev0",
                ["attention_head_dim"] = 8,
                ["axes_dims_rope"] = new JsonArray(2, 3, 3),
                ["guidance_embeds"] = o.HasGuidance,
                ["in_channels"] = PackedChannels,
                ["joint_attention_dim"] = o.JointAttentionDim,
                ["num_attention_heads"] = 1,
                ["num_layers"] = 1,
                ["num_single_layers"] = 1,
                ["patch_size"] = 1,
                ["pooled_projection_dim"] = o.PooledWidth,
            };
        }
        return new JsonObject
        {
            ["_class_name"] = "SD3Transformer2DModel",
            ["_diffusers_version"] = "0.29.0.dev0",
            ["attention_head_dim"] = 8,
            ["caption_projection_dim"] = 8,
            ["in_channels"] = LatentChannels,
            ["joint_attention_dim"] = o.JointAttentionDim,
            ["num_attention_heads"] = 1,
            ["num_layers"] = 1,
            ["out_channels"] = LatentChannels,
            ["patch_size"] = 2,
            ["pooled_projection_dim"] = o.PooledWidth,
            ["pos_embed_max_size"] = 192,
            ["sample_size"] = o.SampleSize,
        };
    }

    private static void Validate(FlowTestModelOptions o)
    {
        if (o.ClipLWidth < 4 || o.ClipGWidth < 4)
            throw new ArgumentException($"CLIP widths must be at least 4 (got {o.ClipLWidth} and {o.ClipGWidth}).", nameof(o));
        if (o.ClipLLayers < 2 || o.ClipGLayers < 2)
            throw new ArgumentException($"ClipLLayers and ClipGLayers must be at least 2, so the penultimate hidden state is a layer's output (got {o.ClipLLayers} and {o.ClipGLayers}).", nameof(o));
        if (o.ClipLProjectionWidth < 1 || o.ClipGProjectionWidth < 1)
            throw new ArgumentException($"Projection widths must be positive (got {o.ClipLProjectionWidth} and {o.ClipGProjectionWidth}).", nameof(o));
        if (!o.IsFlux && o.JointAttentionDim < o.ClipLWidth + o.ClipGWidth)
            throw new ArgumentException($"SD3 zero-pads the CLIP states (D1 + D2 = {o.ClipLWidth + o.ClipGWidth}) to JointAttentionDim, which is {o.JointAttentionDim}: raise it.", nameof(o));
        if (o.JointAttentionDim < 1) throw new ArgumentException($"JointAttentionDim must be positive, not {o.JointAttentionDim}.", nameof(o));
        if (o.SampleSize < 2 || (o.IsFlux && o.SampleSize % 2 != 0))
            throw new ArgumentException($"SampleSize must be at least 2 (and even for FLUX's 2×2 patches), not {o.SampleSize}.", nameof(o));
        if (o.TransformerStaticBatch is < 1) throw new ArgumentException($"TransformerStaticBatch must be positive, not {o.TransformerStaticBatch}.", nameof(o));
        if (o.TransformerStaticSequenceLength is < 1) throw new ArgumentException($"TransformerStaticSequenceLength must be positive, not {o.TransformerStaticSequenceLength}.", nameof(o));
        if (o.T5ModelMaxLength < 1) throw new ArgumentException($"T5ModelMaxLength must be positive, not {o.T5ModelMaxLength}.", nameof(o));
        if (!(o.ResolvedScalingFactor > 0)) throw new ArgumentException($"ScalingFactor must be positive, not {o.ResolvedScalingFactor}.", nameof(o));
        if (o.IsFlux && !o.IncludeT5) throw new ArgumentException("IncludeT5 false is an SD3 layout; FLUX always has its T5 encoder (text_encoder_2).", nameof(o));
    }

    private static void WriteJson(string path, JsonObject value) => TestModelFolders.WriteJson(path, value);
}

/// <summary>A temporary folder holding an SD3 or FLUX test model; disposing deletes it.</summary>
public sealed class FlowTempModelFolder(FlowTestModelOptions options) : TempTestModelFolder<FlowTestModelOptions>(options, "mlnd-flowtestmodel-");


using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>
/// Writes a complete, tiny Stable Diffusion ONNX model folder (diffusers layout) whose components have
/// closed forms, so the whole generation path runs in CI in seconds and its results can be predicted.
/// </summary>
/// <remarks>
/// <para><b>Text encoder</b> (<see cref="TextHiddenStates"/>): for token id <c>t_p</c> at position p and
/// channel d, <c>h[p,d] = (A[t_p mod 61, d] + B[t_p mod 67, d])·S[p,d] + P[p,d]</c> with fixed
/// pseudo-random tables (A, B uniform in [−1, 1), S in [−1, 1), P in [−⅛, ⅛)); no two ids below 61·67 share
/// an embedding, and positions matter (S, P), so different prompts, orders and the empty prompt all differ.
/// <c>pooler_output</c> is the mean of <c>last_hidden_state</c> over positions.</para>
/// <para><b>UNet</b>: an exact denoiser for data that is one point per prompt,
/// <c>z(c)[ch] = tanh(Σ_d mean_p(c[p,d])·W[d,ch])</c> for ch = 0…3 broadcast over h×w
/// (<see cref="TargetLatent"/>, W a fixed pseudo-random D×4 matrix scaled by 16/√D). With
/// x = sample channels 0–3 and ᾱ the scheduler config's ᾱ at the (possibly fractional) timestep — σ
/// interpolated linearly between ⌊t⌋ and ⌊t⌋ + 1, t clamped to [0, N − 1], ᾱ = 1/(1 + σ²), exact at
/// integers — it outputs ε̂ = (x − √ᾱ·z)/√(1 − ᾱ) (epsilon), z (sample), or
/// v = √ᾱ·ε̂ − √(1 − ᾱ)·z = (√ᾱ·x − z)/√(1 − ᾱ) (v_prediction). Each batch row takes its own timestep
/// (a [1] or rank-0 timestep is shared). A deterministic scheduler driven by it ends at latents ≈ z.
/// With <see cref="TestModelOptions.DataStd"/> s &gt; 0 it is instead the exact denoiser for data N(z, s²) per
/// element: ε̂ = √(1 − ᾱ)·r/D, x̂₀ = z + √ᾱ·s²·r/D with r = x − √ᾱ·z, D = ᾱs² + 1 − ᾱ (s = 0 is the case above).</para>
/// <para><b>Inpainting UNet</b> (9 channels: x ++ mask m ++ masked-image latents M, in that order):
/// z = m·z(c) + (1 − m)·M per element (<see cref="InpaintTarget"/>), so generation gives the text target
/// where the mask is 1 and keeps the masked-image latents where it is 0. A wrong channel order blends with a
/// latent channel as the mask and is visible at once.</para>
/// <para><b>VAE</b> (s = <see cref="TestModelOptions.ScalingFactor"/>): the decoder outputs
/// <c>sample = s·latent_sample[:, 0..2]</c>, nearest-upsampled ×8 and not clamped (<see cref="DecoderOutput"/>);
/// the encoder outputs the 8×8 average pool of the image's three channels plus their mean as a fourth
/// channel, divided by s (<see cref="EncoderOutput"/>). So the engine's scaled latents (encoder × s, and
/// ÷ s before decoding) are in pixel units: a latent value z decodes to pixel value z (the engine clamps
/// to [−1, 1]), and encode-then-decode returns the block-averaged image.</para>
/// </remarks>
public static class TestModelFactory
{
    /// <summary>The size of the first text-encoder table (token id mod this).</summary>
    public const int TableA = 61;
    /// <summary>The size of the second text-encoder table (token id mod this).</summary>
    public const int TableB = 67;
    /// <summary>The log-variance the <see cref="VaeEncoderForm.LatentParameters"/> encoder outputs (σ = e^−10).</summary>
    public const float EncoderLogVariance = -20f;
    /// <summary>The gain of the target projection W (entries uniform in [−1, 1)·gain/√D).</summary>
    public const float TargetGain = 16f;

    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes the model folder into <paramref name="directory"/> (created if needed) and returns its full path.</summary>
    public static string Create(string directory, TestModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Validate(options);
        string root = Path.GetFullPath(directory);
        Directory.CreateDirectory(root);

        var schedulerJson = SchedulerJson(options);
        var scheduler = SchedulerConfig.Parse(schedulerJson, "test model scheduler config");
        string schedulerClass = scheduler.ClassName ?? "PNDMScheduler";

        WriteJson(Path.Combine(root, "model_index.json"), new JsonObject
        {
            ["_class_name"] = options.UnetInChannels == 9 ? "OnnxStableDiffusionInpaintPipeline" : "OnnxStableDiffusionPipeline",
            ["_diffusers_version"] = "0.6.0",
            ["feature_extractor"] = new JsonArray(null, null),
            ["requires_safety_checker"] = false,
            ["safety_checker"] = new JsonArray(null, null),
            ["scheduler"] = new JsonArray("diffusers", schedulerClass),
            ["text_encoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
            ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
            ["unet"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
            ["vae_decoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
            ["vae_encoder"] = new JsonArray("diffusers", "OnnxRuntimeModel"),
        });

        Directory.CreateDirectory(Path.Combine(root, "scheduler"));
        File.WriteAllText(Path.Combine(root, "scheduler", "scheduler_config.json"), schedulerJson);

        TestTokenizer.Write(Path.Combine(root, "tokenizer"), options.PadToken);

        string? textExternal = options.ExternalWeights == "model.onnx_data" ? options.ExternalWeights : null;
        TestModelGraphs.TextEncoder(options).Save(Path.Combine(root, "text_encoder", "model.onnx"), textExternal);

        TestModelGraphs.Unet(options, AlphasCumprod(scheduler)).Save(Path.Combine(root, "unet", "model.onnx"), options.ExternalWeights);
        WriteJson(Path.Combine(root, "unet", "config.json"), new JsonObject
        {
            ["_class_name"] = "UNet2DConditionModel",
            ["cross_attention_dim"] = options.EmbeddingWidth,
            ["in_channels"] = options.UnetInChannels,
            ["out_channels"] = 4,
            ["sample_size"] = options.SampleSize,
        });

        foreach (var part in new[] { "vae_decoder", "vae_encoder" })
        {
            var graph = part == "vae_decoder" ? TestModelGraphs.VaeDecoder(options) : TestModelGraphs.VaeEncoder(options);
            graph.Save(Path.Combine(root, part, "model.onnx"));
            WriteJson(Path.Combine(root, part, "config.json"), new JsonObject
            {
                ["_class_name"] = "AutoencoderKL",
                ["latent_channels"] = 4,
                ["sample_size"] = options.SampleSize * 8,
                ["scaling_factor"] = options.ScalingFactor,
            });
        }
        return root;
    }

    /// <summary>Writes the model folder into a new temporary folder that deletes itself when disposed.</summary>
    public static TempModelFolder CreateTemp(TestModelOptions? options = null)
    {
        options ??= new TestModelOptions();
        var folder = new TempModelFolder(options);
        return TestModelFolders.WriteInto(folder, folder.Path, path => Create(path, options));
    }

    /// <summary>
    /// A broken folder: the model is written, then <paramref name="relativePath"/> (a component folder such
    /// as "unet", or a file such as "tokenizer/vocab.json", "model_index.json" or, with external weights,
    /// "unet/weights.pb") is deleted.
    /// </summary>
    public static string CreateWithout(string directory, string relativePath, TestModelOptions? options = null)
    {
        return TestModelFolders.Remove(Create(directory, options ?? new TestModelOptions()), relativePath, "test model");
    }

    /// <summary>
    /// A broken folder: a valid model except that unet/model.onnx takes <c>sample</c> as rank 3
    /// [batch, 4, "hw"] (and returns it as <c>out_sample</c>), so an engine must reject it by its metadata.
    /// </summary>
    public static string CreateWithWrongSampleRank(string directory, TestModelOptions? options = null)
    {
        options ??= new TestModelOptions();
        string root = Create(directory, options);
        foreach (var file in Directory.GetFiles(Path.Combine(root, "unet"))) File.Delete(file);
        TestModelGraphs.RankThreeUnet(options).Save(Path.Combine(root, "unet", "model.onnx"));
        return root;
    }

    /// <summary>A broken folder: <paramref name="relativePath"/> (e.g. "unet/model.onnx") replaced by bytes that are not ONNX.</summary>
    public static string CreateWithCorruptFile(string directory, string relativePath, TestModelOptions? options = null)
    {
        string root = Create(directory, options ?? new TestModelOptions());
        string target = Path.GetFullPath(Path.Combine(root, relativePath));
        if (!File.Exists(target)) throw new ArgumentException($"The test model has no file '{relativePath}'.", nameof(relativePath));
        File.WriteAllBytes(target, "this is not an ONNX model"u8.ToArray());
        return root;
    }

    // ---- Closed forms -------------------------------------------------------------------------------

    /// <summary>
    /// The text encoder's <c>last_hidden_state</c> for one row of token ids: [ids.Length × D] row-major.
    /// </summary>
    public static float[] TextHiddenStates(ReadOnlySpan<long> ids, int embeddingWidth = 768)
    {
        var t = TestModelGraphs.Tables(embeddingWidth);
        if (ids.Length > TestTokenizer.MaxLength) throw new ArgumentException($"At most {TestTokenizer.MaxLength} ids.", nameof(ids));
        int d = embeddingWidth;
        var h = new float[ids.Length * d];
        for (int p = 0; p < ids.Length; p++)
        {
            int a = (int)(ids[p] % TableA), b = (int)(ids[p] % TableB);
            for (int k = 0; k < d; k++)
                h[p * d + k] = (t.A[a * d + k] + t.B[b * d + k]) * t.S[p * d + k] + t.P[p * d + k];
        }
        return h;
    }

    /// <summary>The text encoder's <c>pooler_output</c> for one row: the mean of <see cref="TextHiddenStates"/> over positions.</summary>
    public static float[] PooledOutput(ReadOnlySpan<long> ids, int embeddingWidth = 768)
    {
        var h = TextHiddenStates(ids, embeddingWidth);
        var pooled = new float[embeddingWidth];
        for (int k = 0; k < embeddingWidth; k++)
        {
            double sum = 0;
            for (int p = 0; p < ids.Length; p++) sum += h[p * embeddingWidth + k];
            pooled[k] = (float)(sum / ids.Length);
        }
        return pooled;
    }

    /// <summary>
    /// The UNet's target latent z(c) for one row of <c>encoder_hidden_states</c> ([L × D] row-major, L = 77):
    /// z[ch] = tanh(Σ_d mean_p(c[p,d])·W[d,ch]), ch = 0…3. The latent is z[ch] at every pixel of channel ch.
    /// </summary>
    public static float[] TargetLatent(ReadOnlySpan<float> hiddenStates, int embeddingWidth)
    {
        if (embeddingWidth <= 0 || hiddenStates.Length == 0 || hiddenStates.Length % embeddingWidth != 0)
            throw new ArgumentException($"{hiddenStates.Length} values are not rows of width {embeddingWidth}.", nameof(hiddenStates));
        int d = embeddingWidth, len = hiddenStates.Length / d;
        var w = TestModelGraphs.Tables(d).W;
        var z = new float[4];
        for (int ch = 0; ch < 4; ch++)
        {
            double pre = 0;
            for (int k = 0; k < d; k++)
            {
                double mean = 0;
                for (int p = 0; p < len; p++) mean += hiddenStates[p * d + k];
                pre += mean / len * w[k * 4 + ch];
            }
            z[ch] = (float)Math.Tanh(pre);
        }
        return z;
    }

    /// <summary>The target latent for 77 × D hidden states (D = length / 77).</summary>
    public static float[] TargetLatent(float[] hiddenStates)
    {
        ArgumentNullException.ThrowIfNull(hiddenStates);
        return TargetLatent(hiddenStates, hiddenStates.Length / TestTokenizer.MaxLength);
    }

    /// <summary>The target latent of a row of token ids (text encoder, then <see cref="TargetLatent(ReadOnlySpan{float}, int)"/>).</summary>
    public static float[] TargetLatentForIds(ReadOnlySpan<long> ids, int embeddingWidth = 768) =>
        TargetLatent(TextHiddenStates(ids, embeddingWidth), embeddingWidth);

    /// <summary>The target latent of a prompt, tokenized with <see cref="TestTokenizer.Encode"/>.</summary>
    public static float[] TargetLatentForPrompt(string prompt, TestModelOptions? options = null)
    {
        options ??= new TestModelOptions();
        return TargetLatentForIds(TestTokenizer.Encode(prompt, options.PadToken), options.EmbeddingWidth);
    }

    /// <summary>A 4-value target broadcast to a [4, h, w] latent (row-major), e.g. as a GaussianOracle mean.</summary>
    public static float[] ExpandTarget(ReadOnlySpan<float> target, int height, int width)
    {
        if (target.Length != 4) throw new ArgumentException("The target has 4 channels.", nameof(target));
        var z = new float[4 * height * width];
        for (int ch = 0; ch < 4; ch++) z.AsSpan(ch * height * width, height * width).Fill(target[ch]);
        return z;
    }

    /// <summary>
    /// The inpainting UNet's target for one image: z = m·target + (1 − m)·M per element, with the mask
    /// m [h × w] (UNet input channel 4) and the masked-image latents M [4 × h × w] (channels 5–8).
    /// </summary>
    public static float[] InpaintTarget(ReadOnlySpan<float> target, ReadOnlySpan<float> mask, ReadOnlySpan<float> maskedImageLatents, int height, int width)
    {
        int hw = height * width;
        if (target.Length != 4 || mask.Length != hw || maskedImageLatents.Length != 4 * hw)
            throw new ArgumentException("Expected a 4-value target, an h×w mask and 4×h×w masked-image latents.");
        var z = new float[4 * hw];
        for (int ch = 0; ch < 4; ch++)
            for (int i = 0; i < hw; i++)
            {
                float m = maskedImageLatents[ch * hw + i];
                z[ch * hw + i] = m + mask[i] * (target[ch] - m);
            }
        return z;
    }

    /// <summary>
    /// The VAE decoder's output for one latent [4, h, w] (what the engine passes, i.e. its latents ÷ s):
    /// [3, 8h, 8w] with pixel (c, y, x) = s·latent[c, y/8, x/8], not clamped.
    /// </summary>
    public static float[] DecoderOutput(ReadOnlySpan<float> latentSample, int height, int width, float scalingFactor = 0.18215f)
    {
        if (latentSample.Length != 4 * height * width) throw new ArgumentException("Expected 4×h×w latents.", nameof(latentSample));
        int ow = width * 8, oh = height * 8;
        var image = new float[3 * oh * ow];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++)
                    image[(c * oh + y) * ow + x] = scalingFactor * latentSample[(c * height + y / 8) * width + x / 8];
        return image;
    }

    /// <summary>
    /// The VAE encoder's latent mean for one image [3, H, W] (H, W multiples of 8): [4, H/8, W/8] with
    /// channel c &lt; 3 the 8×8 block average of image channel c, channel 3 the mean of those three, all ÷ s.
    /// This is <c>latent_sample</c>, and the first four channels of <c>latent_parameters</c> (the other
    /// four are <see cref="EncoderLogVariance"/>).
    /// </summary>
    public static float[] EncoderOutput(ReadOnlySpan<float> image, int height, int width, float scalingFactor = 0.18215f)
    {
        if (image.Length != 3 * height * width || height % 8 != 0 || width % 8 != 0)
            throw new ArgumentException("Expected a 3×H×W image with H and W multiples of 8.", nameof(image));
        int h = height / 8, w = width / 8;
        var latent = new float[4 * h * w];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                double all = 0;
                for (int c = 0; c < 3; c++)
                {
                    double sum = 0;
                    for (int dy = 0; dy < 8; dy++)
                        for (int dx = 0; dx < 8; dx++)
                            sum += image[(c * height + y * 8 + dy) * width + x * 8 + dx];
                    double mean = sum / 64;
                    all += mean;
                    latent[(c * h + y) * w + x] = (float)(mean / scalingFactor);
                }
                latent[(3 * h + y) * w + x] = (float)(all / 3 / scalingFactor);
            }
        return latent;
    }

    /// <summary>ᾱ_t (t = 0 … N − 1) of a scheduler configuration, as the UNet's table is built from it.</summary>
    public static double[] AlphasCumprod(SchedulerConfig config)
    {
        int n = config.GetInt("num_train_timesteps", 1000);
        return SchedulerMath.AlphasCumprod(SchedulerMath.Betas(config, n));
    }

    private static string SchedulerJson(TestModelOptions options)
    {
        var node = JsonNode.Parse(options.SchedulerConfigJson) as JsonObject
            ?? throw new ArgumentException("SchedulerConfigJson must be a JSON object.", nameof(options));
        // SD 1.5's file has no prediction_type (epsilon by default): keep it that way unless told otherwise.
        if (options.PredictionType != "epsilon" || node.ContainsKey("prediction_type"))
            node["prediction_type"] = options.PredictionType;
        return node.ToJsonString(s_json);
    }

    private static void Validate(TestModelOptions o)
    {
        if (o.IdType is not (OnnxElementType.Int32 or OnnxElementType.Int64))
            throw new ArgumentException($"IdType must be Int32 or Int64, not {o.IdType}.", nameof(o));
        if (o.EmbeddingWidth < 4) throw new ArgumentException("EmbeddingWidth must be at least 4.", nameof(o));
        if (o.ExternalWeights is not (null or "weights.pb" or "model.onnx_data"))
            throw new ArgumentException($"ExternalWeights must be null, weights.pb or model.onnx_data, not '{o.ExternalWeights}'.", nameof(o));
        if (o.PredictionType is not ("epsilon" or "v_prediction" or "sample"))
            throw new ArgumentException($"PredictionType must be epsilon, v_prediction or sample, not '{o.PredictionType}'.", nameof(o));
        if (o.UnetInChannels is not (4 or 9)) throw new ArgumentException("UnetInChannels must be 4 or 9.", nameof(o));
        if (!(o.ScalingFactor > 0)) throw new ArgumentException("ScalingFactor must be positive.", nameof(o));
        if (o.SampleSize < 1) throw new ArgumentException("SampleSize must be positive.", nameof(o));
        if (o.UnetSlowdown < 0 || o.VaeDecoderSlowdown < 0) throw new ArgumentException("Slowdowns must be 0 or more.", nameof(o));
    }

    private static void WriteJson(string path, JsonObject value) => TestModelFolders.WriteJson(path, value);
}

/// <summary>A temporary folder holding a test model; disposing deletes it.</summary>
public sealed class TempModelFolder(TestModelOptions options) : TempTestModelFolder<TestModelOptions>(options, "mlnd-testmodel-");


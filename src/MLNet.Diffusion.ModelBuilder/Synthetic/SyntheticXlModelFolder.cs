using System.Globalization;
using System.Text.Json.Nodes;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Synthetic;

/// <summary>
/// Writes a complete diffusers-layout SDXL base folder with SDXL's contract: <c>tokenizer/</c> and <c>tokenizer_2/</c> (the
/// second pads with <c>!</c>, id 0), <c>text_encoder/</c> (<c>input_ids</c> → <c>last_hidden_state</c>, <c>pooler_output</c>,
/// <c>hidden_states.0</c> … <c>hidden_states.L</c>, [B, 77, 768]), <c>text_encoder_2/</c> (→ <c>text_embeds</c> [B, 1280],
/// <c>last_hidden_state</c>, <c>hidden_states.*</c> [B, 77, 1280]), a UNet taking <c>sample</c> [B, 4, h, w],
/// <c>timestep</c> float [B], <c>encoder_hidden_states</c> [B, 77, 2048], <c>text_embeds</c> [B, 1280] and <c>time_ids</c>
/// [B, 6], SDXL's Euler scheduler configuration, sample_size 128 and the VAE scaling factor 0.13025. As
/// <see cref="SyntheticModelFolder"/>, its UNet costs what a real one costs per pixel in kind: 3×3 convolutions at full
/// latent resolution, self-attention and cross-attention to the 2048-wide context at half resolution (SDXL's first
/// attention level), and SDXL's added embedding. Weights are random (seeded); the folder is for measuring the engine.
/// </summary>
/// <remarks>
/// The added embedding follows diffusers' <c>UNet2DConditionModel</c> with <c>addition_embed_type="text_time"</c>: each of
/// the 6 time ids becomes 256 sinusoidal features (<c>Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)</c>:
/// [cos, sin] of t·exp(−ln(10000)·k/128)), concatenated after the pooled embedding (2816 values), then linear → SiLU →
/// linear (<c>add_embedding</c>), added to the time embedding.
/// </remarks>
public static class SyntheticXlModelFolder
{
    /// <summary>SDXL base's <c>scheduler/scheduler_config.json</c> (Euler, leading spacing, as released).</summary>
    public const string SdxlSchedulerConfig =
        """{"_class_name":"EulerDiscreteScheduler","_diffusers_version":"0.19.0.dev0","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"clip_sample":false,"interpolation_type":"linear","num_train_timesteps":1000,"prediction_type":"epsilon","sample_max_value":1.0,"set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"timestep_spacing":"leading","trained_betas":null,"use_karras_sigmas":false}""";

    /// <summary>The time ids of SDXL base: original size, crop top-left, target size.</summary>
    public const int TimeIds = 6;

    /// <summary>Sinusoidal features per time id (unet/config.json's <c>addition_time_embed_dim</c>).</summary>
    public const int TimeIdFeatures = 256;

    /// <summary>The attention block's resolution is the latents' / 2, as SDXL's first attention level.</summary>
    internal const int AttentionStride = 2;

    /// <summary>Writes the folder into <paramref name="directory"/> (created if needed) and returns its full path.</summary>
    public static string Write(string directory, SyntheticXlModelOptions? options = null)
    {
        options ??= new SyntheticXlModelOptions();
        SyntheticModelFolder.CheckOptions(options.Core, nameof(options));
        if (options.TextEncoderWidth < 8 || options.TextEncoder2Width < 8 || options.EncoderLayers < 2)
            throw new ArgumentException($"TextEncoderWidth ≥ 8, TextEncoder2Width ≥ 8 and EncoderLayers ≥ 2 (a penultimate hidden state) are required; got {options}.", nameof(options));
        string root = Path.GetFullPath(directory);
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, "model_index.json"),
            """{"_class_name":"StableDiffusionXLPipeline","_diffusers_version":"0.19.0.dev0","force_zeros_for_empty_prompt":true,"scheduler":["diffusers","EulerDiscreteScheduler"],"text_encoder":["transformers","CLIPTextModel"],"text_encoder_2":["transformers","CLIPTextModelWithProjection"],"tokenizer":["transformers","CLIPTokenizer"],"tokenizer_2":["transformers","CLIPTokenizer"],"unet":["diffusers","UNet2DConditionModel"],"vae_decoder":["diffusers","OnnxRuntimeModel"]}""");
        Directory.CreateDirectory(Path.Combine(root, "scheduler"));
        File.WriteAllText(Path.Combine(root, "scheduler", "scheduler_config.json"), SdxlSchedulerConfig);
        ClipVocabularyWriter.Write(Path.Combine(root, "tokenizer"));
        ClipVocabularyWriter.Write(Path.Combine(root, "tokenizer_2"));
        SetPadToken(Path.Combine(root, "tokenizer_2"), "!"); // as SDXL's tokenizer_2: "!" is id 0 in CLIP's vocabulary

        var random = new WeightRandom(options.Seed);
        SyntheticModelFolder.TextEncoderGraph(options.TextEncoderWidth, options.EncoderLayers, hiddenStates: true, projectPooled: false, random)
            .Save(Path.Combine(root, "text_encoder", "model.onnx"));
        SyntheticModelFolder.TextEncoderGraph(options.TextEncoder2Width, options.EncoderLayers, hiddenStates: true, projectPooled: true, random)
            .Save(Path.Combine(root, "text_encoder_2", "model.onnx"));
        UNet(options, random).Save(Path.Combine(root, "unet", "model.onnx"));
        File.WriteAllText(Path.Combine(root, "unet", "config.json"), string.Create(CultureInfo.InvariantCulture,
            $$"""{"_class_name":"UNet2DConditionModel","addition_embed_type":"text_time","addition_time_embed_dim":{{TimeIdFeatures}},"cross_attention_dim":{{options.ContextWidth}},"in_channels":4,"out_channels":4,"projection_class_embeddings_input_dim":{{options.AddedEmbeddingInputWidth}},"sample_size":{{options.SampleSize}},"time_cond_proj_dim":null}"""));
        SyntheticModelFolder.WriteVaeDecoder(root, random, options.SampleSize, "\"force_upcast\":true,\"scaling_factor\":0.13025");
        return root;
    }

    /// <summary>The UNet graph alone: <see cref="SyntheticModelFolder.UNetGraph"/> with attention at half resolution and SDXL's added embedding.</summary>
    public static OnnxGraphBuilder UNet(SyntheticXlModelOptions options, WeightRandom random) =>
        SyntheticModelFolder.UNetGraph(options.Core, random, AttentionStride, (g, r, c) => AddedEmbedding(g, r, c, options.TextEncoder2Width));

    /// <summary>Declares <c>text_embeds</c> [B, P] and <c>time_ids</c> [B, 6]; returns add_embedding(concat(text_embeds, sinusoids(time_ids))) [B, C].</summary>
    private static string AddedEmbedding(OnnxGraphBuilder g, WeightRandom random, int c, int pooledWidth)
    {
        var textEmbeds = g.Input("text_embeds", OnnxElementType.Float, "batch", pooledWidth);
        var timeIds = g.Input("time_ids", OnnxElementType.Float, "batch", TimeIds);
        const int half = TimeIdFeatures / 2;
        var freqs = new float[half];
        for (int k = 0; k < half; k++) freqs[k] = MathF.Exp(-MathF.Log(10000f) * k / half);
        var phase = g.Mul(g.Unsqueeze(timeIds, 2), g.Initializer("add_time_freqs", freqs, 1, 1, half)); // [B, 6, 128]
        var features = g.Reshape(g.Concat(2, g.Cos(phase), g.Sin(phase)), 0, -1);                       // [B, 6·256]
        var addEmbeds = g.Concat(1, textEmbeds, features);                                              // [B, P + 1536]
        int inputWidth = pooledWidth + TimeIds * TimeIdFeatures;
        var hidden = g.Silu(g.Add(g.MatMul(addEmbeds, SyntheticModelFolder.Dense(g, random, "add_w1", inputWidth, c, 1)), SyntheticModelFolder.Zeros(g, "add_b1", c)));
        return g.Add(g.MatMul(hidden, SyntheticModelFolder.Dense(g, random, "add_w2", c, c, 1)), SyntheticModelFolder.Zeros(g, "add_b2", c));
    }

    /// <summary>Sets <c>pad_token</c> in the tokenizer folder's <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c>.</summary>
    internal static void SetPadToken(string tokenizerDirectory, string padToken)
    {
        foreach (var name in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            string path = Path.Combine(tokenizerDirectory, name);
            var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            json["pad_token"] = padToken;
            File.WriteAllText(path, json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        }
    }
}

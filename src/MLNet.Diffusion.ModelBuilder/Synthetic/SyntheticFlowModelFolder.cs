using System.Globalization;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Synthetic;

/// <summary>
/// Writes complete diffusers-layout folders of the flow-matching transformers with their contracts, random (seeded) weights
/// and a transformer that costs what a real one costs per token in kind if not in amount: a patch embedding, joint
/// attention over all image and text tokens and a 4·C MLP per block, and an output projection. The folders are for
/// measuring the engine (overhead per step, allocations, memory), not for pictures.
/// </summary>
/// <remarks>
/// <para>Stable Diffusion 3 (<see cref="WriteSd3"/>): <c>tokenizer/</c>, <c>tokenizer_2/</c> (CLIP, the second padding with
/// <c>!</c>), <c>text_encoder/</c> and <c>text_encoder_2/</c> (CLIPTextModelWithProjection: <c>text_embeds</c>,
/// <c>last_hidden_state</c>, <c>hidden_states.0</c> … <c>hidden_states.L</c>), <c>tokenizer_3/spiece.model</c> and
/// <c>text_encoder_3/</c> (T5: <c>input_ids</c> int64 [B, T] → <c>last_hidden_state</c> [B, T, J]), <c>transformer/</c>
/// (<c>hidden_states</c> [B, 16, h, w], <c>encoder_hidden_states</c> [B, 77 + T, J], <c>pooled_projections</c> [B, 2048],
/// <c>timestep</c> [B] → <c>out_hidden_states</c> [B, 16, h, w]), a 16-channel <c>vae_decoder/</c> with SD3's
/// <c>scaling_factor</c> 1.5305 and <c>shift_factor</c> 0.0609, and SD3's FlowMatchEulerDiscreteScheduler (<c>shift</c> 3.0).</para>
/// <para>FLUX.1 (<see cref="WriteFlux"/>): <c>tokenizer/</c> and <c>text_encoder/</c> (CLIPTextModel: <c>pooler_output</c>
/// [B, 768]), <c>tokenizer_2/spiece.model</c> and <c>text_encoder_2/</c> (T5), <c>transformer/</c> (<c>hidden_states</c>
/// packed 2×2 patches [B, (h/2)(w/2), 64], <c>encoder_hidden_states</c> [B, T, J], <c>pooled_projections</c> [B, 768],
/// <c>timestep</c> (σ) [B], <c>img_ids</c> [(h/2)(w/2), 3], <c>txt_ids</c> [T, 3], and for dev <c>guidance</c> [B] →
/// <c>out_hidden_states</c> [B, (h/2)(w/2), 64]), a 16-channel VAE (0.3611, 0.1159), and the scheduler of dev (dynamic
/// shifting) or schnell (<c>shift</c> 1.0).</para>
/// <para>Transformer: image tokens from a 2×2 stride-2 convolution 16 → C (SD3's patch embedding) or a linear 64 → C
/// (FLUX's packed tokens, plus sin(ids·W) position features); text tokens a linear J → C; a conditioning vector
/// SiLU(time + pooled (+ guidance) embeddings) shifts each block's input; each block x += attention(rms(x)) over the
/// text and image tokens together, x += W₂·SiLU(W₁·rms(x)); the image tokens' rms-normalised states → linear C → 64 → tanh
/// (a bounded velocity), unpacked for SD3 by depth-to-space to [B, 16, h, w].</para>
/// </remarks>
public static class SyntheticFlowModelFolder
{
    /// <summary>Stable Diffusion 3's <c>scheduler/scheduler_config.json</c>.</summary>
    public const string Sd3SchedulerConfig =
        """{"_class_name":"FlowMatchEulerDiscreteScheduler","_diffusers_version":"0.29.0.dev0","num_train_timesteps":1000,"shift":3.0}""";

    /// <summary>FLUX.1-dev's <c>scheduler/scheduler_config.json</c> (dynamic shifting from the image's token count).</summary>
    public const string FluxDevSchedulerConfig =
        """{"_class_name":"FlowMatchEulerDiscreteScheduler","_diffusers_version":"0.30.0.dev0","base_image_seq_len":256,"base_shift":0.5,"max_image_seq_len":4096,"max_shift":1.15,"num_train_timesteps":1000,"shift":3.0,"use_dynamic_shifting":true}""";

    /// <summary>FLUX.1-schnell's <c>scheduler/scheduler_config.json</c> (<c>shift</c> 1.0, no dynamic shifting).</summary>
    public const string FluxSchnellSchedulerConfig =
        """{"_class_name":"FlowMatchEulerDiscreteScheduler","_diffusers_version":"0.30.0.dev0","base_image_seq_len":256,"base_shift":0.5,"max_image_seq_len":4096,"max_shift":1.15,"num_train_timesteps":1000,"shift":1.0,"use_dynamic_shifting":false}""";

    /// <summary>The latent channels of SD3's and FLUX.1's VAE.</summary>
    public const int LatentChannels = 16;

    /// <summary>The values of one packed token: a 2×2 patch of the 16 latent channels.</summary>
    public const int PackedTokenWidth = 4 * LatentChannels;

    /// <summary>The pieces of the embedded T5 tokenizer model (its ids are below this).</summary>
    public const int T5Vocabulary = 400;

    private const string SpieceResource = "MLNet.Diffusion.ModelBuilder.Synthetic.spiece.model";

    /// <summary>Writes a Stable Diffusion 3 folder into <paramref name="directory"/> (created if needed) and returns its full path.</summary>
    public static string WriteSd3(string directory, SyntheticFlowModelOptions? options = null)
    {
        options ??= new SyntheticFlowModelOptions();
        options.Check(nameof(options));
        string root = Path.GetFullPath(directory);
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, "model_index.json"),
            """{"_class_name":"StableDiffusion3Pipeline","_diffusers_version":"0.29.0.dev0","scheduler":["diffusers","FlowMatchEulerDiscreteScheduler"],"text_encoder":["transformers","CLIPTextModelWithProjection"],"text_encoder_2":["transformers","CLIPTextModelWithProjection"],"text_encoder_3":["transformers","T5EncoderModel"],"tokenizer":["transformers","CLIPTokenizer"],"tokenizer_2":["transformers","CLIPTokenizer"],"tokenizer_3":["transformers","T5TokenizerFast"],"transformer":["diffusers","SD3Transformer2DModel"],"vae":["diffusers","AutoencoderKL"]}""");
        WriteScheduler(root, Sd3SchedulerConfig);
        ClipVocabularyWriter.Write(Path.Combine(root, "tokenizer"));
        ClipVocabularyWriter.Write(Path.Combine(root, "tokenizer_2"));
        SyntheticXlModelFolder.SetPadToken(Path.Combine(root, "tokenizer_2"), "!"); // as SD3's tokenizer_2
        WriteT5Tokenizer(Path.Combine(root, "tokenizer_3"));

        var random = new WeightRandom(options.Seed);
        SyntheticModelFolder.TextEncoderGraph(options.TextEncoderWidth, options.EncoderLayers, hiddenStates: true, projectPooled: true, random)
            .Save(Path.Combine(root, "text_encoder", "model.onnx"));
        SyntheticModelFolder.TextEncoderGraph(options.TextEncoder2Width, options.EncoderLayers, hiddenStates: true, projectPooled: true, random)
            .Save(Path.Combine(root, "text_encoder_2", "model.onnx"));
        T5Encoder(options.T5Width, options.T5Layers, random).Save(Path.Combine(root, "text_encoder_3", "model.onnx"));
        Transformer(options, random, packed: false, guidance: false).Save(Path.Combine(root, "transformer", "model.onnx"));
        File.WriteAllText(Path.Combine(root, "transformer", "config.json"), string.Create(CultureInfo.InvariantCulture,
            $$"""{"_class_name":"SD3Transformer2DModel","in_channels":{{LatentChannels}},"joint_attention_dim":{{options.T5Width}},"num_layers":{{options.Blocks}},"out_channels":{{LatentChannels}},"patch_size":2,"pooled_projection_dim":{{options.Sd3PooledWidth}},"sample_size":{{options.SampleSize}}}"""));
        SyntheticModelFolder.WriteVaeDecoder(root, random, options.SampleSize, "\"scaling_factor\":1.5305,\"shift_factor\":0.0609", LatentChannels);
        return root;
    }

    /// <summary>
    /// Writes a FLUX.1 folder into <paramref name="directory"/> (created if needed) and returns its full path: dev (a
    /// <c>guidance</c> input and dynamic shifting) when <paramref name="dev"/>, else schnell.
    /// </summary>
    public static string WriteFlux(string directory, SyntheticFlowModelOptions? options = null, bool dev = true)
    {
        options ??= new SyntheticFlowModelOptions();
        options.Check(nameof(options));
        string root = Path.GetFullPath(directory);
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, "model_index.json"),
            """{"_class_name":"FluxPipeline","_diffusers_version":"0.30.0.dev0","scheduler":["diffusers","FlowMatchEulerDiscreteScheduler"],"text_encoder":["transformers","CLIPTextModel"],"text_encoder_2":["transformers","T5EncoderModel"],"tokenizer":["transformers","CLIPTokenizer"],"tokenizer_2":["transformers","T5TokenizerFast"],"transformer":["diffusers","FluxTransformer2DModel"],"vae":["diffusers","AutoencoderKL"]}""");
        WriteScheduler(root, dev ? FluxDevSchedulerConfig : FluxSchnellSchedulerConfig);
        ClipVocabularyWriter.Write(Path.Combine(root, "tokenizer"));
        WriteT5Tokenizer(Path.Combine(root, "tokenizer_2"));

        var random = new WeightRandom(options.Seed);
        SyntheticModelFolder.TextEncoderGraph(options.TextEncoderWidth, options.EncoderLayers, hiddenStates: false, projectPooled: false, random)
            .Save(Path.Combine(root, "text_encoder", "model.onnx"));
        T5Encoder(options.T5Width, options.T5Layers, random).Save(Path.Combine(root, "text_encoder_2", "model.onnx"));
        Transformer(options, random, packed: true, guidance: dev).Save(Path.Combine(root, "transformer", "model.onnx"));
        File.WriteAllText(Path.Combine(root, "transformer", "config.json"), string.Create(CultureInfo.InvariantCulture,
            $$"""{"_class_name":"FluxTransformer2DModel","guidance_embeds":{{(dev ? "true" : "false")}},"in_channels":{{PackedTokenWidth}},"joint_attention_dim":{{options.T5Width}},"num_layers":{{options.Blocks}},"patch_size":1,"pooled_projection_dim":{{options.TextEncoderWidth}}}"""));
        SyntheticModelFolder.WriteVaeDecoder(root, random, options.SampleSize, "\"scaling_factor\":0.3611,\"shift_factor\":0.1159", LatentChannels);
        return root;
    }

    /// <summary>
    /// The T5 encoder: <c>input_ids</c> int64 [B, T] → token embeddings of width <paramref name="width"/> (the embedded
    /// tokenizer's <see cref="T5Vocabulary"/> pieces), <paramref name="layers"/> layers x ← tanh(x·W) → <c>last_hidden_state</c> [B, T, width].
    /// </summary>
    public static OnnxGraphBuilder T5Encoder(int width, int layers, WeightRandom random)
    {
        var g = new OnnxGraphBuilder("synthetic_t5_encoder");
        var ids = g.Input("input_ids", OnnxElementType.Int64, "batch", "sequence");
        var hidden = g.Gather(g.Initializer("t5_token_embedding", random.Uniform(T5Vocabulary * width, 1), T5Vocabulary, width), ids);
        for (int layer = 1; layer <= layers; layer++)
            hidden = g.Tanh(g.MatMul(hidden, SyntheticModelFolder.Dense(g, random, $"t5_layer{layer}", width, width, 1)));
        g.Identity(hidden, "last_hidden_state");
        g.Output("last_hidden_state", OnnxElementType.Float, "batch", "sequence", width);
        return g;
    }

    /// <summary>
    /// The transformer graph: SD3's (<paramref name="packed"/> false: <c>hidden_states</c> [B, 16, h, w]) or FLUX.1's
    /// (packed tokens [B, N, 64] with <c>img_ids</c> and <c>txt_ids</c>, and <c>guidance</c> when <paramref name="guidance"/>).
    /// </summary>
    public static OnnxGraphBuilder Transformer(SyntheticFlowModelOptions o, WeightRandom random, bool packed, bool guidance)
    {
        int c = o.Width, j = o.T5Width, pooledWidth = packed ? o.TextEncoderWidth : o.Sd3PooledWidth;
        var g = new OnnxGraphBuilder("synthetic_transformer");
        var hidden = packed
            ? g.Input("hidden_states", OnnxElementType.Float, "batch", "image_tokens", PackedTokenWidth)
            : g.Input("hidden_states", OnnxElementType.Float, "batch", LatentChannels, "height", "width");
        var context = g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "text_tokens", j);
        var pooled = g.Input("pooled_projections", OnnxElementType.Float, "batch", pooledWidth);
        var timestep = g.Input("timestep", OnnxElementType.Float, "batch");

        // Conditioning: SD3 takes 1000·σ; FLUX.1 takes σ and multiplies by 1000 inside (as its transformer does), as it
        // does the guidance scale.
        var t = packed ? g.Mul(timestep, g.Scalar(1000f)) : timestep;
        var cond = g.MatMul(Sinusoids(g, t, "time_freqs"), SyntheticModelFolder.Dense(g, random, "time_w", 32, c, 1));
        cond = g.Add(cond, g.MatMul(pooled, SyntheticModelFolder.Dense(g, random, "pooled_w", pooledWidth, c, 1)));
        string? imagePositions = null, textPositions = null;
        if (packed)
        {
            var imgIds = g.Input("img_ids", OnnxElementType.Float, "image_tokens", 3);
            var txtIds = g.Input("txt_ids", OnnxElementType.Float, "text_tokens", 3);
            var positionW = SyntheticModelFolder.Dense(g, random, "position_w", 3, c, 1);
            imagePositions = g.Sin(g.MatMul(imgIds, positionW)); // [N, C], broadcast over the batch
            textPositions = g.Sin(g.MatMul(txtIds, positionW));
            if (guidance)
            {
                var scale = g.Input("guidance", OnnxElementType.Float, "batch");
                cond = g.Add(cond, g.MatMul(Sinusoids(g, g.Mul(scale, g.Scalar(1000f)), "guidance_freqs"), SyntheticModelFolder.Dense(g, random, "guidance_w", 32, c, 1)));
            }
        }
        cond = g.Silu(cond); // [B, C]

        // Image tokens [B, N, C]: SD3's patch embedding (a 2×2 convolution of stride 2) or FLUX's linear layer over packed tokens.
        string image, patches = "";
        if (packed)
            image = g.Add(g.MatMul(hidden, SyntheticModelFolder.Dense(g, random, "x_embedder", PackedTokenWidth, c, 1)), imagePositions!);
        else
        {
            patches = g.Conv(hidden, SyntheticModelFolder.ConvWeights(g, random, "pos_embed", c, LatentChannels, 2, 1), SyntheticModelFolder.Zeros(g, "pos_embed_b", c), strides: [2, 2]);
            image = g.Transpose(g.Reshape(patches, 0, c, -1), 0, 2, 1);
        }
        var text = g.MatMul(context, SyntheticModelFolder.Dense(g, random, "context_embedder", j, c, 1));
        if (packed) text = g.Add(text, textPositions!);
        var imageTokens = g.Slice(g.Node("Shape", [image]), [1], [2], [0]);
        var x = g.Concat(1, image, text); // [B, N + S, C]: image tokens first, so that they are sliced back by N

        var scaleQk = g.Scalar(1 / MathF.Sqrt(c));
        for (int b = 0; b < o.Blocks; b++)
        {
            x = g.Add(x, g.Unsqueeze(g.MatMul(cond, SyntheticModelFolder.Dense(g, random, $"block{b}_mod", c, c, 0.5f)), 1));
            var n = RmsNorm(g, x);
            var q = g.MatMul(n, SyntheticModelFolder.Dense(g, random, $"block{b}_q", c, c, 1));
            var k = g.MatMul(n, SyntheticModelFolder.Dense(g, random, $"block{b}_k", c, c, 1));
            var v = g.MatMul(n, SyntheticModelFolder.Dense(g, random, $"block{b}_v", c, c, 1));
            var scores = g.Mul(g.MatMul(q, g.Transpose(k, 0, 2, 1)), scaleQk);                // [B, N + S, N + S]
            x = g.Add(x, g.MatMul(g.MatMul(g.Softmax(scores, -1), v), SyntheticModelFolder.Dense(g, random, $"block{b}_o", c, c, 0.5f)));
            var m = g.Silu(g.MatMul(RmsNorm(g, x), SyntheticModelFolder.Dense(g, random, $"block{b}_mlp1", c, 4 * c, 1)));
            x = g.Add(x, g.MatMul(m, SyntheticModelFolder.Dense(g, random, $"block{b}_mlp2", 4 * c, c, 0.5f)));
        }
        var imageOut = g.Node("Slice", [x, g.Longs(0), imageTokens, g.Longs(1)]);              // [B, N, C]
        var velocity = g.Tanh(g.MatMul(RmsNorm(g, imageOut), SyntheticModelFolder.Dense(g, random, "proj_out", c, PackedTokenWidth, 1)));
        if (packed)
        {
            g.Identity(velocity, "out_hidden_states");
            g.Output("out_hidden_states", OnnxElementType.Float, "batch", "image_tokens", PackedTokenWidth);
        }
        else
        {
            // [B, N, 64] → [B, 64, h/2, w/2] → depth-to-space → [B, 16, h, w].
            var grid = g.Concat(0, g.Longs(0, PackedTokenWidth), g.Slice(g.Node("Shape", [patches]), [2], [4], [0]));
            var planes = g.Node("Reshape", [g.Transpose(velocity, 0, 2, 1), grid]);
            g.NodeNamed("DepthToSpace", [planes], "out_hidden_states", ("blocksize", 2L));
            g.Output("out_hidden_states", OnnxElementType.Float, "batch", LatentChannels, "height", "width");
        }
        return g;
    }

    /// <summary>[sin(t·f), cos(t·f)] with f_i = 10000^(−i/16): [B] → [B, 32].</summary>
    private static string Sinusoids(OnnxGraphBuilder g, string t, string name)
    {
        var freqs = new float[16];
        for (int i = 0; i < 16; i++) freqs[i] = MathF.Exp(-MathF.Log(10000f) * i / 16);
        var phase = g.Mul(g.Unsqueeze(t, 1), g.Initializer(name, freqs, 1, 16));
        return g.Concat(1, g.Sin(phase), g.Cos(phase));
    }

    /// <summary>x / √(mean(x²) + 10⁻⁶) over the last axis.</summary>
    private static string RmsNorm(OnnxGraphBuilder g, string x) =>
        g.Div(x, g.Sqrt(g.Add(g.ReduceMean(g.Mul(x, x), [-1]), g.Scalar(1e-6f))));

    private static void WriteScheduler(string root, string config)
    {
        Directory.CreateDirectory(Path.Combine(root, "scheduler"));
        File.WriteAllText(Path.Combine(root, "scheduler", "scheduler_config.json"), config);
    }

    /// <summary>Writes the embedded SentencePiece model as <c>spiece.model</c> into <paramref name="directory"/>.</summary>
    private static void WriteT5Tokenizer(string directory)
    {
        Directory.CreateDirectory(directory);
        using var source = typeof(SyntheticFlowModelFolder).Assembly.GetManifestResourceStream(SpieceResource)
            ?? throw new InvalidOperationException($"The resource '{SpieceResource}' is missing from {typeof(SyntheticFlowModelFolder).Assembly.GetName().Name}: rebuild the ModelBuilder project.");
        using var target = File.Create(Path.Combine(directory, "spiece.model"));
        source.CopyTo(target);
    }
}

using System.Globalization;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Synthetic;

/// <summary>
/// Writes a complete diffusers-layout Stable Diffusion folder with SD 1.5's contract (<c>input_ids</c> int32
/// [B, 77]; UNet <c>sample</c> [B, 4, h, w], <c>timestep</c> float [B], <c>encoder_hidden_states</c> [B, 77, 768];
/// SD 1.5's PNDM scheduler configuration; sample_size 64) whose UNet costs what a real one costs per pixel in
/// kind if not in amount: a stack of 3×3 convolutions at full latent resolution, self-attention over all h·w
/// latent pixels projected to a small width, and cross-attention to the text. Weights are random (seeded), so
/// images are noise-like; the folder is for measuring the engine, not for pictures.
/// </summary>
/// <remarks>
/// UNet: t-embedding (SD's sinusoidal features → linear → SiLU, added per channel) after a 3×3 conv 4 → C;
/// <see cref="SyntheticModelOptions.ResidualBlocks"/> blocks h += conv3×3(SiLU(h)) (C → C), the attention block
/// after the first half; conv3×3 C → 4 and tanh (a bounded ε). Text encoder: token and position embeddings,
/// one D×D projection and tanh. VAE decoder: 1×1 conv 4 → 3, nearest ×8, 3×3 conv, tanh.
/// </remarks>
public static class SyntheticModelFolder
{
    /// <summary>SD 1.5's <c>scheduler/scheduler_config.json</c> (PNDM).</summary>
    public const string Sd15SchedulerConfig =
        """{"_class_name":"PNDMScheduler","_diffusers_version":"0.6.0","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,"set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"trained_betas":null,"clip_sample":false}""";

    /// <summary>Writes the folder into <paramref name="directory"/> (created if needed) and returns its full path.</summary>
    public static string Write(string directory, SyntheticModelOptions? options = null)
    {
        options ??= new SyntheticModelOptions();
        CheckOptions(options, nameof(options));
        string root = Path.GetFullPath(directory);
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, "model_index.json"),
            """{"_class_name":"OnnxStableDiffusionPipeline","_diffusers_version":"0.6.0","scheduler":["diffusers","PNDMScheduler"],"text_encoder":["diffusers","OnnxRuntimeModel"],"tokenizer":["transformers","CLIPTokenizer"],"unet":["diffusers","OnnxRuntimeModel"],"vae_decoder":["diffusers","OnnxRuntimeModel"]}""");
        Directory.CreateDirectory(Path.Combine(root, "scheduler"));
        File.WriteAllText(Path.Combine(root, "scheduler", "scheduler_config.json"), Sd15SchedulerConfig);
        ClipVocabularyWriter.Write(Path.Combine(root, "tokenizer")); // the demo model's CLIP-format vocabulary

        var random = new WeightRandom(options.Seed);
        TextEncoder(options, random).Save(Path.Combine(root, "text_encoder", "model.onnx"));
        UNet(options, random).Save(Path.Combine(root, "unet", "model.onnx"));
        File.WriteAllText(Path.Combine(root, "unet", "config.json"), string.Create(CultureInfo.InvariantCulture,
            $$"""{"_class_name":"UNet2DConditionModel","cross_attention_dim":{{options.EmbeddingWidth}},"in_channels":4,"out_channels":4,"sample_size":{{options.SampleSize}}}"""));
        WriteVaeDecoder(root, random, options.SampleSize, "\"scaling_factor\":0.18215");
        return root;
    }

    /// <summary>Writes <c>vae_decoder/</c>: <see cref="VaeDecoder"/> and a config.json with <paramref name="scalingEntries"/>
    /// (the scaling factor and, for SDXL, <c>force_upcast</c>).</summary>
    internal static void WriteVaeDecoder(string root, WeightRandom random, int sampleSize, string scalingEntries, int latentChannels = 4)
    {
        VaeDecoderGraph(random, latentChannels).Save(Path.Combine(root, "vae_decoder", "model.onnx"));
        File.WriteAllText(Path.Combine(root, "vae_decoder", "config.json"), string.Create(CultureInfo.InvariantCulture,
            $$"""{"_class_name":"AutoencoderKL","latent_channels":{{latentChannels}},"sample_size":{{sampleSize * 8}},{{scalingEntries}}}"""));
    }

    /// <summary>Checks the sizes every synthetic UNet needs.</summary>
    internal static void CheckOptions(SyntheticModelOptions options, string parameterName)
    {
        if (options.Channels < 4 || options.ResidualBlocks < 2 || options.AttentionWidth < 1 || options.EmbeddingWidth < 8 || options.SampleSize < 1)
            throw new ArgumentException($"Channels ≥ 4, ResidualBlocks ≥ 2, AttentionWidth ≥ 1, EmbeddingWidth ≥ 8 and SampleSize ≥ 1 are required; got {options}.", parameterName);
    }

    /// <summary>The bytes of all .onnx files under <paramref name="directory"/> (the model size).</summary>
    public static long ModelBytes(string directory) =>
        Directory.EnumerateFiles(directory, "*.onnx", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);

    /// <summary>The UNet graph alone.</summary>
    public static OnnxGraphBuilder UNet(SyntheticModelOptions o, WeightRandom random) => UNetGraph(o, random, attentionStride: 1, addedEmbedding: null);

    /// <summary>
    /// The UNet graph: <paramref name="attentionStride"/> is the factor by which the attention block's resolution is below
    /// the latents' (1: SD 1.5, whose first attention level is at full latent resolution; 2: SDXL, whose first level has
    /// no attention and whose second is at half resolution); <paramref name="addedEmbedding"/>, when given, declares the
    /// extra inputs after the core three and returns a [B, C] embedding added to the time embedding before its SiLU
    /// (diffusers' <c>emb = emb + aug_emb</c>).
    /// </summary>
    internal static OnnxGraphBuilder UNetGraph(SyntheticModelOptions o, WeightRandom random, int attentionStride,
        Func<OnnxGraphBuilder, WeightRandom, int, string>? addedEmbedding)
    {
        int c = o.Channels, d = o.AttentionWidth, e = o.EmbeddingWidth;
        var g = new OnnxGraphBuilder("synthetic_unet");
        var sample = g.Input("sample", OnnxElementType.Float, "batch", 4, "height", "width");
        var timestep = g.Input("timestep", OnnxElementType.Float, "batch");
        var context = g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "sequence", e);

        // Time embedding: [sin(t·f), cos(t·f)] with SD's frequencies f_i = 10000^(−i/16), a linear layer, SiLU.
        var freqs = new float[16];
        for (int i = 0; i < 16; i++) freqs[i] = MathF.Exp(-MathF.Log(10000f) * i / 16);
        var phase = g.Mul(g.Unsqueeze(timestep, 1), g.Initializer("time_freqs", freqs, 1, 16));
        var features = g.Concat(1, g.Sin(phase), g.Cos(phase));
        var embedding = g.Add(g.MatMul(features, Dense(g, random, "time_w", 32, c, 1)), Zeros(g, "time_b", c));
        if (addedEmbedding is not null) embedding = g.Add(embedding, addedEmbedding(g, random, c));
        var temb = g.Silu(embedding);

        var h = SameConv(g, sample, ConvWeights(g, random, "conv_in", c, 4, 3, 1), Zeros(g, "conv_in_b", c), 3);
        h = g.Add(h, g.Unsqueeze(temb, 2, 3));
        for (int block = 0; block < o.ResidualBlocks; block++)
        {
            var r = SameConv(g, g.Silu(h), ConvWeights(g, random, $"res{block}", c, c, 3, 0.5f), Zeros(g, $"res{block}_b", c), 3);
            h = g.Add(h, r);
            if (block == o.ResidualBlocks / 2 - 1) h = g.Add(h, Attention(g, random, h, context, c, d, e, attentionStride));
        }
        var output = SameConv(g, g.Silu(h), ConvWeights(g, random, "conv_out", 4, c, 3, 1), Zeros(g, "conv_out_b", 4), 3);
        g.NodeNamed("Tanh", [output], "out_sample");
        g.Output("out_sample", OnnxElementType.Float, "batch", 4, "height", "width");
        if (o.Float16) g.ConvertToFloat16();
        return g;
    }

    /// <summary>
    /// Self-attention over the latent pixels and cross-attention to the text, both at width d, at 1/<paramref name="stride"/>
    /// of the latent resolution (average-pooled, then nearest-upsampled back to h's size, so odd sizes work too): returns
    /// the residual to add to h.
    /// </summary>
    private static string Attention(OnnxGraphBuilder g, WeightRandom random, string h, string context, int c, int d, int e, int stride)
    {
        var x = stride == 1 ? h : g.Node("AveragePool", [h], ("kernel_shape", new long[] { stride, stride }), ("strides", new long[] { stride, stride }), ("ceil_mode", 1L));
        var tokens = g.Transpose(g.Reshape(x, 0, c, -1), 0, 2, 1); // [B, N, C]
        var scale = g.Scalar(1 / MathF.Sqrt(d));
        var q = g.MatMul(tokens, Dense(g, random, "attn_q", c, d, 1));
        var k = g.MatMul(tokens, Dense(g, random, "attn_k", c, d, 1));
        var v = g.MatMul(tokens, Dense(g, random, "attn_v", c, d, 1));
        var scores = g.Mul(g.MatMul(q, g.Transpose(k, 0, 2, 1)), scale);              // [B, N, N]
        var self = g.MatMul(g.MatMul(g.Softmax(scores, -1), v), Dense(g, random, "attn_o", d, c, 0.5f));
        var q2 = g.MatMul(tokens, Dense(g, random, "xattn_q", c, d, 1));
        var k2 = g.MatMul(context, Dense(g, random, "xattn_k", e, d, 1));            // [B, 77, d]
        var v2 = g.MatMul(context, Dense(g, random, "xattn_v", e, d, 1));
        var crossScores = g.Mul(g.MatMul(q2, g.Transpose(k2, 0, 2, 1)), scale);      // [B, N, 77]
        var cross = g.MatMul(g.MatMul(g.Softmax(crossScores, -1), v2), Dense(g, random, "xattn_o", d, c, 0.5f));
        var residual = g.Node("Reshape", [g.Transpose(g.Add(self, cross), 0, 2, 1), g.Node("Shape", [x])]);
        return stride == 1 ? residual
            : g.Node("Resize", [residual, "", "", g.Node("Shape", [h])],
                ("mode", "nearest"), ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor"));
    }

    /// <summary>The text encoder: token + position embeddings, a D×D projection, tanh; pooled output = mean over positions.</summary>
    public static OnnxGraphBuilder TextEncoder(SyntheticModelOptions o, WeightRandom random) =>
        TextEncoderGraph(o.EmbeddingWidth, layers: 1, hiddenStates: false, projectPooled: false, random);

    /// <summary>
    /// A text encoder of width <paramref name="width"/>: token + position embeddings (<c>hidden_states.0</c>), then
    /// <paramref name="layers"/> layers x ← tanh(x·W) (<c>hidden_states.1</c> … <c>hidden_states.L</c> when
    /// <paramref name="hiddenStates"/>); <c>last_hidden_state</c> is the last layer's output; pooled = mean over positions,
    /// as <c>pooler_output</c> (CLIPTextModel) or, with <paramref name="projectPooled"/>, projected by a width × width matrix
    /// as <c>text_embeds</c> (CLIPTextModelWithProjection).
    /// </summary>
    internal static OnnxGraphBuilder TextEncoderGraph(int width, int layers, bool hiddenStates, bool projectPooled, WeightRandom random)
    {
        int e = width;
        var g = new OnnxGraphBuilder("synthetic_text_encoder");
        var ids = g.Input("input_ids", OnnxElementType.Int32, "batch", "sequence");
        int vocabulary = ClipVocabularyWriter.Tokens().Count;
        var tokens = g.Gather(g.Initializer("token_embedding", random.Uniform(vocabulary * e, 1), vocabulary, e), g.Cast(ids, OnnxElementType.Int64));
        var positions = g.Initializer("position_embedding", random.Uniform(77 * e, 0.5f), 77, e);
        var hidden = g.Add(tokens, positions);
        for (int layer = 0; layer <= layers; layer++)
        {
            if (layer > 0) hidden = g.Tanh(g.MatMul(hidden, Dense(g, random, $"layer{layer}", e, e, 1)));
            if (!hiddenStates) continue;
            string name = string.Create(CultureInfo.InvariantCulture, $"hidden_states.{layer}");
            g.Identity(hidden, name);
            g.Output(name, OnnxElementType.Float, "batch", "sequence", e);
        }
        g.Identity(hidden, "last_hidden_state");
        g.Output("last_hidden_state", OnnxElementType.Float, "batch", "sequence", e);
        if (projectPooled)
        {
            var pooled = g.ReduceMean(hidden, [1], keepDims: false);
            g.NodeNamed("MatMul", [pooled, Dense(g, random, "text_projection", e, e, 1)], "text_embeds");
            g.Output("text_embeds", OnnxElementType.Float, "batch", e);
        }
        else
        {
            g.NodeNamed("ReduceMean", [hidden], "pooler_output", ("axes", new long[] { 1 }), ("keepdims", 0L));
            g.Output("pooler_output", OnnxElementType.Float, "batch", e);
        }
        return g;
    }

    /// <summary>The VAE decoder: 1×1 conv 4 → 3, nearest ×8 upsampling, a 3×3 conv 3 → 3, tanh.</summary>
    public static OnnxGraphBuilder VaeDecoder(WeightRandom random) => VaeDecoderGraph(random, 4);

    /// <summary>The VAE decoder of <paramref name="latentChannels"/> latent channels (16 for SD3 and FLUX.1): a 1×1 conv to 3, nearest ×8, a 3×3 conv, tanh.</summary>
    internal static OnnxGraphBuilder VaeDecoderGraph(WeightRandom random, int latentChannels)
    {
        var g = new OnnxGraphBuilder("synthetic_vae_decoder");
        var latent = g.Input("latent_sample", OnnxElementType.Float, "batch", latentChannels, "height", "width");
        var rgb = SameConv(g, latent, ConvWeights(g, random, "vae_mix", 3, latentChannels, 1, 1), Zeros(g, "vae_mix_b", 3), 1);
        var up = g.Node("Resize", [rgb, "", g.Initializer("vae_scales", [1f, 1f, 8f, 8f], 4)],
            ("mode", "nearest"), ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor"));
        var smooth = SameConv(g, up, ConvWeights(g, random, "vae_smooth", 3, 3, 3, 1), Zeros(g, "vae_smooth_b", 3), 3);
        g.NodeNamed("Tanh", [smooth], "sample");
        g.Output("sample", OnnxElementType.Float, "batch", 3, "image_height", "image_width");
        return g;
    }

    /// <summary>A stride-1 convolution with "same" zero padding.</summary>
    internal static string SameConv(OnnxGraphBuilder g, string x, string weights, string bias, int kernel) =>
        g.Conv(x, weights, bias, pads: [kernel / 2, kernel / 2, kernel / 2, kernel / 2]);

    internal static string ConvWeights(OnnxGraphBuilder g, WeightRandom random, string name, int cout, int cin, int k, float gain) =>
        g.Initializer(name, random.Uniform(cout * cin * k * k, gain * MathF.Sqrt(3f / (cin * k * k))), cout, cin, k, k);

    internal static string Dense(OnnxGraphBuilder g, WeightRandom random, string name, int rows, int cols, float gain) =>
        g.Initializer(name, random.Uniform(rows * cols, gain * MathF.Sqrt(3f / rows)), rows, cols);

    internal static string Zeros(OnnxGraphBuilder g, string name, int n) => g.Initializer(name, new float[n], n);
}

/// <summary>Seeded uniform weights (SplitMix64), identical on every machine.</summary>
public sealed class WeightRandom(int seed)
{
    private ulong _state = (ulong)seed * 0x9E3779B97F4A7C15UL;

    /// <summary><paramref name="count"/> values uniform in [−<paramref name="limit"/>, <paramref name="limit"/>).</summary>
    public float[] Uniform(int count, float limit)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            values[i] = ((int)(z >> 40) / 8388608f - 1f) * limit;
        }
        return values;
    }
}

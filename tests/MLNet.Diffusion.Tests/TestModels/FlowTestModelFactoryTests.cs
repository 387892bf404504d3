using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Tokenization;

using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;
using static MLNet.Diffusion.Tests.TestModels.OnnxGraphTestKit;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>
/// The SD3 and FLUX.1 test folders: layout and configs, each graph's declared inputs per exporter convention, each
/// graph's outputs against the closed forms of <see cref="FlowTestModelFactory"/> (run directly in ONNX Runtime), and the
/// oracle property: hand-run flow-matching Euler steps through the transformer land on μ.
/// </summary>
public class FlowTestModelFactoryTests
{
    // ---- helpers ------------------------------------------------------------------------------------

    private static OrtValue Ids(long[] ids, OnnxElementType type, long[] shape) =>
        type == OnnxElementType.Int64
            ? OrtValue.CreateTensorValueFromMemory(ids, shape)
            : OrtValue.CreateTensorValueFromMemory(Array.ConvertAll(ids, i => (int)i), shape);


    private static float[] Concat(params float[][] parts) => [.. parts.SelectMany(p => p)];

    /// <summary>FlowMatchEulerDiscreteScheduler's σ: linspace(1, 1/1000, n) shifted by s (or dynamically with μ), then 0.</summary>
    private static float[] Sigmas(int steps, double shift, double? dynamicMu = null)
    {
        var sigmas = new float[steps + 1];
        for (int i = 0; i < steps; i++)
        {
            double s = 1 - i * (1 - 1.0 / 1000) / Math.Max(steps - 1, 1);
            sigmas[i] = (float)(dynamicMu is double mu ? Math.Exp(mu) / (Math.Exp(mu) + (1 / s - 1)) : shift * s / (1 + (shift - 1) * s));
        }
        return sigmas;
    }

    private static TensorElementType Element(bool fp16) => fp16 ? TensorElementType.Float16 : TensorElementType.Float;

    // ---- folders ------------------------------------------------------------------------------------

    [Fact]
    public void Sd3FolderFollowsTheDiffusersLayout()
    {
        var o = new FlowTestModelOptions();
        using var model = FlowTestModelFactory.CreateTemp(o);
        var index = ReadJson(model.Path, "model_index.json");
        Assert.Equal("StableDiffusion3Pipeline", index.GetProperty("_class_name").GetString());
        foreach (var (part, type) in new[]
        {
            ("text_encoder", "CLIPTextModelWithProjection"), ("text_encoder_2", "CLIPTextModelWithProjection"), ("text_encoder_3", "T5EncoderModel"),
            ("tokenizer", "CLIPTokenizer"), ("tokenizer_2", "CLIPTokenizer"), ("tokenizer_3", "T5TokenizerFast"),
            ("transformer", "SD3Transformer2DModel"), ("vae_decoder", "AutoencoderKL"), ("vae_encoder", "AutoencoderKL"),
            ("scheduler", "FlowMatchEulerDiscreteScheduler"),
        })
        {
            Assert.Equal(type, index.GetProperty(part)[1].GetString());
            Assert.True(Directory.Exists(Path.Combine(model.Path, part)), part);
        }
        foreach (var file in new[] { "text_encoder/model.onnx", "text_encoder_2/model.onnx", "text_encoder_3/model.onnx", "text_encoder_3/model.onnx_data",
            "transformer/model.onnx", "transformer/model.onnx_data", "tokenizer/vocab.json", "tokenizer_2/merges.txt", "tokenizer_3/spiece.model" })
            Assert.True(File.Exists(Path.Combine(model.Path, file)), file);
        Assert.Equal("CLIPTextModelWithProjection", ReadJson(model.Path, "text_encoder/config.json").GetProperty("architectures")[0].GetString());
        Assert.Equal(o.ClipLProjectionWidth, ReadJson(model.Path, "text_encoder/config.json").GetProperty("projection_dim").GetInt32());
        Assert.Equal("!", ReadJson(model.Path, "tokenizer_2/tokenizer_config.json").GetProperty("pad_token").GetString());
        Assert.Equal(File.ReadAllBytes(FlowTestModelFactory.T5ModelPath), File.ReadAllBytes(Path.Combine(model.Path, "tokenizer_3", "spiece.model")));
        var t5Config = ReadJson(model.Path, "tokenizer_3/tokenizer_config.json");
        Assert.Equal(("<pad>", "</s>", 512), (t5Config.GetProperty("pad_token").GetString(), t5Config.GetProperty("eos_token").GetString(), t5Config.GetProperty("model_max_length").GetInt32()));
        Assert.Equal(o.JointAttentionDim, ReadJson(model.Path, "text_encoder_3/config.json").GetProperty("d_model").GetInt32());

        var transformer = ReadJson(model.Path, "transformer/config.json");
        Assert.Equal("SD3Transformer2DModel", transformer.GetProperty("_class_name").GetString());
        Assert.Equal((16, 16, 2), (transformer.GetProperty("in_channels").GetInt32(), transformer.GetProperty("out_channels").GetInt32(), transformer.GetProperty("patch_size").GetInt32()));
        Assert.Equal(96, transformer.GetProperty("joint_attention_dim").GetInt32());
        Assert.Equal(24 + 40, transformer.GetProperty("pooled_projection_dim").GetInt32());
        Assert.Equal(16, transformer.GetProperty("sample_size").GetInt32());

        foreach (var vae in new[] { "vae_decoder", "vae_encoder" })
        {
            var config = ReadJson(model.Path, $"{vae}/config.json");
            Assert.Equal(16, config.GetProperty("latent_channels").GetInt32());
            Assert.Equal(1.5305, config.GetProperty("scaling_factor").GetDouble(), 5);
            Assert.Equal(0.0609, config.GetProperty("shift_factor").GetDouble(), 5);
        }
        var scheduler = ReadJson(model.Path, "scheduler/scheduler_config.json");
        Assert.Equal("FlowMatchEulerDiscreteScheduler", scheduler.GetProperty("_class_name").GetString());
        Assert.Equal((1000, 3.0), (scheduler.GetProperty("num_train_timesteps").GetInt32(), scheduler.GetProperty("shift").GetDouble()));

        // The T5 tokenizer folder loads and gives the ids the factory predicts.
        var tokenizer = T5Tokenizer.Load(Path.Combine(model.Path, "tokenizer_3"));
        Assert.Equal(FlowTestModelFactory.T5TokenIds("a photo of a cat", 32), Array.ConvertAll(tokenizer.Encode("a photo of a cat", 32, out _), i => (long)i));
        Assert.Equal(400, FlowTestModelFactory.T5VocabularySize);
    }

    [Fact]
    public void Sd3FolderWithoutT5ListsItAsNull()
    {
        using var model = FlowTestModelFactory.CreateTemp(new FlowTestModelOptions { IncludeT5 = false });
        var index = ReadJson(model.Path, "model_index.json");
        foreach (var part in new[] { "text_encoder_3", "tokenizer_3" })
        {
            Assert.Equal(JsonValueKind.Null, index.GetProperty(part)[0].ValueKind);
            Assert.False(Directory.Exists(Path.Combine(model.Path, part)), part);
        }
        Assert.True(File.Exists(Path.Combine(model.Path, "text_encoder_2", "model.onnx")));

        // Without T5, T zero rows of width Dj take its place (diffusers' encode_prompt), which changes μ through the mean.
        var o = model.Options;
        const int t = 16;
        int dj = o.JointAttentionDim;
        var (without, pooled) = FlowTestModelFactory.Sd3ConditioningForPrompt("a photo of a cat", t, false, o);
        var (with, pooledWith) = FlowTestModelFactory.Sd3ConditioningForPrompt("a photo of a cat", t, true, o);
        Assert.Equal((77 + t) * dj, without.Length);
        Assert.Equal(pooled, pooledWith);
        Assert.All(without.AsSpan(77 * dj).ToArray(), v => Assert.Equal(0f, v));
        Assert.Equal(without.AsSpan(0, 77 * dj).ToArray(), with.AsSpan(0, 77 * dj).ToArray());
        // The CLIP rows: CLIP-L's penultimate state, then CLIP-G's, then zeros up to Dj.
        var ids = FlowTestModelFactory.ClipTokenIds(XlTextEncoder.TextEncoder, "a photo of a cat");
        var ids2 = FlowTestModelFactory.ClipTokenIds(XlTextEncoder.TextEncoder2, "a photo of a cat");
        var l = FlowTestModelFactory.ClipPenultimateHiddenState(XlTextEncoder.TextEncoder, ids, o);
        var g = FlowTestModelFactory.ClipPenultimateHiddenState(XlTextEncoder.TextEncoder2, ids2, o);
        Assert.Equal(l.AsSpan(5 * o.ClipLWidth, o.ClipLWidth).ToArray(), without.AsSpan(5 * dj, o.ClipLWidth).ToArray());
        Assert.Equal(g.AsSpan(5 * o.ClipGWidth, o.ClipGWidth).ToArray(), without.AsSpan(5 * dj + o.ClipLWidth, o.ClipGWidth).ToArray());
        Assert.All(without.AsSpan(5 * dj + o.ClipLWidth + o.ClipGWidth, dj - o.ClipLWidth - o.ClipGWidth).ToArray(), v => Assert.Equal(0f, v));
        Assert.True(MaxAbsDiff(FlowTestModelFactory.TargetLatents(without, pooled, 0, 2, 2, o), FlowTestModelFactory.TargetLatents(with, pooled, 0, 2, 2, o)) > 0.01);
    }

    [Fact]
    public void InvalidOptionsAreRefusedWithTheReason()
    {
        var narrow = Assert.Throws<ArgumentException>(() => FlowTestModelFactory.CreateTemp(new FlowTestModelOptions { JointAttentionDim = 64 }));
        Assert.Contains("JointAttentionDim", narrow.Message);
        var odd = Assert.Throws<ArgumentException>(() => FlowTestModelFactory.CreateTemp(new FlowTestModelOptions { Family = FlowTestFamily.FluxSchnell, SampleSize = 7 }));
        Assert.Contains("even", odd.Message);
        Assert.Throws<ArgumentException>(() => FlowTestModelFactory.CreateTemp(new FlowTestModelOptions { Family = FlowTestFamily.FluxDev, IncludeT5 = false }));
    }

    [Theory]
    [InlineData(FlowTestFamily.FluxSchnell)]
    [InlineData(FlowTestFamily.FluxDev)]
    public void FluxFolderFollowsTheDiffusersLayout(FlowTestFamily family)
    {
        var o = new FlowTestModelOptions { Family = family };
        using var model = FlowTestModelFactory.CreateTemp(o);
        var index = ReadJson(model.Path, "model_index.json");
        Assert.Equal("FluxPipeline", index.GetProperty("_class_name").GetString());
        foreach (var (part, type) in new[]
        {
            ("text_encoder", "CLIPTextModel"), ("text_encoder_2", "T5EncoderModel"), ("tokenizer", "CLIPTokenizer"), ("tokenizer_2", "T5TokenizerFast"),
            ("transformer", "FluxTransformer2DModel"), ("vae_decoder", "AutoencoderKL"), ("vae_encoder", "AutoencoderKL"),
        })
        {
            Assert.Equal(type, index.GetProperty(part)[1].GetString());
            Assert.True(Directory.Exists(Path.Combine(model.Path, part)), part);
        }
        Assert.False(Directory.Exists(Path.Combine(model.Path, "text_encoder_3")));
        Assert.True(File.Exists(Path.Combine(model.Path, "tokenizer_2", "spiece.model")));
        Assert.Equal("CLIPTextModel", ReadJson(model.Path, "text_encoder/config.json").GetProperty("architectures")[0].GetString());

        var transformer = ReadJson(model.Path, "transformer/config.json");
        Assert.Equal(64, transformer.GetProperty("in_channels").GetInt32());
        Assert.Equal(o.JointAttentionDim, transformer.GetProperty("joint_attention_dim").GetInt32());
        Assert.Equal(o.ClipLWidth, transformer.GetProperty("pooled_projection_dim").GetInt32());
        Assert.Equal(family == FlowTestFamily.FluxDev, transformer.GetProperty("guidance_embeds").GetBoolean());

        var vae = ReadJson(model.Path, "vae_decoder/config.json");
        Assert.Equal((0.3611, 0.1159), (Math.Round(vae.GetProperty("scaling_factor").GetDouble(), 5), Math.Round(vae.GetProperty("shift_factor").GetDouble(), 5)));

        var scheduler = ReadJson(model.Path, "scheduler/scheduler_config.json");
        bool dev = family == FlowTestFamily.FluxDev;
        Assert.Equal(dev, scheduler.GetProperty("use_dynamic_shifting").GetBoolean());
        Assert.Equal(dev ? 3.0 : 1.0, scheduler.GetProperty("shift").GetDouble());
        if (dev)
        {
            Assert.Equal((0.5, 1.15), (scheduler.GetProperty("base_shift").GetDouble(), scheduler.GetProperty("max_shift").GetDouble()));
            Assert.Equal((256, 4096), (scheduler.GetProperty("base_image_seq_len").GetInt32(), scheduler.GetProperty("max_image_seq_len").GetInt32()));
        }
    }

    // ---- declared inputs per convention -------------------------------------------------------------

    [Theory]
    [InlineData(FlowTestFamily.Sd3, FlowExportConvention.Optimum, false, false)]
    [InlineData(FlowTestFamily.Sd3, FlowExportConvention.OnnxStack, false, false)]
    [InlineData(FlowTestFamily.Sd3, FlowExportConvention.Optimum, true, false)]
    [InlineData(FlowTestFamily.FluxSchnell, FlowExportConvention.Optimum, false, false)]
    [InlineData(FlowTestFamily.FluxSchnell, FlowExportConvention.OnnxStack, false, false)]
    [InlineData(FlowTestFamily.FluxDev, FlowExportConvention.Optimum, true, true)]
    [InlineData(FlowTestFamily.FluxDev, FlowExportConvention.OnnxStack, true, false)]
    public void GraphsDeclareTheConventionsInputs(FlowTestFamily family, FlowExportConvention convention, bool fp16, bool fp16Scalars)
    {
        var o = new FlowTestModelOptions { Family = family, Convention = convention, Fp16 = fp16, Fp16Scalars = fp16Scalars };
        using var model = FlowTestModelFactory.CreateTemp(o);
        var ids = convention == FlowExportConvention.Optimum ? TensorElementType.Int64 : TensorElementType.Int32;
        var f = Element(fp16);
        var scalar = Element(fp16 && fp16Scalars);
        int dj = o.JointAttentionDim;

        using (var clip = Open(model.Path, "text_encoder"))
        {
            AssertNode(clip.InputMetadata, "input_ids", ids, -1, -1);
            AssertNode(clip.OutputMetadata, "last_hidden_state", f, -1, 77, o.ClipLWidth);
            if (o.IsFlux) AssertNode(clip.OutputMetadata, "pooler_output", f, -1, o.ClipLWidth);
            else
            {
                AssertNode(clip.OutputMetadata, "text_embeds", f, -1, o.ClipLProjectionWidth);
                AssertNode(clip.OutputMetadata, $"hidden_states.{o.ClipLLayers - 1}", f, -1, 77, o.ClipLWidth);
            }
        }
        using (var t5 = Open(model.Path, o.T5EncoderFolder))
        {
            AssertNode(t5.InputMetadata, "input_ids", ids, -1, -1);
            AssertNode(t5.OutputMetadata, "last_hidden_state", f, -1, -1, dj);
        }
        Assert.Equal(convention == FlowExportConvention.Optimum, File.Exists(Path.Combine(model.Path, "transformer", "model.onnx_data")));
        using var transformer = Open(model.Path, "transformer");
        var inputs = transformer.InputMetadata;
        AssertNode(inputs, "encoder_hidden_states", f, -1, -1, dj);
        AssertNode(inputs, "pooled_projections", f, -1, o.PooledWidth);
        AssertNode(inputs, "timestep", scalar, -1);
        if (o.IsFlux)
        {
            AssertNode(inputs, "hidden_states", f, -1, -1, 64);
            AssertNode(transformer.OutputMetadata, "out_hidden_states", f, -1, -1, 64);
            int[] rank = convention == FlowExportConvention.OnnxStack ? [1, -1, 3] : [-1, 3];
            AssertNode(inputs, "img_ids", scalar, rank);
            AssertNode(inputs, "txt_ids", scalar, rank);
            Assert.Equal(o.HasGuidance, inputs.ContainsKey("guidance"));
            if (o.HasGuidance) AssertNode(inputs, "guidance", scalar, -1);
            Assert.Equal(o.HasGuidance ? 7 : 6, inputs.Count);
        }
        else
        {
            AssertNode(inputs, "hidden_states", f, -1, 16, -1, -1);
            AssertNode(transformer.OutputMetadata, "out_hidden_states", f, -1, 16, -1, -1);
            Assert.Equal(4, inputs.Count);
        }
    }

    [Theory]
    [InlineData(FlowTestFamily.Sd3)]
    [InlineData(FlowTestFamily.FluxDev)]
    public void StaticAxesAreDeclaredFixed(FlowTestFamily family)
    {
        var o = new FlowTestModelOptions { Family = family, TransformerStaticBatch = 2, TransformerStaticSequenceLength = 93, TransformerStaticLatentSize = true, SampleSize = 8 };
        using var model = FlowTestModelFactory.CreateTemp(o);
        using var transformer = Open(model.Path, "transformer");
        AssertNode(transformer.InputMetadata, "encoder_hidden_states", TensorElementType.Float, 2, 93, o.JointAttentionDim);
        AssertNode(transformer.InputMetadata, "timestep", TensorElementType.Float, 2);
        if (o.IsFlux)
        {
            AssertNode(transformer.InputMetadata, "hidden_states", TensorElementType.Float, 2, 16, 64);
            AssertNode(transformer.InputMetadata, "txt_ids", TensorElementType.Float, 93, 3);
            AssertNode(transformer.OutputMetadata, "out_hidden_states", TensorElementType.Float, 2, 16, 64);
        }
        else
        {
            AssertNode(transformer.InputMetadata, "hidden_states", TensorElementType.Float, 2, 16, 8, 8);
            AssertNode(transformer.OutputMetadata, "out_hidden_states", TensorElementType.Float, 2, 16, 8, 8);
        }
    }

    // ---- text encoders ------------------------------------------------------------------------------

    [Theory]
    [InlineData(FlowExportConvention.Optimum, false)]
    [InlineData(FlowExportConvention.OnnxStack, false)]
    [InlineData(FlowExportConvention.Optimum, true)]
    public void Sd3TextEncodersMatchTheirClosedForms(FlowExportConvention convention, bool fp16)
    {
        var o = new FlowTestModelOptions { Convention = convention, Fp16 = fp16 };
        using var model = FlowTestModelFactory.CreateTemp(o);
        string[] prompts = ["a photo of a cat", "red car"];
        double tolerance = fp16 ? 2e-3 : 1e-5;
        foreach (var (encoder, folder, layers) in new[] { (XlTextEncoder.TextEncoder, "text_encoder", o.ClipLLayers), (XlTextEncoder.TextEncoder2, "text_encoder_2", o.ClipGLayers) })
        {
            var ids = prompts.SelectMany(p => FlowTestModelFactory.ClipTokenIds(encoder, p)).ToArray();
            using var session = Open(model.Path, folder);
            var outputs = Run(session, ("input_ids", Ids(ids, o.IdType, [2, 77])));
            for (int b = 0; b < 2; b++)
            {
                var row = ids.AsSpan(b * 77, 77);
                var embeds = FlowTestModelFactory.ClipTextEmbeds(encoder, row, o);
                AssertClose(embeds, outputs["text_embeds"].AsSpan(b * embeds.Length, embeds.Length), tolerance, $"{folder} text_embeds");
                var last = FlowTestModelFactory.ClipLastHiddenState(encoder, row, o);
                AssertClose(last, outputs["last_hidden_state"].AsSpan(b * last.Length, last.Length), tolerance, $"{folder} last_hidden_state");
                for (int k = 0; k <= layers; k++)
                {
                    var h = FlowTestModelFactory.ClipHiddenState(encoder, row, k, o);
                    AssertClose(h, outputs[$"hidden_states.{k}"].AsSpan(b * h.Length, h.Length), tolerance, $"{folder} hidden_states.{k}");
                }
            }
        }
        // CLIP-L's projection is its own: the two encoders' text_embeds differ in width and value.
        var l = FlowTestModelFactory.ClipTextEmbeds(XlTextEncoder.TextEncoder, FlowTestModelFactory.ClipTokenIds(XlTextEncoder.TextEncoder, "a"), o);
        Assert.Equal(o.ClipLProjectionWidth, l.Length);
    }

    [Theory]
    [InlineData(FlowExportConvention.Optimum, false)]
    [InlineData(FlowExportConvention.OnnxStack, true)]
    public void FluxClipAndT5MatchTheirClosedForms(FlowExportConvention convention, bool fp16)
    {
        var o = new FlowTestModelOptions { Family = FlowTestFamily.FluxSchnell, Convention = convention, Fp16 = fp16 };
        using var model = FlowTestModelFactory.CreateTemp(o);
        double tolerance = fp16 ? 2e-3 : 1e-5;
        string[] prompts = ["a photo of a cat", "A Castle in the Mountains at Sunset, painting by Monet"];

        var clipIds = prompts.SelectMany(p => FlowTestModelFactory.ClipTokenIds(XlTextEncoder.TextEncoder, p)).ToArray();
        using (var clip = Open(model.Path, "text_encoder"))
        {
            var outputs = Run(clip, ("input_ids", Ids(clipIds, o.IdType, [2, 77])));
            Assert.Equal(new[] { "last_hidden_state", "pooler_output" }, outputs.Keys.Order());
            for (int b = 0; b < 2; b++)
            {
                var pooled = FlowTestModelFactory.ClipPoolerOutput(clipIds.AsSpan(b * 77, 77), o);
                AssertClose(pooled, outputs["pooler_output"].AsSpan(b * o.ClipLWidth, o.ClipLWidth), tolerance, "pooler_output");
                var (_, expectedPooled) = FlowTestModelFactory.FluxConditioningForPrompt(prompts[b], 24, o);
                Assert.Equal(pooled, expectedPooled);
            }
        }

        // T5: a dynamic sequence length (24 here); every position depends on its own id and on its position.
        const int t = 24;
        var t5Ids = prompts.SelectMany(p => FlowTestModelFactory.T5TokenIds(p, t)).ToArray();
        using var t5 = Open(model.Path, "text_encoder_2");
        var states = Run(t5, ("input_ids", Ids(t5Ids, o.IdType, [2, t])))["last_hidden_state"];
        int dj = o.JointAttentionDim;
        for (int b = 0; b < 2; b++)
        {
            var expected = FlowTestModelFactory.T5LastHiddenState(t5Ids.AsSpan(b * t, t), o);
            AssertClose(expected, states.AsSpan(b * t * dj, t * dj), tolerance, "T5 last_hidden_state");
            Assert.Equal(expected, FlowTestModelFactory.FluxConditioningForPrompt(prompts[b], t, o).PromptEmbeds);
        }
        // Padding positions (id 0) still differ from each other.
        var padded = FlowTestModelFactory.T5LastHiddenState(new long[] { 0, 0 }, o);
        Assert.True(MaxAbsDiff(padded.AsSpan(0, dj), padded.AsSpan(dj, dj)) > 0.05);
    }

    // ---- transformers -------------------------------------------------------------------------------

    [Theory]
    [InlineData(FlowExportConvention.Optimum, false, false)]
    [InlineData(FlowExportConvention.OnnxStack, false, false)]
    [InlineData(FlowExportConvention.Optimum, true, false)]
    [InlineData(FlowExportConvention.Optimum, true, true)]
    public void Sd3TransformerOutputsTheOracleVelocity(FlowExportConvention convention, bool fp16, bool fp16Scalars)
    {
        var o = new FlowTestModelOptions { Convention = convention, Fp16 = fp16, Fp16Scalars = fp16Scalars };
        using var model = FlowTestModelFactory.CreateTemp(o);
        const int h = 6, w = 10, s = 77 + 20;
        int dj = o.JointAttentionDim, p = o.PooledWidth, n = 16 * h * w;
        var x = AsSeen(Random(2 * n, 1), fp16);
        var context = AsSeen(Random(2 * s * dj, 2, 0.5f), fp16);
        var pooled = AsSeen(Random(2 * p, 3), fp16);
        float[] timesteps = AsSeen([1000f, 312.5f], fp16 && fp16Scalars);
        using var session = Open(model.Path, "transformer");
        var v = Run(session,
            ("hidden_states", Floats(x, [2, 16, h, w], fp16)),
            ("encoder_hidden_states", Floats(context, [2, s, dj], fp16)),
            ("pooled_projections", Floats(pooled, [2, p], fp16)),
            ("timestep", Floats(timesteps, [2], fp16 && fp16Scalars)))["out_hidden_states"];
        for (int b = 0; b < 2; b++)
        {
            var mu = FlowTestModelFactory.TargetLatents(context.AsSpan(b * s * dj, s * dj), pooled.AsSpan(b * p, p), 0, h, w, o);
            var expected = FlowTestModelFactory.Velocity(x.AsSpan(b * n, n), FlowTestModelFactory.SigmaOfTimestep(timesteps[b], o), mu);
            AssertClose(expected, v.AsSpan(b * n, n), fp16 ? 4e-3 : 2e-5, $"velocity row {b}");
        }
        // μ varies by channel and by position (rows and columns differently).
        var target = FlowTestModelFactory.TargetLatents(context.AsSpan(0, s * dj), pooled.AsSpan(0, p), 0, h, w, o);
        Assert.True(Math.Abs(target[0] - target[h * w]) > 1e-3);
        Assert.True(Math.Abs(target[w] - target[0]) > 1e-4 && Math.Abs(target[1] - target[0]) > 1e-4);
    }

    [Theory]
    [InlineData(FlowTestFamily.FluxSchnell, FlowExportConvention.Optimum, false)]
    [InlineData(FlowTestFamily.FluxDev, FlowExportConvention.Optimum, false)]
    [InlineData(FlowTestFamily.FluxDev, FlowExportConvention.OnnxStack, false)]
    [InlineData(FlowTestFamily.FluxDev, FlowExportConvention.Optimum, true)]
    public void FluxTransformerOutputsTheOracleVelocityAtItsIds(FlowTestFamily family, FlowExportConvention convention, bool fp16)
    {
        var o = new FlowTestModelOptions { Family = family, Convention = convention, Fp16 = fp16 };
        using var model = FlowTestModelFactory.CreateTemp(o);
        const int h = 4, w = 8, t = 12;
        int dj = o.JointAttentionDim, p = o.PooledWidth, tokens = h / 2 * (w / 2), n = tokens * 64;
        var x = AsSeen(Random(2 * n, 11), fp16);
        var context = AsSeen(Random(2 * t * dj, 12, 0.5f), fp16);
        var pooled = AsSeen(Random(2 * p, 13), fp16);
        float[] sigmas = [1f, 0.25f];
        float[] guidance = [3.5f, 1f];
        var txtIds = new float[t * 3];
        long[] idShape(int rows) => o.RankThreeIds ? [1, rows, 3] : [rows, 3];

        float[] RunWith(float[] imageIds)
        {
            using var session = Open(model.Path, "transformer");
            var inputs = new List<(string, OrtValue)>
            {
                ("hidden_states", Floats(x, [2, tokens, 64], fp16)),
                ("encoder_hidden_states", Floats(context, [2, t, dj], fp16)),
                ("pooled_projections", Floats(pooled, [2, p], fp16)),
                ("timestep", Floats(sigmas, [2], false)),
                ("img_ids", Floats(imageIds, idShape(tokens), false)),
                ("txt_ids", Floats(txtIds, idShape(t), false)),
            };
            if (o.HasGuidance) inputs.Add(("guidance", Floats(guidance, [2], false)));
            return Run(session, [.. inputs])["out_hidden_states"];
        }

        var ids = FlowTestModelFactory.ImageIds(h, w);
        var v = RunWith(ids);
        double tolerance = fp16 ? 4e-3 : 2e-5;
        for (int b = 0; b < 2; b++)
        {
            // Standard ids: μ packed from the unpacked closed form.
            var mu = FlowTestModelFactory.Pack(FlowTestModelFactory.TargetLatents(context.AsSpan(b * t * dj, t * dj), pooled.AsSpan(b * p, p), guidance[b], h, w, o), h, w);
            Assert.Equal(mu, FlowTestModelFactory.PackedTargets(context.AsSpan(b * t * dj, t * dj), pooled.AsSpan(b * p, p), guidance[b], ids, txtIds, o));
            AssertClose(FlowTestModelFactory.Velocity(x.AsSpan(b * n, n), sigmas[b], mu), v.AsSpan(b * n, n), tolerance, $"velocity row {b}");
        }
        if (o.HasGuidance)
        {
            var g1 = FlowTestModelFactory.ChannelTargets(context.AsSpan(0, t * dj), pooled.AsSpan(0, p), 1f, o);
            var g2 = FlowTestModelFactory.ChannelTargets(context.AsSpan(0, t * dj), pooled.AsSpan(0, p), 3.5f, o);
            Assert.True(MaxAbsDiff(g1, g2) > 0.05, "guidance must change μ");
        }

        // Ids with rows and columns swapped: the graph follows them, and the answer differs.
        var swapped = (float[])ids.Clone();
        for (int i = 0; i < tokens; i++) (swapped[i * 3 + 1], swapped[i * 3 + 2]) = (swapped[i * 3 + 2], swapped[i * 3 + 1]);
        var vs = RunWith(swapped);
        var muSwapped = FlowTestModelFactory.PackedTargets(context.AsSpan(0, t * dj), pooled.AsSpan(0, p), guidance[0], swapped, txtIds, o);
        AssertClose(FlowTestModelFactory.Velocity(x.AsSpan(0, n), sigmas[0], muSwapped), vs.AsSpan(0, n), tolerance, "velocity at swapped ids");
        Assert.True(MaxAbsDiff(v.AsSpan(0, n), vs.AsSpan(0, n)) > 0.01, "img_ids must change the answer");
    }

    // ---- the oracle property ------------------------------------------------------------------------

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(28)]
    public void Sd3EulerStepsWithGuidanceLandOnTheGuidedTarget(int steps)
    {
        var o = new FlowTestModelOptions();
        using var model = FlowTestModelFactory.CreateTemp(o);
        const int h = 8, w = 8, t5Length = 16;
        const float scale = 4.5f;
        int n = 16 * h * w;
        var (uncond, uncondPooled) = FlowTestModelFactory.Sd3ConditioningForPrompt("", t5Length, true, o);
        var (cond, condPooled) = FlowTestModelFactory.Sd3ConditioningForPrompt("a photo of a cat", t5Length, true, o);
        int s = uncond.Length / o.JointAttentionDim;
        Assert.Equal(77 + t5Length, s);
        var context = Concat(uncond, cond);
        var pooled = Concat(uncondPooled, condPooled);

        var x = Random(n, 42);
        var sigmas = Sigmas(steps, 3.0);
        using var session = Open(model.Path, "transformer");
        for (int i = 0; i < steps; i++)
        {
            var v = Run(session,
                ("hidden_states", Floats(Concat(x, x), [2, 16, h, w], false)),
                ("encoder_hidden_states", Floats(context, [2, s, o.JointAttentionDim], false)),
                ("pooled_projections", Floats(pooled, [2, o.PooledWidth], false)),
                ("timestep", Floats([1000 * sigmas[i], 1000 * sigmas[i]], [2], false)))["out_hidden_states"];
            for (int k = 0; k < n; k++)
            {
                float guided = v[k] + scale * (v[n + k] - v[k]);
                x[k] += (sigmas[i + 1] - sigmas[i]) * guided;
            }
        }
        var muU = FlowTestModelFactory.TargetLatents(uncond, uncondPooled, 0, h, w, o);
        var muC = FlowTestModelFactory.TargetLatents(cond, condPooled, 0, h, w, o);
        var expected = new float[n];
        for (int k = 0; k < n; k++) expected[k] = muU[k] + scale * (muC[k] - muU[k]);
        AssertClose(expected, x, 1e-4, "final latents");
        Assert.True(MaxAbsDiff(muU, muC) > 0.05, "the prompt must change μ");

        // Decoding as the pipeline does (z/s + shift) gives pixel values z[0..2].
        var decoderInput = Array.ConvertAll(x, z => z / o.ResolvedScalingFactor + o.ResolvedShiftFactor);
        using var decoder = Open(model.Path, "vae_decoder");
        var image = Run(decoder, ("latent_sample", Floats(decoderInput, [1, 16, h, w], false)))["sample"];
        AssertClose(FlowTestModelFactory.DecodedImage(x, h, w, o), image, 1e-5, "decoded image");
        Assert.Equal(x[(2 * h + 3) * w + 5], image[(2 * 8 * h + 8 * 3 + 7) * 8 * w + 8 * 5 + 1], 4);
    }

    [Theory]
    [InlineData(FlowTestFamily.FluxSchnell, FlowExportConvention.Optimum, 4)]
    [InlineData(FlowTestFamily.FluxDev, FlowExportConvention.Optimum, 6)]
    [InlineData(FlowTestFamily.FluxDev, FlowExportConvention.OnnxStack, 3)]
    public void FluxEulerStepsLandOnTheTarget(FlowTestFamily family, FlowExportConvention convention, int steps)
    {
        var o = new FlowTestModelOptions { Family = family, Convention = convention };
        using var model = FlowTestModelFactory.CreateTemp(o);
        const int h = 8, w = 6, t5Length = 20;
        const float guidance = 3.5f;
        int tokens = h / 2 * (w / 2), n = tokens * 64;
        var (context, pooled) = FlowTestModelFactory.FluxConditioningForPrompt("a photo of a cat", t5Length, o);
        var ids = FlowTestModelFactory.ImageIds(h, w);
        long[] idShape(int rows) => o.RankThreeIds ? [1, rows, 3] : [rows, 3];
        // dev: μ of the dynamic shift interpolated from the token count (0.5 at 256, 1.15 at 4096).
        double mu = 0.5 + (tokens - 256) * (1.15 - 0.5) / (4096 - 256);
        var sigmas = o.HasGuidance ? Sigmas(steps, 1, mu) : Sigmas(steps, 1.0);

        var x = FlowTestModelFactory.Pack(Random(n, 7), h, w);
        using var session = Open(model.Path, "transformer");
        for (int i = 0; i < steps; i++)
        {
            var inputs = new List<(string, OrtValue)>
            {
                ("hidden_states", Floats(x, [1, tokens, 64], false)),
                ("encoder_hidden_states", Floats(context, [1, t5Length, o.JointAttentionDim], false)),
                ("pooled_projections", Floats(pooled, [1, o.PooledWidth], false)),
                ("timestep", Floats([sigmas[i]], [1], false)),
                ("img_ids", Floats(ids, idShape(tokens), false)),
                ("txt_ids", Floats(new float[t5Length * 3], idShape(t5Length), false)),
            };
            if (o.HasGuidance) inputs.Add(("guidance", Floats([guidance], [1], false)));
            var v = Run(session, [.. inputs])["out_hidden_states"];
            for (int k = 0; k < n; k++) x[k] += (sigmas[i + 1] - sigmas[i]) * v[k];
        }
        var expected = FlowTestModelFactory.TargetLatents(context, pooled, guidance, h, w, o);
        AssertClose(expected, FlowTestModelFactory.Unpack(x, h, w), 1e-4, "final latents");
    }

    // ---- VAE ----------------------------------------------------------------------------------------

    [Theory]
    [InlineData(FlowTestFamily.Sd3, VaeEncoderForm.LatentSample, false)]
    [InlineData(FlowTestFamily.FluxDev, VaeEncoderForm.LatentParameters, false)]
    [InlineData(FlowTestFamily.Sd3, VaeEncoderForm.LatentParameters, true)]
    public void VaeMatchesItsClosedForms(FlowTestFamily family, VaeEncoderForm form, bool fp16)
    {
        var o = new FlowTestModelOptions { Family = family, Encoder = form, Fp16 = fp16 };
        using var model = FlowTestModelFactory.CreateTemp(o);
        const int h = 3, w = 5;
        double tolerance = fp16 ? 4e-3 : 1e-5;

        var latents = AsSeen(Random(16 * h * w, 21), fp16);
        using (var decoder = Open(model.Path, "vae_decoder"))
        {
            AssertNode(decoder.InputMetadata, "latent_sample", Element(fp16), -1, 16, -1, -1);
            var image = Run(decoder, ("latent_sample", Floats(latents, [1, 16, h, w], fp16)))["sample"];
            AssertClose(FlowTestModelFactory.DecoderOutput(latents, h, w, o), image, tolerance, "decoded");
        }

        var picture = AsSeen(Random(3 * 8 * h * 8 * w, 22, 0.5f), fp16);
        using var encoder = Open(model.Path, "vae_encoder");
        var outputs = Run(encoder, ("sample", Floats(picture, [1, 3, 8 * h, 8 * w], fp16)));
        var mean = FlowTestModelFactory.EncoderOutput(picture, 8 * h, 8 * w, o);
        if (form == VaeEncoderForm.LatentSample) AssertClose(mean, outputs["latent_sample"], tolerance, "latent_sample");
        else
        {
            var parameters = outputs["latent_parameters"];
            Assert.Equal(32 * h * w, parameters.Length);
            AssertClose(mean, parameters.AsSpan(0, mean.Length), tolerance, "latent_parameters mean");
            Assert.All(parameters.AsSpan(mean.Length).ToArray(), v => Assert.Equal(TestModelFactory.EncoderLogVariance, v));
        }
        // Encoding then scaling as diffusers does ((mean − shift)·s) gives block averages: decoding those returns them.
        var scaled = Array.ConvertAll(mean, m => (m - o.ResolvedShiftFactor) * o.ResolvedScalingFactor);
        var roundTrip = FlowTestModelFactory.DecodedImage(scaled, h, w, o);
        double block = 0;
        for (int dy = 0; dy < 8; dy++)
            for (int dx = 0; dx < 8; dx++) block += picture[dy * 8 * w + dx];
        Assert.Equal(block / 64, roundTrip[0], 4);
    }
}

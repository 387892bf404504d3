using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using Xunit.Abstractions;

using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;
using static MLNet.Diffusion.Tests.TestModels.OnnxGraphTestKit;

namespace MLNet.Diffusion.Tests.TestModels;

public class XlTestModelFactoryTests(ITestOutputHelper output)
{
    // ---- helpers ------------------------------------------------------------------------------------

    private static readonly string[] s_prompts = ["a photo of a cat", ""];

    private static OrtValue Ids(long[] ids, OnnxElementType type, long batch) =>
        type == OnnxElementType.Int64
            ? OrtValue.CreateTensorValueFromMemory(ids, [batch, 77])
            : OrtValue.CreateTensorValueFromMemory(Array.ConvertAll(ids, i => (int)i), [batch, 77]);


    private static XlTextEncoder[] EncodersOf(XlTestModelOptions o) =>
        [.. new[] { XlTextEncoder.TextEncoder, XlTextEncoder.TextEncoder2 }.Where(e => e == XlTextEncoder.TextEncoder ? o.HasTextEncoder : o.HasTextEncoder2)];

    private static string Folder(XlTextEncoder e) => e == XlTextEncoder.TextEncoder ? "text_encoder" : "text_encoder_2";

    /// <summary>Time ids as diffusers builds them: (original h, w, crop top, left, target h, w) or, for the refiner,
    /// (original h, w, crop top, left, aesthetic score).</summary>
    private static float[] TimeIds(XlTestModelOptions o, float height, float width, float top = 0, float left = 0, float aesthetic = 6f) =>
        o.Family == XlTestFamily.SdxlRefiner ? [height, width, top, left, aesthetic] : [height, width, top, left, height, width];

    // ---- folder ---------------------------------------------------------------------------------------

    [Theory]
    [InlineData(XlTestFamily.Sdxl, false, false, null)]
    [InlineData(XlTestFamily.Sdxl, true, false, "ORTStableDiffusionXLPipeline")]
    [InlineData(XlTestFamily.Sdxl, false, true, null)]
    [InlineData(XlTestFamily.SdxlRefiner, false, false, null)]
    [InlineData(XlTestFamily.Sd, false, true, null)]
    [InlineData(XlTestFamily.Sd, true, false, null)]
    public void FolderFollowsTheFamilyLayout(XlTestFamily family, bool turbo, bool lcm, string? className)
    {
        var o = new XlTestModelOptions { Family = family, Turbo = turbo, Lcm = lcm, PipelineClassName = className };
        using var model = XlTestModelFactory.CreateTemp(o);
        var index = ReadJson(model.Path, "model_index.json");
        string expectedClass = className ?? family switch
        {
            XlTestFamily.Sdxl => "StableDiffusionXLPipeline",
            XlTestFamily.SdxlRefiner => "StableDiffusionXLImg2ImgPipeline",
            _ => lcm ? "LatentConsistencyModelPipeline" : "StableDiffusionPipeline",
        };
        Assert.Equal(expectedClass, index.GetProperty("_class_name").GetString());
        foreach (var part in new[] { "unet", "vae_decoder", "vae_encoder", "scheduler" })
        {
            Assert.Equal(JsonValueKind.String, index.GetProperty(part)[1].ValueKind);
            Assert.True(Directory.Exists(Path.Combine(model.Path, part)), part);
        }
        foreach (var (part, present) in new[] { ("tokenizer", o.HasTextEncoder), ("text_encoder", o.HasTextEncoder), ("tokenizer_2", o.IsXl), ("text_encoder_2", o.IsXl) })
        {
            Assert.Equal(present, Directory.Exists(Path.Combine(model.Path, part)));
            if (o.IsXl || present) Assert.Equal(present ? JsonValueKind.String : JsonValueKind.Null, index.GetProperty(part)[0].ValueKind);
            else Assert.False(index.TryGetProperty(part, out _));
        }
        if (o.IsXl)
        {
            Assert.Equal(family == XlTestFamily.Sdxl, index.GetProperty("force_zeros_for_empty_prompt").GetBoolean());
            Assert.Equal(family == XlTestFamily.SdxlRefiner, index.TryGetProperty("requires_aesthetics_score", out var aes) && aes.GetBoolean());
        }
        else Assert.False(index.TryGetProperty("force_zeros_for_empty_prompt", out _));

        var unet = ReadJson(model.Path, "unet/config.json");
        Assert.Equal(o.ContextWidth, unet.GetProperty("cross_attention_dim").GetInt32());
        Assert.Equal(turbo || family == XlTestFamily.Sd ? 64 : 128, unet.GetProperty("sample_size").GetInt32());
        if (o.IsXl)
        {
            Assert.Equal("text_time", unet.GetProperty("addition_embed_type").GetString());
            Assert.Equal(256, unet.GetProperty("addition_time_embed_dim").GetInt32());
            Assert.Equal(48 + (family == XlTestFamily.Sdxl ? 6 : 5) * 256, unet.GetProperty("projection_class_embeddings_input_dim").GetInt32());
            Assert.Equal(family == XlTestFamily.Sdxl ? 32 + 48 : 48, o.ContextWidth);
        }
        else Assert.Equal(JsonValueKind.Null, unet.GetProperty("addition_embed_type").ValueKind);
        if (lcm) Assert.Equal(256, unet.GetProperty("time_cond_proj_dim").GetInt32());
        else Assert.Equal(JsonValueKind.Null, unet.GetProperty("time_cond_proj_dim").ValueKind);

        var scheduler = SchedulerConfig.Load(Path.Combine(model.Path, "scheduler", "scheduler_config.json"));
        string expectedScheduler = lcm ? "LCMScheduler" : turbo ? "EulerAncestralDiscreteScheduler" : o.IsXl ? "EulerDiscreteScheduler" : "PNDMScheduler";
        Assert.Equal(expectedScheduler, scheduler.ClassName);
        Assert.Equal(expectedScheduler, index.GetProperty("scheduler")[1].GetString());
        if (turbo) Assert.Equal("trailing", scheduler.GetString("timestep_spacing", ""));
        if (lcm)
        {
            Assert.Equal(50, scheduler.GetInt("original_inference_steps", 0));
            Assert.Equal(10.0, scheduler.GetDouble("timestep_scaling", 0));
        }

        foreach (var vae in new[] { "vae_decoder", "vae_encoder" })
        {
            var config = ReadJson(model.Path, $"{vae}/config.json");
            Assert.Equal(o.IsXl ? 0.13025 : 0.18215, config.GetProperty("scaling_factor").GetDouble(), 6);
            Assert.Equal(o.IsXl, config.TryGetProperty("force_upcast", out var upcast) && upcast.GetBoolean());
        }
    }

    [Fact]
    public void SecondTokenizerPadsWithBangAndTheFirstWithEndOfText()
    {
        using var model = XlTestModelFactory.CreateTemp();
        foreach (var (folder, pad) in new[] { ("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!") })
        {
            Assert.Equal(pad, ReadJson(model.Path, $"{folder}/special_tokens_map.json").GetProperty("pad_token").GetString());
            Assert.Equal(pad, ReadJson(model.Path, $"{folder}/tokenizer_config.json").GetProperty("pad_token").GetString());
        }
        Assert.Equal(0, ReadJson(model.Path, "tokenizer_2/vocab.json").GetProperty("!").GetInt32());
        var ids = XlTestModelFactory.TokenIds(XlTextEncoder.TextEncoder, "a photo of a cat");
        var ids2 = XlTestModelFactory.TokenIds(XlTextEncoder.TextEncoder2, "a photo of a cat");
        Assert.Equal(ids.Take(7), ids2.Take(7));
        Assert.All(ids.Skip(7), id => Assert.Equal(TestTokenizer.EndOfTextId, id));
        Assert.All(ids2.Skip(7), id => Assert.Equal(0, id));
        Assert.Equal(6, XlTestModelFactory.PoolingPosition(ids));
        Assert.Equal(6, XlTestModelFactory.PoolingPosition(ids2));
    }

    // ---- text encoders ----------------------------------------------------------------------------------

    [Theory]
    [InlineData(XlTestFamily.Sdxl, OnnxElementType.Int64, OnnxElementType.Int64, false)]
    [InlineData(XlTestFamily.Sdxl, OnnxElementType.Int32, OnnxElementType.Int64, true)]
    [InlineData(XlTestFamily.Sdxl, OnnxElementType.Int64, OnnxElementType.Int32, false)]
    [InlineData(XlTestFamily.SdxlRefiner, OnnxElementType.Int64, OnnxElementType.Int32, true)]
    [InlineData(XlTestFamily.Sd, OnnxElementType.Int32, OnnxElementType.Int64, false)]
    public void TextEncodersMatchTheirClosedForms(XlTestFamily family, OnnxElementType idType, OnnxElementType idType2, bool fp16)
    {
        var o = new XlTestModelOptions { Family = family, TextEncoderIdType = idType, TextEncoder2IdType = idType2, Fp16 = fp16, TextEncoderLayers = 4 };
        using var model = XlTestModelFactory.CreateTemp(o);
        double tol = fp16 ? 1e-2 : 1e-5;
        var f = fp16 ? TensorElementType.Float16 : TensorElementType.Float;
        foreach (var encoder in EncodersOf(o))
        {
            bool second = encoder == XlTextEncoder.TextEncoder2;
            int d = second ? o.TextEncoder2Width : o.TextEncoderWidth, layers = second ? o.TextEncoder2Layers : o.TextEncoderLayers;
            bool hidden = second ? o.TextEncoder2HiddenStates : o.ResolvedTextEncoderHiddenStates;
            var type = second ? idType2 : idType;
            using var session = Open(model.Path, Folder(encoder));

            AssertNode(session.InputMetadata, "input_ids", type == OnnxElementType.Int64 ? TensorElementType.Int64 : TensorElementType.Int32, -1, -1);
            var names = new List<string>(second ? ["text_embeds", "last_hidden_state"] : ["last_hidden_state", "pooler_output"]);
            if (hidden) names.AddRange(Enumerable.Range(0, layers + 1).Select(XlTestModelFactory.HiddenStateName));
            Assert.Equal(names, session.OutputNames);
            AssertNode(session.OutputMetadata, "last_hidden_state", f, -1, 77, d);
            if (hidden) AssertNode(session.OutputMetadata, XlTestModelFactory.HiddenStateName(layers - 1), f, -1, 77, d);
            if (second) AssertNode(session.OutputMetadata, "text_embeds", f, -1, o.ResolvedPooledWidth);
            else AssertNode(session.OutputMetadata, "pooler_output", f, -1, d);

            var ids = s_prompts.SelectMany(p => XlTestModelFactory.TokenIds(encoder, p)).ToArray();
            var outputs = Run(session, ("input_ids", Ids(ids, type, 2)));
            for (int b = 0; b < 2; b++)
            {
                var row = ids.AsSpan(b * 77, 77);
                AssertClose(XlTestModelFactory.LastHiddenState(encoder, row, o), outputs["last_hidden_state"].AsSpan(b * 77 * d, 77 * d), tol, "last_hidden_state");
                if (second) AssertClose(XlTestModelFactory.TextEmbeds(row, o), outputs["text_embeds"].AsSpan(b * o.ResolvedPooledWidth, o.ResolvedPooledWidth), tol, "text_embeds");
                else AssertClose(XlTestModelFactory.PooledOutput(encoder, row, o), outputs["pooler_output"].AsSpan(b * d, d), tol, "pooler_output");
                if (!hidden) continue;
                var states = XlTestModelFactory.HiddenStates(encoder, row, o);
                Assert.Equal(layers + 1, states.Length);
                for (int k = 0; k <= layers; k++)
                    AssertClose(states[k], outputs[XlTestModelFactory.HiddenStateName(k)].AsSpan(b * 77 * d, 77 * d), tol, XlTestModelFactory.HiddenStateName(k));
            }
        }
    }

    [Fact]
    public void EncodersWithoutHiddenStatesHaveOnlyTheirBaseOutputs()
    {
        var o = new XlTestModelOptions { TextEncoderHiddenStates = false, TextEncoder2HiddenStates = false };
        using var model = XlTestModelFactory.CreateTemp(o);
        using (var te = Open(model.Path, "text_encoder")) Assert.Equal(["last_hidden_state", "pooler_output"], te.OutputNames);
        using (var te2 = Open(model.Path, "text_encoder_2")) Assert.Equal(["text_embeds", "last_hidden_state"], te2.OutputNames);
        using var sd = XlTestModelFactory.CreateTemp(new XlTestModelOptions { Family = XlTestFamily.Sd, Lcm = true });
        using var sdEncoder = Open(sd.Path, "text_encoder");
        Assert.Equal(["last_hidden_state", "pooler_output"], sdEncoder.OutputNames);
    }

    [Fact]
    public void EveryHiddenStateDiffersSoTheWrongLayerIsVisible()
    {
        var o = new XlTestModelOptions();
        foreach (var encoder in EncodersOf(o))
        {
            var ids = XlTestModelFactory.TokenIds(encoder, "a photo of a cat");
            var states = XlTestModelFactory.HiddenStates(encoder, ids, o);
            var last = XlTestModelFactory.LastHiddenState(encoder, ids, o);
            var all = states.Append(last).ToArray();
            for (int i = 0; i < all.Length; i++)
                for (int j = i + 1; j < all.Length; j++)
                    Assert.True(MaxAbsDiff(all[i], all[j]) > 0.1, $"{encoder}: states {i} and {j} are too alike.");
            Assert.Equal(states[^2], XlTestModelFactory.PenultimateHiddenState(encoder, ids, o));
        }

        // SDXL's prompt embedding: both penultimate states side by side on the last axis.
        var ids1 = XlTestModelFactory.TokenIds(XlTextEncoder.TextEncoder, "a red dog");
        var ids2 = XlTestModelFactory.TokenIds(XlTextEncoder.TextEncoder2, "a red dog");
        var embeds = XlTestModelFactory.PromptEmbedsForPrompt("a red dog", o);
        Assert.Equal(77 * 80, embeds.Length);
        var pen1 = XlTestModelFactory.PenultimateHiddenState(XlTextEncoder.TextEncoder, ids1, o);
        var pen2 = XlTestModelFactory.PenultimateHiddenState(XlTextEncoder.TextEncoder2, ids2, o);
        for (int p = 0; p < 77; p++)
        {
            Assert.Equal(pen1.AsSpan(p * 32, 32), embeds.AsSpan(p * 80, 32));
            Assert.Equal(pen2.AsSpan(p * 48, 48), embeds.AsSpan(p * 80 + 32, 48));
        }
        var refiner = new XlTestModelOptions { Family = XlTestFamily.SdxlRefiner };
        Assert.Equal(pen2, XlTestModelFactory.PromptEmbedsForPrompt("a red dog", refiner));
        var sd = new XlTestModelOptions { Family = XlTestFamily.Sd };
        Assert.Equal(XlTestModelFactory.LastHiddenState(XlTextEncoder.TextEncoder, ids1, sd), XlTestModelFactory.PromptEmbedsForPrompt("a red dog", sd));
    }

    // ---- UNet -------------------------------------------------------------------------------------------

    public static TheoryData<XlTestFamily, bool, TimestepForm, bool, XlExtraInputNaming, int?, bool> UnetCases() => new()
    {
        { XlTestFamily.Sdxl, false, TimestepForm.FloatBatch, false, XlExtraInputNaming.Canonical, null, false },
        { XlTestFamily.Sdxl, false, TimestepForm.FloatBatch, true, XlExtraInputNaming.Canonical, null, false },
        { XlTestFamily.Sdxl, false, TimestepForm.Int64Batch, false, XlExtraInputNaming.Unnamed, null, false },
        { XlTestFamily.Sdxl, true, TimestepForm.FloatScalar, false, XlExtraInputNaming.Canonical, 2, true },
        { XlTestFamily.Sdxl, true, TimestepForm.FloatBatch, true, XlExtraInputNaming.Unnamed, 2, false },
        { XlTestFamily.Sdxl, false, TimestepForm.FloatBatch, false, XlExtraInputNaming.UnnamedSymbolic, null, false },
        { XlTestFamily.SdxlRefiner, false, TimestepForm.FloatBatch, false, XlExtraInputNaming.Canonical, null, false },
        { XlTestFamily.SdxlRefiner, false, TimestepForm.FloatScalar, true, XlExtraInputNaming.Unnamed, null, true },
        { XlTestFamily.Sd, true, TimestepForm.Int64Batch, false, XlExtraInputNaming.Canonical, null, false },
        { XlTestFamily.Sd, true, TimestepForm.FloatBatch, true, XlExtraInputNaming.Unnamed, null, false },
    };

    [Theory]
    [MemberData(nameof(UnetCases))]
    public void UnetMatchesTheOracleInEachConvention(XlTestFamily family, bool lcm, TimestepForm timestep, bool fp16,
        XlExtraInputNaming naming, int? staticBatch, bool staticSize)
    {
        var o = new XlTestModelOptions
        {
            Family = family, Lcm = lcm, Timestep = timestep, Fp16 = fp16, ExtraInputs = naming,
            UnetStaticBatch = staticBatch, UnetStaticLatentSize = staticSize, SampleSize = 6,
        };
        using var model = XlTestModelFactory.CreateTemp(o);
        using var session = Open(model.Path, "unet");
        var f = fp16 ? TensorElementType.Float16 : TensorElementType.Float;
        int batch = staticBatch ?? 2, h = 6, w = staticSize ? 6 : 5, dc = o.ContextWidth;
        int symbolic = staticBatch is null ? -1 : batch, hDim = staticSize ? 6 : -1, wDim = staticSize ? 6 : -1;

        // Metadata: the three standard inputs, then the extras in the convention's names, order and shapes.
        var extras = XlTestModelFactory.ExtraInputs(o);
        Assert.Equal(new[] { "sample", "timestep", "encoder_hidden_states" }.Concat(extras.Select(e => e.Name)), session.InputNames);
        AssertNode(session.InputMetadata, "sample", f, symbolic, 4, hDim, wDim);
        AssertNode(session.InputMetadata, "encoder_hidden_states", f, symbolic, -1, dc);
        switch (timestep)
        {
            case TimestepForm.FloatBatch: AssertNode(session.InputMetadata, "timestep", f, symbolic); break;
            case TimestepForm.Int64Batch: AssertNode(session.InputMetadata, "timestep", TensorElementType.Int64, symbolic); break;
            default: AssertNode(session.InputMetadata, "timestep", TensorElementType.Float); break;
        }
        var expectedExtras = new List<XlUnetInput>();
        if (o.IsXl) expectedExtras.AddRange([XlUnetInput.TextEmbeds, XlUnetInput.TimeIds]);
        if (lcm) expectedExtras.Add(XlUnetInput.TimestepCond);
        if (naming != XlExtraInputNaming.Canonical) expectedExtras = [.. expectedExtras.OrderBy(e => e switch { XlUnetInput.TimeIds => 0, XlUnetInput.TimestepCond => 1, _ => 2 })];
        Assert.Equal(expectedExtras, extras.Select(e => e.Input));
        foreach (var (input, name, width) in extras)
        {
            Assert.Equal(XlTestModelFactory.InputName(input, naming), name);
            Assert.Equal(input switch { XlUnetInput.TextEmbeds => o.ResolvedPooledWidth, XlUnetInput.TimeIds => o.TimeIdCount, _ => 256 }, width);
            if (naming == XlExtraInputNaming.UnnamedSymbolic)
            {
                AssertNode(session.InputMetadata, name, f, symbolic, -1);
                Assert.NotEqual("", session.InputMetadata[name].SymbolicDimensions[1]);
            }
            else AssertNode(session.InputMetadata, name, f, symbolic, width);
        }
        Assert.Equal(["out_sample"], session.OutputNames);
        AssertNode(session.OutputMetadata, "out_sample", f, symbolic, 4, hDim, wDim);

        // Values: two rows with their own prompt, pooled, time ids (a non-square size), guidance embedding and timestep.
        float[] steps = timestep == TimestepForm.FloatScalar ? [617.25f, 617.25f] : timestep == TimestepForm.Int64Batch ? [981f, 401f] : [981f, 400.5f];
        var sample = AsSeen(Random(batch * 4 * h * w, 11), fp16);
        var context = AsSeen(s_prompts.SelectMany(p => XlTestModelFactory.PromptEmbedsForPrompt(p, o)).ToArray(), fp16);
        var pooled = o.IsXl ? AsSeen(s_prompts.SelectMany(p => XlTestModelFactory.PooledForPrompt(p, o)).ToArray(), fp16) : [];
        var timeIds = o.IsXl ? [.. TimeIds(o, 1024, 768), .. TimeIds(o, 768, 1024, 64, 32, 2.5f)] : Array.Empty<float>();
        var cond = lcm ? AsSeen(Random(2 * 256, 12, 0.7f), fp16) : [];

        var inputs = new List<(string, OrtValue)> { ("sample", Floats(sample, [batch, 4, h, w], fp16)) };
        inputs.Add(("timestep", timestep switch
        {
            TimestepForm.Int64Batch => OrtValue.CreateTensorValueFromMemory(Array.ConvertAll(steps, s => (long)s), [2]),
            TimestepForm.FloatScalar => OrtValue.CreateTensorValueFromMemory(new[] { steps[0] }, []),
            _ => Floats(steps, [2], fp16),
        }));
        inputs.Add(("encoder_hidden_states", Floats(context, [2, 77, dc], fp16)));
        foreach (var (input, name, width) in extras)
        {
            var data = input switch { XlUnetInput.TextEmbeds => pooled, XlUnetInput.TimeIds => timeIds, _ => cond };
            inputs.Add((name, Floats(data, [2, width], fp16)));
        }
        var output = Run(session, [.. inputs])["out_sample"];

        int p = o.IsXl ? o.ResolvedPooledWidth : 0, n = o.TimeIdCount, g = lcm ? 256 : 0, row = 4 * h * w;
        for (int b = 0; b < 2; b++)
        {
            var z = XlTestModelFactory.TargetLatent(context.AsSpan(b * 77 * dc, 77 * dc), pooled.AsSpan(b * p, p),
                timeIds.AsSpan(b * n, n), cond.AsSpan(b * g, g), o);
            var expected = XlTestModelFactory.NoisePrediction(sample.AsSpan(b * row, row), steps[b], z, o);
            AssertClose(expected, output.AsSpan(b * row, row), fp16 ? 1e-2 : 1e-4, $"out_sample row {b}");
        }
    }

    [Fact]
    public void TargetDependsOnEveryConditioningValue()
    {
        var xl = new XlTestModelOptions();
        var context = XlTestModelFactory.PromptEmbedsForPrompt("a photo of a cat", xl);
        var pooled = XlTestModelFactory.PooledForPrompt("a photo of a cat", xl);
        float[] timeIds = TimeIds(xl, 1024, 768);
        var z = XlTestModelFactory.TargetLatent(context, pooled, timeIds, [], xl);
        output.WriteLine($"z = {string.Join(", ", z.Select(v => v.ToString("F4")))}");
        Assert.All(z, v => Assert.InRange(Math.Abs(v), 0, 0.98));

        void Differs(float[] other, string what, float[]? baseline = null)
        {
            double d = MaxAbsDiff(baseline ?? z, other);
            output.WriteLine($"{what}: max |Δz| = {d:F4}");
            Assert.True(d > 0.02, $"{what} changes the target by only {d}.");
        }
        Differs(XlTestModelFactory.TargetLatent(XlTestModelFactory.PromptEmbedsForPrompt("a photo of a dog", xl), pooled, timeIds, [], xl), "another prompt (context)");
        Differs(XlTestModelFactory.TargetLatent(context, XlTestModelFactory.PooledForPrompt("a photo of a dog", xl), timeIds, [], xl), "another prompt (pooled)");
        Differs(XlTestModelFactory.TargetLatent(context, new float[pooled.Length], timeIds, [], xl), "a zero pooled embedding");
        Differs(XlTestModelFactory.TargetLatent(new float[context.Length], pooled, timeIds, [], xl), "a zero context");
        Differs(XlTestModelFactory.TargetLatent(context, pooled, TimeIds(xl, 768, 1024), [], xl), "height and width swapped");
        Differs(XlTestModelFactory.TargetLatent(context, pooled, TimeIds(xl, 1024, 768, 64, 32), [], xl), "a crop");
        Differs(XlTestModelFactory.TargetLatent(context, pooled, [1024, 768, 0, 0, 512, 384], [], xl), "another target size");

        // The wrong hidden state, or EOS padding for the second tokenizer, shows in the target.
        var ids1 = XlTestModelFactory.TokenIds(XlTextEncoder.TextEncoder, "a photo of a cat");
        var ids2 = XlTestModelFactory.TokenIds(XlTextEncoder.TextEncoder2, "a photo of a cat");
        var lastStates = Concat(XlTestModelFactory.LastHiddenState(XlTextEncoder.TextEncoder, ids1, xl), 32, XlTestModelFactory.LastHiddenState(XlTextEncoder.TextEncoder2, ids2, xl), 48);
        Differs(XlTestModelFactory.TargetLatent(lastStates, pooled, timeIds, [], xl), "last_hidden_state instead of the penultimate");
        var topStates = Concat(XlTestModelFactory.HiddenState(XlTextEncoder.TextEncoder, ids1, 3, xl), 32, XlTestModelFactory.HiddenState(XlTextEncoder.TextEncoder2, ids2, 3, xl), 48);
        Differs(XlTestModelFactory.TargetLatent(topStates, pooled, timeIds, [], xl), "hidden_states.L instead of the penultimate");
        Differs(XlTestModelFactory.TargetLatent(XlTestModelFactory.PromptEmbeds(ids1, ids1, xl), pooled, timeIds, [], xl), "tokenizer_2 padded with EOS");
        // As in CLIP (causal attention), the pooled EOS position does not see the padding after it.
        Assert.Equal(pooled, XlTestModelFactory.TextEmbeds(ids1, xl));

        // Refiner: the aesthetic score; LCM: the guidance embedding.
        var refiner = new XlTestModelOptions { Family = XlTestFamily.SdxlRefiner };
        var rc = XlTestModelFactory.PromptEmbedsForPrompt("a photo of a cat", refiner);
        var r6 = XlTestModelFactory.TargetLatent(rc, pooled, TimeIds(refiner, 1024, 1024, 0, 0, 6f), [], refiner);
        var r25 = XlTestModelFactory.TargetLatent(rc, pooled, TimeIds(refiner, 1024, 1024, 0, 0, 2.5f), [], refiner);
        output.WriteLine($"refiner z = {string.Join(", ", r6.Select(v => v.ToString("F4")))}");
        Assert.All(r6, v => Assert.InRange(Math.Abs(v), 0, 0.98));
        Differs(r25, "aesthetic score 2.5 instead of 6 (refiner)", r6);
        var lcm = new XlTestModelOptions { Lcm = true };
        var c1 = Random(256, 21);
        var c2 = Random(256, 22);
        Differs(XlTestModelFactory.TargetLatent(context, pooled, timeIds, c2, lcm), "another guidance embedding (LCM)", XlTestModelFactory.TargetLatent(context, pooled, timeIds, c1, lcm));
    }

    private static float[] Concat(float[] a, int da, float[] b, int db)
    {
        var c = new float[77 * (da + db)];
        for (int p = 0; p < 77; p++)
        {
            a.AsSpan(p * da, da).CopyTo(c.AsSpan(p * (da + db)));
            b.AsSpan(p * db, db).CopyTo(c.AsSpan(p * (da + db) + da));
        }
        return c;
    }

    [Theory]
    [InlineData("weights.pb")]
    [InlineData("model.onnx_data")]
    public void ExternalWeightsLieBesideTheModels(string external)
    {
        var o = new XlTestModelOptions { ExternalWeights = external };
        using var model = XlTestModelFactory.CreateTemp(o);
        foreach (var part in new[] { "unet", "text_encoder", "text_encoder_2" })
        {
            bool moved = part == "unet" || external == "model.onnx_data";
            Assert.Equal(moved, File.Exists(Path.Combine(model.Path, part, external)));
            if (moved) Assert.True(new FileInfo(Path.Combine(model.Path, part, "model.onnx")).Length < new FileInfo(Path.Combine(model.Path, part, external)).Length);
        }
        using var session = Open(model.Path, "text_encoder_2");
        var ids = XlTestModelFactory.TokenIds(XlTextEncoder.TextEncoder2, "a photo of a cat");
        var outputs = Run(session, ("input_ids", Ids(ids, OnnxElementType.Int64, 1)));
        AssertClose(XlTestModelFactory.TextEmbeds(ids, o), outputs["text_embeds"], 1e-5, "text_embeds");
        using var unet = Open(model.Path, "unet");
        Assert.Equal(5, unet.InputNames.Count);
    }

    [Fact]
    public void CreateWithoutDeletesOneComponent()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-xltestmodel-").FullName;
        try
        {
            XlTestModelFactory.CreateWithout(dir, "text_encoder_2");
            Assert.False(Directory.Exists(Path.Combine(dir, "text_encoder_2")));
            Assert.True(File.Exists(Path.Combine(dir, "text_encoder", "model.onnx")));
            Assert.Throws<ArgumentException>(() => XlTestModelFactory.CreateWithout(dir, "../outside"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    // ---- VAE, options -------------------------------------------------------------------------------

    [Fact]
    public void VaeDecoderUsesTheSdxlScalingFactor()
    {
        using var model = XlTestModelFactory.CreateTemp(new XlTestModelOptions { SampleSize = 4 });
        using var session = Open(model.Path, "vae_decoder");
        var latents = Random(4 * 2 * 3, 5);
        var image = Run(session, ("latent_sample", Floats(latents, [1, 4, 2, 3], false)))["sample"];
        AssertClose(TestModelFactory.DecoderOutput(latents, 2, 3, 0.13025f), image, 1e-6, "decoded");
    }

    [Theory]
    [InlineData("PooledWidth")]
    [InlineData("TextEncoderLayers")]
    [InlineData("TextEncoderIdType")]
    [InlineData("prediction_type")]
    [InlineData("ExternalWeights")]
    public void InvalidOptionsAreRefusedByName(string what)
    {
        var o = what switch
        {
            "PooledWidth" => new XlTestModelOptions { PooledWidth = 6 },
            "TextEncoderLayers" => new XlTestModelOptions { TextEncoderLayers = 1 },
            "TextEncoderIdType" => new XlTestModelOptions { TextEncoderIdType = OnnxElementType.Float },
            "ExternalWeights" => new XlTestModelOptions { ExternalWeights = "weights.bin" },
            _ => new XlTestModelOptions { SchedulerConfigJson = """{"_class_name":"EulerDiscreteScheduler","prediction_type":"v_prediction"}""" },
        };
        var e = Assert.Throws<ArgumentException>(() => XlTestModelFactory.CreateTemp(o));
        Assert.Contains(what, e.Message, StringComparison.Ordinal);
    }
}

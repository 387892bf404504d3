using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Oracles;

using static MLNet.Diffusion.Tests.TestModels.OnnxGraphTestKit;

namespace MLNet.Diffusion.Tests.TestModels;

public class TestModelFactoryTests
{
    // ---- helpers ------------------------------------------------------------------------------------

    /// <summary>Only the training tables of a scheduler, so that GaussianOracle can compute ᾱ and the outputs.</summary>
    private sealed class TableScheduler(SchedulerConfig config) : DiffusionScheduler(config)
    {
        public override string Name => "TableOnly";
        public override float InitNoiseSigma => 1;
        protected override float[] ComputeTimesteps(int inferenceSteps) => throw new NotSupportedException();
        public override void Step(ReadOnlySpan<float> modelOutput, Span<float> sample, INoiseSource? noise = null) => throw new NotSupportedException();
        public override void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, int callIndex, Span<float> destination) => throw new NotSupportedException();
    }

    private static TableScheduler SchedulerOf(string root) =>
        new(SchedulerConfig.Load(Path.Combine(root, "scheduler", "scheduler_config.json")));

    private static float[][] Run(InferenceSession session, params (string Name, OrtValue Value)[] inputs)
    {
        using var options = new RunOptions();
        var outputNames = session.OutputMetadata.Keys.ToArray();
        try
        {
            using var outputs = session.Run(options, inputs.Select(i => i.Name).ToArray(), inputs.Select(i => i.Value).ToArray(), outputNames);
            return outputs.Select(ReadFloats).ToArray();
        }
        finally
        {
            foreach (var (_, v) in inputs) v.Dispose();
        }
    }

    private static void AssertInput(InferenceSession s, string name, TensorElementType type, params int[] dims) =>
        AssertNode(s.InputMetadata, name, type, dims);

    private static void AssertOutput(InferenceSession s, string name, TensorElementType type, params int[] dims) =>
        AssertNode(s.OutputMetadata, name, type, dims);

    private static readonly string[] s_prompts = ["a photo of a cat", ""];

    // ---- tokenizer ----------------------------------------------------------------------------------

    [Theory]
    [InlineData(null)]
    [InlineData("!")]
    public void TokenizerFilesHaveClipLayout(string? padToken)
    {
        using var model = TestModelFactory.CreateTemp(new TestModelOptions { PadToken = padToken });
        string dir = Path.Combine(model.Path, "tokenizer");

        using var vocabDoc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "vocab.json")));
        var vocab = vocabDoc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
        Assert.Equal(TestTokenizer.Vocabulary.Count, vocab.Count);
        Assert.Equal(Enumerable.Range(0, vocab.Count), vocab.Values.Order());
        Assert.Equal(0, vocab["!"]);
        Assert.Equal(256, vocab["!</w>"]);
        Assert.Equal(vocab.Count - 2, vocab["<|startoftext|>"]);
        Assert.Equal(vocab.Count - 1, vocab["<|endoftext|>"]);
        Assert.Equal(512, vocab.Keys.Count(k => k.Length == 1 || (k.Length == 5 && k.EndsWith("</w>", StringComparison.Ordinal))));

        var merges = File.ReadAllLines(Path.Combine(dir, "merges.txt"));
        Assert.Equal("#version: 0.2", merges[0]);
        Assert.True(merges.Length > 20);
        foreach (var line in merges.Skip(1))
        {
            var parts = line.Split(' ');
            Assert.Equal(2, parts.Length);
            Assert.True(vocab.ContainsKey(parts[0] + parts[1]), $"merge '{line}' has no vocabulary entry");
        }
        foreach (var word in TestTokenizer.Words)
            Assert.Equal([word + "</w>"], TestTokenizer.Bpe(word));
        Assert.Equal(["x", "y", "z</w>"], TestTokenizer.Bpe("xyz"));

        using var configDoc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer_config.json")));
        var config = configDoc.RootElement;
        Assert.Equal(77, config.GetProperty("model_max_length").GetInt32());
        Assert.Equal(padToken ?? "<|endoftext|>", config.GetProperty("pad_token").GetString());
        Assert.Equal("<|startoftext|>", config.GetProperty("bos_token").GetProperty("content").GetString());
        Assert.Equal("<|endoftext|>", config.GetProperty("eos_token").GetProperty("content").GetString());

        var ids = TestTokenizer.Encode("A  photo of a CAT!", padToken);
        long pad = padToken is null ? TestTokenizer.EndOfTextId : 0;
        Assert.Equal(
            new long[] { TestTokenizer.StartOfTextId, vocab["a</w>"], vocab["photo</w>"], vocab["of</w>"], vocab["a</w>"], vocab["cat</w>"], vocab["!</w>"], TestTokenizer.EndOfTextId },
            ids.Take(8));
        Assert.All(ids.Skip(8), id => Assert.Equal(pad, id));
        Assert.Equal(77, ids.Length);
        Assert.Equal(77, TestTokenizer.Encode(string.Join(' ', Enumerable.Repeat("dog", 200))).Length);
    }

    // ---- folder, metadata ---------------------------------------------------------------------------

    [Theory]
    [InlineData(false, OnnxElementType.Int32, TimestepForm.FloatBatch, null, VaeEncoderForm.LatentSample, 4, 768)]
    [InlineData(true, OnnxElementType.Int32, TimestepForm.FloatBatch, "weights.pb", VaeEncoderForm.LatentParameters, 4, 768)]
    [InlineData(false, OnnxElementType.Int64, TimestepForm.Int64Batch, "model.onnx_data", VaeEncoderForm.LatentParameters, 9, 1024)]
    [InlineData(true, OnnxElementType.Int64, TimestepForm.FloatScalar, "model.onnx_data", VaeEncoderForm.LatentSample, 9, 1024)]
    [InlineData(false, OnnxElementType.Int64, TimestepForm.FloatScalar, "weights.pb", VaeEncoderForm.LatentSample, 4, 1024)]
    [InlineData(true, OnnxElementType.Int32, TimestepForm.Int64Batch, null, VaeEncoderForm.LatentParameters, 4, 768)]
    public void ComponentsHaveTheContractMetadata(bool fp16, OnnxElementType idType, TimestepForm timestep, string? external,
        VaeEncoderForm encoder, int inChannels, int width)
    {
        var o = new TestModelOptions { Fp16 = fp16, IdType = idType, Timestep = timestep, ExternalWeights = external, Encoder = encoder, UnetInChannels = inChannels, EmbeddingWidth = width };
        using var model = TestModelFactory.CreateTemp(o);
        var f = fp16 ? TensorElementType.Float16 : TensorElementType.Float;

        using (var te = Open(model.Path, "text_encoder"))
        {
            Assert.Single(te.InputMetadata);
            AssertInput(te, "input_ids", idType == OnnxElementType.Int64 ? TensorElementType.Int64 : TensorElementType.Int32, -1, -1);
            AssertOutput(te, "last_hidden_state", f, -1, 77, width);
            AssertOutput(te, "pooler_output", f, -1, width);
        }
        using (var unet = Open(model.Path, "unet"))
        {
            Assert.Equal(["sample", "timestep", "encoder_hidden_states"], unet.InputNames);
            AssertInput(unet, "sample", f, -1, inChannels, -1, -1);
            switch (timestep)
            {
                case TimestepForm.FloatBatch: AssertInput(unet, "timestep", f, -1); break;
                case TimestepForm.Int64Batch: AssertInput(unet, "timestep", TensorElementType.Int64, -1); break;
                default: AssertInput(unet, "timestep", TensorElementType.Float); break;
            }
            AssertInput(unet, "encoder_hidden_states", f, -1, -1, width);
            Assert.Single(unet.OutputMetadata);
            AssertOutput(unet, "out_sample", f, -1, 4, -1, -1);
            Assert.Equal(["batch", "", "height", "width"], unet.InputMetadata["sample"].SymbolicDimensions);
        }
        using (var dec = Open(model.Path, "vae_decoder"))
        {
            AssertInput(dec, "latent_sample", f, -1, 4, -1, -1);
            AssertOutput(dec, "sample", f, -1, 3, -1, -1);
        }
        using (var enc = Open(model.Path, "vae_encoder"))
        {
            AssertInput(enc, "sample", f, -1, 3, -1, -1);
            Assert.Single(enc.OutputMetadata);
            if (encoder == VaeEncoderForm.LatentSample) AssertOutput(enc, "latent_sample", f, -1, 4, -1, -1);
            else AssertOutput(enc, "latent_parameters", f, -1, 8, -1, -1);
        }

        // External weights: the big tensors live beside model.onnx.
        if (external is not null)
        {
            Assert.True(new FileInfo(Path.Combine(model.Path, "unet", external)).Length > 4000);
            Assert.Equal(external == "model.onnx_data", File.Exists(Path.Combine(model.Path, "text_encoder", external)));
            Assert.True(new FileInfo(Path.Combine(model.Path, "unet", "model.onnx")).Length < 4000);
        }
        else Assert.Single(Directory.GetFiles(Path.Combine(model.Path, "unet"), "*", SearchOption.AllDirectories), p => !p.EndsWith("config.json", StringComparison.Ordinal));

        using var unetConfig = JsonDocument.Parse(File.ReadAllText(Path.Combine(model.Path, "unet", "config.json")));
        Assert.Equal(inChannels, unetConfig.RootElement.GetProperty("in_channels").GetInt32());
        Assert.Equal(8, unetConfig.RootElement.GetProperty("sample_size").GetInt32());
    }

    [Theory]
    [InlineData("epsilon", false)]
    [InlineData("v_prediction", true)]
    public void FolderHasIndexAndConfigs(string prediction, bool inpaint)
    {
        using var model = TestModelFactory.CreateTemp(new TestModelOptions { PredictionType = prediction, UnetInChannels = inpaint ? 9 : 4 });
        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(model.Path, "model_index.json")));
        var root = index.RootElement;
        Assert.Equal(inpaint ? "OnnxStableDiffusionInpaintPipeline" : "OnnxStableDiffusionPipeline", root.GetProperty("_class_name").GetString());
        foreach (var part in new[] { "text_encoder", "unet", "vae_decoder", "vae_encoder" })
            Assert.Equal("OnnxRuntimeModel", root.GetProperty(part)[1].GetString());
        Assert.Equal("CLIPTokenizer", root.GetProperty("tokenizer")[1].GetString());
        Assert.Equal("PNDMScheduler", root.GetProperty("scheduler")[1].GetString());

        var scheduler = SchedulerConfig.Load(Path.Combine(model.Path, "scheduler", "scheduler_config.json"));
        Assert.Equal("PNDMScheduler", scheduler.ClassName);
        Assert.Equal(0.012, scheduler.GetDouble("beta_end", 0));
        Assert.Equal(prediction != "epsilon", scheduler.Contains("prediction_type"));
        Assert.Equal(prediction == "epsilon" ? PredictionType.Epsilon : PredictionType.VPrediction, SchedulerMath.ParsePredictionType(scheduler));

        using var vae = JsonDocument.Parse(File.ReadAllText(Path.Combine(model.Path, "vae_decoder", "config.json")));
        Assert.Equal(0.18215, vae.RootElement.GetProperty("scaling_factor").GetDouble(), 6);
    }

    // ---- closed forms -------------------------------------------------------------------------------

    [Theory]
    [InlineData(OnnxElementType.Int32, false, 768)]
    [InlineData(OnnxElementType.Int64, true, 1024)]
    public void TextEncoderMatchesItsClosedForm(OnnxElementType idType, bool fp16, int width)
    {
        var o = new TestModelOptions { IdType = idType, Fp16 = fp16, EmbeddingWidth = width };
        using var model = TestModelFactory.CreateTemp(o);
        using var session = Open(model.Path, "text_encoder");
        var ids = s_prompts.SelectMany(p => TestTokenizer.Encode(p)).ToArray();
        var input = idType == OnnxElementType.Int64
            ? OrtValue.CreateTensorValueFromMemory(ids, [2, 77])
            : OrtValue.CreateTensorValueFromMemory(Array.ConvertAll(ids, i => (int)i), [2, 77]);
        var outputs = Run(session, ("input_ids", input));
        double tol = fp16 ? 1e-2 : 1e-5;
        for (int b = 0; b < 2; b++)
        {
            var row = ids.AsSpan(b * 77, 77);
            AssertClose(TestModelFactory.TextHiddenStates(row, width), outputs[0].AsSpan(b * 77 * width, 77 * width), tol, "last_hidden_state");
            AssertClose(TestModelFactory.PooledOutput(row, width), outputs[1].AsSpan(b * width, width), tol, "pooler_output");
            AssertClose(TestModelFactory.TargetLatentForIds(row, width), TestModelFactory.TargetLatent(outputs[0].AsSpan(b * 77 * width, 77 * width), width), tol, "target");
        }
    }

    [Fact]
    public void TargetsAreModerateAndDifferBetweenPrompts()
    {
        string[] prompts = ["", "a photo of a cat", "a photo of a dog", "a dog photo of a", "an astronaut riding a horse", "the red painting", "xyzzy"];
        var targets = prompts.Select(p => TestModelFactory.TargetLatentForPrompt(p)).ToArray();
        var sd2 = new TestModelOptions { EmbeddingWidth = 1024, PadToken = "!" };
        targets = [.. targets, .. prompts.Select(p => TestModelFactory.TargetLatentForPrompt(p, sd2))];
        foreach (var t in targets) Assert.All(t, v => Assert.InRange(Math.Abs(v), 0.0, 0.95));
        for (int i = 0; i < prompts.Length; i++)
            for (int j = 0; j < i; j++)
            {
                double d = 0;
                for (int ch = 0; ch < 4; ch++) d = Math.Max(d, Math.Abs(targets[i][ch] - targets[j][ch]));
                Assert.True(d > 0.02, $"'{prompts[i]}' and '{prompts[j]}' have nearly the same target ({d}).");
            }
    }

    public static TheoryData<string, bool, TimestepForm, int, float> UnetCases() => new()
    {
        { "epsilon", false, TimestepForm.FloatBatch, 4, 0 },
        { "epsilon", true, TimestepForm.FloatBatch, 4, 0 },
        { "v_prediction", false, TimestepForm.FloatScalar, 4, 0 },
        { "sample", false, TimestepForm.Int64Batch, 4, 0 },
        { "epsilon", false, TimestepForm.Int64Batch, 9, 0 },
        { "v_prediction", true, TimestepForm.FloatScalar, 9, 0 },
        { "sample", true, TimestepForm.FloatBatch, 9, 0 },
        { "epsilon", false, TimestepForm.FloatBatch, 4, 0.5f },
        { "v_prediction", false, TimestepForm.FloatBatch, 4, 0.5f },
        { "sample", false, TimestepForm.FloatScalar, 9, 0.5f },
        { "epsilon", true, TimestepForm.Int64Batch, 9, 1f },
    };

    [Theory]
    [MemberData(nameof(UnetCases))]
    public void UnetMatchesTheGaussianOracle(string prediction, bool fp16, TimestepForm form, int inChannels, float dataStd)
    {
        var o = new TestModelOptions { PredictionType = prediction, Fp16 = fp16, Timestep = form, UnetInChannels = inChannels, DataStd = dataStd };
        using var model = TestModelFactory.CreateTemp(o);
        var scheduler = SchedulerOf(model.Path);
        using var session = Open(model.Path, "unet");
        const int h = 2, w = 3, hw = h * w, d = 768;

        var hidden = s_prompts.SelectMany(p => TestModelFactory.TextHiddenStates(TestTokenizer.Encode(p), d)).ToArray();
        var sample = Random(2 * inChannels * hw, 7);
        if (inChannels == 9)
            for (int b = 0; b < 2; b++)
                for (int i = 0; i < hw; i++)
                {
                    float m = (i + b) % 2;
                    sample[(b * 9 + 4) * hw + i] = m;
                }
        if (fp16)
        {
            // The oracle sees what the model sees: inputs rounded to half precision.
            sample = Array.ConvertAll(sample, v => (float)(Half)v);
            hidden = Array.ConvertAll(hidden, v => (float)(Half)v);
        }

        // Integer and fractional timesteps (both exact in float16); rank-0 and int64 forms get one each way they can.
        double[][] calls = form switch
        {
            TimestepForm.FloatBatch => [[500, 300.25], [999, 0]],
            TimestepForm.Int64Batch => [[500, 999], [0, 1]],
            _ => [[500], [300.25], [981.5]],
        };
        foreach (var ts in calls)
        {
            OrtValue t = form switch
            {
                TimestepForm.FloatBatch => Floats(Array.ConvertAll(ts, v => (float)v), [2], fp16),
                TimestepForm.Int64Batch => OrtValue.CreateTensorValueFromMemory(Array.ConvertAll(ts, v => (long)v), [2]),
                _ => OrtValue.CreateTensorValueFromMemory(new[] { (float)ts[0] }, []),
            };
            var output = Run(session,
                ("sample", Floats(sample, [2, inChannels, h, w], fp16)),
                ("timestep", t),
                ("encoder_hidden_states", Floats(hidden, [2, 77, d], fp16)))[0];
            Assert.Equal(2 * 4 * hw, output.Length);

            for (int b = 0; b < 2; b++)
            {
                var target = TestModelFactory.TargetLatent(hidden.AsSpan(b * 77 * d, 77 * d), d);
                float[] mean = TestModelFactory.ExpandTarget(target, h, w);
                var x = sample.AsSpan(b * inChannels * hw, 4 * hw).ToArray();
                if (inChannels == 9)
                    mean = TestModelFactory.InpaintTarget(target, sample.AsSpan((b * 9 + 4) * hw, hw), sample.AsSpan((b * 9 + 5) * hw, 4 * hw), h, w);
                var expected = new float[4 * hw];
                new GaussianOracle(scheduler, mean, dataStd).Predict(x, ts[ts.Length == 1 ? 0 : b], expected);
                AssertClose(expected, output.AsSpan(b * 4 * hw, 4 * hw), fp16 ? 1e-2 : 1e-4, $"{prediction} t={ts[ts.Length == 1 ? 0 : b]} row {b}");
            }
        }
    }

    [Fact]
    public void InpaintingUnetNoticesAWrongChannelOrder()
    {
        var o = new TestModelOptions { UnetInChannels = 9, PredictionType = "sample" };
        using var model = TestModelFactory.CreateTemp(o);
        using var session = Open(model.Path, "unet");
        const int h = 2, w = 2, hw = h * w;
        var hidden = TestModelFactory.TextHiddenStates(TestTokenizer.Encode("a photo of a cat"));
        var x = Random(4 * hw, 1);
        float[] mask = [1, 0, 0, 1];
        var masked = Random(4 * hw, 2, 0.5f);
        float[] Call(params float[][] parts) => Run(session,
            ("sample", OrtValue.CreateTensorValueFromMemory(parts.SelectMany(p => p).ToArray(), [1, 9, h, w])),
            ("timestep", OrtValue.CreateTensorValueFromMemory(new[] { 400f }, [1])),
            ("encoder_hidden_states", OrtValue.CreateTensorValueFromMemory(hidden, [1, 77, 768])))[0];

        var right = Call(x, mask, masked);
        var expected = TestModelFactory.InpaintTarget(TestModelFactory.TargetLatent(hidden), mask, masked, h, w);
        AssertClose(expected, right, 1e-5, "x0");
        // Where the mask is 0 the masked-image latents come through; where it is 1, the text target.
        Assert.Equal(masked[1], right[1], 5);
        Assert.Equal(TestModelFactory.TargetLatent(hidden)[2], right[2 * hw], 5);

        var swapped = Call(x, masked, mask); // masked-image latents first: wrong
        Assert.True(right.Zip(swapped).Max(p => Math.Abs(p.First - p.Second)) > 0.1);
    }

    [Theory]
    [InlineData(false, VaeEncoderForm.LatentSample)]
    [InlineData(true, VaeEncoderForm.LatentParameters)]
    public void VaeMatchesItsClosedFormsAndRoundTrips(bool fp16, VaeEncoderForm form)
    {
        var o = new TestModelOptions { Fp16 = fp16, Encoder = form };
        using var model = TestModelFactory.CreateTemp(o);
        double tol = fp16 ? 1e-2 : 1e-5;
        const float s = 0.18215f;

        using (var dec = Open(model.Path, "vae_decoder"))
        {
            var latents = Random(2 * 4 * 2 * 3, 3, 4);
            var image = Run(dec, ("latent_sample", Floats(latents, [2, 4, 2, 3], fp16)))[0];
            for (int b = 0; b < 2; b++)
                AssertClose(TestModelFactory.DecoderOutput(latents.AsSpan(b * 24, 24), 2, 3, s), image.AsSpan(b * 3 * 16 * 24, 3 * 16 * 24), tol, "decoded");
        }

        using var enc = Open(model.Path, "vae_encoder");
        var img = Random(3 * 16 * 24, 4, 0.4f);
        var encoded = Run(enc, ("sample", Floats(img, [1, 3, 16, 24], fp16)))[0];
        var mean = TestModelFactory.EncoderOutput(img, 16, 24, s);
        if (form == VaeEncoderForm.LatentSample) AssertClose(mean, encoded, tol, "latent_sample");
        else
        {
            Assert.Equal(8 * 6, encoded.Length);
            AssertClose(mean, encoded.AsSpan(0, 24), tol, "latent mean");
            Assert.All(encoded.Skip(24), v => Assert.Equal(TestModelFactory.EncoderLogVariance, v));
        }

        // The engine's path: z = s·encode(img); decode(z / s) = the 8×8 block average of the image.
        var decoded = TestModelFactory.DecoderOutput(mean, 2, 3, s);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 24; x++)
                {
                    double avg = 0;
                    for (int dy = 0; dy < 8; dy++)
                        for (int dx = 0; dx < 8; dx++)
                            avg += img[(c * 16 + y / 8 * 8 + dy) * 24 + x / 8 * 8 + dx];
                    Assert.Equal(avg / 64, decoded[(c * 16 + y) * 24 + x], 5);
                }
    }

    [Fact]
    public void DdimWithTheOracleUnetLandsOnTheTarget()
    {
        var o = new TestModelOptions();
        using var model = TestModelFactory.CreateTemp(o);
        var abar = SchedulerOf(model.Path).AlphasCumprod;
        using var session = Open(model.Path, "unet");
        var hidden = TestModelFactory.TextHiddenStates(TestTokenizer.Encode("a red dog"));
        var x = Random(4 * 8 * 8, 11);
        int[] steps = [981, 741, 501, 261, 21];
        for (int i = 0; i < steps.Length; i++)
        {
            double a = abar[steps[i]], aNext = i + 1 < steps.Length ? abar[steps[i + 1]] : 1;
            var eps = Run(session,
                ("sample", OrtValue.CreateTensorValueFromMemory(x, [1, 4, 8, 8])),
                ("timestep", OrtValue.CreateTensorValueFromMemory(new[] { (float)steps[i] }, [1])),
                ("encoder_hidden_states", OrtValue.CreateTensorValueFromMemory(hidden, [1, 77, 768])))[0];
            for (int k = 0; k < x.Length; k++)
            {
                double x0 = (x[k] - Math.Sqrt(1 - a) * eps[k]) / Math.Sqrt(a);
                x[k] = (float)(Math.Sqrt(aNext) * x0 + Math.Sqrt(1 - aNext) * eps[k]);
            }
        }
        AssertClose(TestModelFactory.ExpandTarget(TestModelFactory.TargetLatent(hidden), 8, 8), x, 1e-3, "final latents");
    }

    // ---- determinism, broken folders ----------------------------------------------------------------

    [Fact]
    public void TwoBuildsGiveIdenticalBytes()
    {
        var o = new TestModelOptions { Fp16 = true, ExternalWeights = "model.onnx_data", UnetInChannels = 9 };
        using var a = TestModelFactory.CreateTemp(o);
        using var b = TestModelFactory.CreateTemp(o);
        var files = Directory.GetFiles(a.Path, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(a.Path, f)).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(files, Directory.GetFiles(b.Path, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(b.Path, f)).Order(StringComparer.Ordinal));
        Assert.Contains(Path.Combine("unet", "model.onnx_data"), files);
        foreach (var f in files)
            Assert.True(File.ReadAllBytes(Path.Combine(a.Path, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(b.Path, f))), $"{f} differs");
    }

    [Fact]
    public void BrokenFoldersAreBrokenAsDescribed()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-broken-");
        try
        {
            string without = TestModelFactory.CreateWithout(Path.Combine(dir.FullName, "no-unet"), "unet");
            Assert.False(Directory.Exists(Path.Combine(without, "unet")));
            Assert.True(File.Exists(Path.Combine(without, "text_encoder", "model.onnx")));

            string noWeights = TestModelFactory.CreateWithout(Path.Combine(dir.FullName, "no-weights"), "unet/weights.pb", new TestModelOptions { ExternalWeights = "weights.pb" });
            Assert.ThrowsAny<OnnxRuntimeException>(() => Open(noWeights, "unet").Dispose());

            string rank3 = TestModelFactory.CreateWithWrongSampleRank(Path.Combine(dir.FullName, "rank3"));
            using (var unet = Open(rank3, "unet"))
                Assert.Equal(3, unet.InputMetadata["sample"].Dimensions.Length);

            string corrupt = TestModelFactory.CreateWithCorruptFile(Path.Combine(dir.FullName, "corrupt"), "vae_decoder/model.onnx");
            Assert.ThrowsAny<OnnxRuntimeException>(() => Open(corrupt, "vae_decoder").Dispose());

            Assert.Throws<ArgumentException>(() => TestModelFactory.CreateWithout(Path.Combine(dir.FullName, "bad"), "../outside"));
        }
        finally { dir.Delete(true); }
    }
}

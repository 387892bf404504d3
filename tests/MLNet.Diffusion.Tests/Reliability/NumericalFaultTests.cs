using System.Globalization;
using System.Text.Json.Nodes;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.ImageToImage;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>
/// Issue 8, point 3: NaN or ±Infinity in a model's output or in the latents is reported at the step where it appears
/// (stage, step, timestep, image), never written out as a black image. Issue 12: the report says what is known (file,
/// float16 or not, finite inputs, scheduler and σ), and a schedule whose numbers cannot work is refused at load.
/// </summary>
public class NumericalFaultTests(PipelineCache cache) : IClassFixture<PipelineCache>
{
    private const string Prompt = "a photo of a red cat";

    /// <summary>DDIM with SD 1.5's "leading" spacing and steps_offset 1: 10 steps call the UNet at 901, 801, …, 1.</summary>
    private static readonly GenerationOptions TenDdimSteps = new() { Steps = 10, Scheduler = "ddim" };

    /// <summary>ᾱ_t of SD 1.5's schedule (scaled_linear 0.00085 → 0.012 over 1000 steps).</summary>
    private static double Sd15AlphaBar(int t) =>
        SchedulerMath.AlphasCumprod(SchedulerMath.Betas(SchedulerConfig.Parse(TestModelOptions.Sd15PndmSchedulerConfig), 1000))[t];

    [Fact]
    public void NanFromTheUNetIsReportedAtTheStepWhereItAppears()
    {
        var pipeline = cache.Get(new TestModelOptions { NanBelowTimestep = 500 });
        long before = pipeline.UNet.RunCount;
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 3, TenDdimSteps));
        Assert.Equal(DiffusionStage.Denoising, e.Stage);
        Assert.Equal("UNet output", e.Tensor);
        Assert.Equal(6, e.Step); // 901, 801, 701, 601, 501 are fine; 401 is the first below 500
        Assert.Equal(10, e.TotalSteps);
        Assert.Equal(401f, e.Timestep);
        Assert.Equal(0, e.ImageIndex);
        Assert.Equal(4 * 8 * 8, e.NaNCount);
        Assert.Equal(0, e.InfinityCount);
        Assert.Equal(6, pipeline.UNet.RunCount - before); // it stopped there: no more model calls, no decoding
        // What is known, not a guess: the file, its float32 boundaries, finite inputs, the scheduler and its σ at that step.
        double sigma = Math.Sqrt((1 - Sd15AlphaBar(401)) / Sd15AlphaBar(401));
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"denoising step 6 of 10 (timestep 401, DDIMScheduler, σ {sigma:G4})"), e.Message);
        Assert.Equal("unet/model.onnx", e.ModelFile);
        Assert.False(e.ModelIsFloat16);
        Assert.True(e.InputsFinite);
        Assert.Equal("DDIMScheduler", e.SchedulerName);
        Assert.Equal(sigma, e.Sigma!.Value, 1e-9);
        Assert.Contains("float32 model 'unet/model.onnx' produced them from finite inputs", e.Message);
        Assert.DoesNotContain("float16", e.Message); // the model is float32: no guess about float16 overflow
        Assert.IsAssignableFrom<InvalidOperationException>(e);
    }

    [Fact]
    public void WithoutGuidanceAndInABatchTheFaultNamesTheRequest()
    {
        // Request 0 (strength 0) needs no UNet call; request 1 (strength 0.35) keeps the last 3 of 10 steps, from timestep 201, so
        // its group meets the NaN at its first call, and the fault names request 1.
        var pipeline = cache.Get(new TestModelOptions { NanBelowTimestep = 500 });
        using var init = ImageToImageTestKit.BlockImage(64, 64);
        ImagePrompt[] requests = [new(Prompt, 1) { InitImage = init, Strength = 0 }, new(Prompt, 2) { InitImage = init, Strength = 0.35f }];
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(requests, new GenerationOptions { Steps = 10, Scheduler = "ddim", GuidanceScale = 1 }));
        Assert.Equal(DiffusionStage.Denoising, e.Stage);
        Assert.Equal(1, e.ImageIndex);
        Assert.Equal(8, e.Step); // the schedule's 8th call: strength 0.35 of 10 steps skips 7
        Assert.Equal(10, e.TotalSteps);
        Assert.Equal(201f, e.Timestep);
    }

    [Fact]
    public void Fp16OverflowBecomesInfinityAndIsCaught()
    {
        // The UNet multiplies its output by 10⁹ below timestep 150, i.e. at the last two calls (101 and 1).
        var noGuidance = new GenerationOptions { Steps = 10, Scheduler = "ddim", GuidanceScale = 1 };
        var pipeline = cache.Get(new TestModelOptions { Fp16 = true, OverflowBelowTimestep = 150 });
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 5, noGuidance));
        Assert.Equal(DiffusionStage.Denoising, e.Stage);
        Assert.Equal(9, e.Step);
        Assert.Equal(101f, e.Timestep);
        Assert.Equal(4 * 8 * 8, e.InfinityCount);
        Assert.True(e.ModelIsFloat16);
        Assert.Contains("float16 model 'unet/model.onnx' produced them from finite inputs: float16 overflow is the usual cause", e.Message);
        // With guidance, ∞ − ∞ makes the guided prediction NaN: still caught at the same step.
        var guided = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 5, TenDdimSteps));
        Assert.Equal(9, guided.Step);
        Assert.True(guided.NaNCount > 0);
        Assert.False(guided.ModelOutputFinite); // the UNet's own output overflowed, not the guidance arithmetic
        Assert.Contains("float16 overflow is the usual cause", guided.Message);
        // In float32 the same outputs fit (10⁹ and then 10¹⁸), so the check raises no false alarm.
        var fp32 = cache.Get(new TestModelOptions { OverflowBelowTimestep = 150 });
        fp32.Generate(Prompt, 5, noGuidance).Image.Dispose();
    }

    [Fact]
    public void NanFromTheTextEncoderStopsBeforeTheUNet()
    {
        var pipeline = cache.Get(new TestModelOptions { NanTextEncoder = true });
        long before = pipeline.UNet.RunCount;
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 1, new GenerationOptions { Steps = 2 }));
        Assert.Equal(DiffusionStage.EncodingText, e.Stage);
        Assert.Equal("text encoder output", e.Tensor);
        Assert.Null(e.Timestep);
        Assert.Null(e.SchedulerName);
        Assert.Equal("text_encoder/model.onnx", e.ModelFile);
        Assert.True(e.InputsFinite); // token ids
        Assert.Equal(0, pipeline.UNet.RunCount - before);
    }

    [Fact]
    public void NanFromTheVaeDecoderIsNotWrittenAsABlackImage()
    {
        var pipeline = cache.Get(new TestModelOptions { NanVaeDecoder = true });
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate([new ImagePrompt(Prompt, 1), new ImagePrompt(Prompt, 2)], new GenerationOptions { Steps = 2 }));
        Assert.Equal(DiffusionStage.Decoding, e.Stage);
        Assert.Equal("VAE decoder output", e.Tensor);
        Assert.Equal(1, e.Step);
        Assert.Equal(2, e.TotalSteps);
        Assert.Equal(0, e.ImageIndex);
        Assert.Equal(3 * 64 * 64, e.NaNCount);
    }

    [Fact]
    public void ThePipelineStaysUsableAfterAFault()
    {
        // Every schedule ends below timestep 500, so this model always faults; its other stages still work after it.
        var pipeline = cache.Get(new TestModelOptions { NanBelowTimestep = 500 });
        Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 3, TenDdimSteps));
        Assert.True(NonFiniteLatentsException.AllFinite(pipeline.EncodeText([Prompt])));
        using var decoded = pipeline.Decode(new float[4 * 8 * 8], 1, 8, 8)[0];
        Assert.Equal(64, decoded.Width);
        Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 3, TenDdimSteps));
    }

    [Fact]
    public void NonFiniteLatentsGivenToTheVaeDecoderAreBlamedUpstreamNotOnTheModel()
    {
        var pipeline = cache.Get();
        var latents = new float[4 * 8 * 8];
        latents[17] = float.NaN;
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Decode(latents, 1, 8, 8));
        Assert.Equal("vae_decoder/model.onnx", e.ModelFile);
        Assert.False(e.InputsFinite);
        Assert.Contains("The inputs given to 'vae_decoder/model.onnx' already held non-finite values", e.Message);
        Assert.DoesNotContain("float16", e.Message);
    }

    [Fact]
    public void AnOverflowInTheSchedulerStepNamesTheSchedulerAndTheFiniteModelOutput()
    {
        // A UNet whose output is finite but near float32's largest value (3·10³⁸): Euler's step x + (σ_next − σ)·ε overflows.
        using var folder = TestModelFactory.CreateTemp();
        foreach (var file in Directory.GetFiles(Path.Combine(folder.Path, "unet"), "*.onnx*")) File.Delete(file);
        var g = new OnnxGraphBuilder("huge_output_unet");
        var sample = g.Input("sample", OnnxElementType.Float, "batch", 4, "height", "width");
        g.Input("timestep", OnnxElementType.Float, "batch");
        g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "sequence", 768);
        g.Identity(g.Add(g.Mul(sample, g.Scalar(0f)), g.Scalar(3e38f)), "out_sample");
        g.Output("out_sample", OnnxElementType.Float, "batch", 4, "height", "width");
        g.Save(Path.Combine(folder.Path, "unet", "model.onnx"));
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var e = Assert.Throws<NonFiniteLatentsException>(() => pipeline.Generate(Prompt, 1, new GenerationOptions { Steps = 2, Scheduler = "euler" }));
        Assert.Equal("latents after the scheduler step", e.Tensor);
        Assert.Equal(1, e.Step);
        Assert.Equal("EulerDiscreteScheduler", e.SchedulerName);
        Assert.True(e.ModelOutputFinite);
        Assert.Contains("The output of 'unet/model.onnx' was finite (largest magnitude 3E+38), so the scheduler step overflowed float32", e.Message);
        Assert.DoesNotContain("float16", e.Message);
    }

    // ---- the schedule's numbers are checked when the configuration is loaded ----------------------------------

    /// <summary>SD 1.5's scheduler configuration with some keys replaced (null removes a key).</summary>
    private static string Sd15With(params (string Key, JsonNode? Value)[] changes)
    {
        var node = JsonNode.Parse(TestModelOptions.Sd15PndmSchedulerConfig)!.AsObject();
        foreach (var (key, value) in changes)
        {
            if (value is null) node.Remove(key);
            else node[key] = value;
        }
        return node.ToJsonString();
    }

    /// <summary>Bad schedules, each with the words its refusal must contain (the key, the value, the allowed range).</summary>
    public static TheoryData<string, string, string[]> BadSchedules => new()
    {
        { "beta_end below beta_start", Sd15With(("beta_start", 0.012), ("beta_end", 0.00085)), ["beta_start is 0.012", "beta_end is 0.00085", "0 < beta_start ≤ beta_end < 1"] },
        { "beta_start zero", Sd15With(("beta_start", 0.0)), ["beta_start is 0,", "0 < beta_start ≤ beta_end < 1"] },
        { "beta_end near 1", Sd15With(("beta_end", 0.999)), ["beta_end 0.999", "num_train_timesteps 1000", "at least 1.18E-38", "σ_max"] },
        { "a linear schedule to 0.5", Sd15With(("beta_schedule", "linear"), ("beta_end", 0.5)), ["beta_end 0.5", "ᾱ = 3.1E-134 at the last timestep", "at least 1.18E-38"] },
        { "num_train_timesteps 100000", Sd15With(("num_train_timesteps", 100_000)), ["num_train_timesteps is 100000", "from 2 to 10000"] },
        { "num_train_timesteps 1", Sd15With(("num_train_timesteps", 1)), ["num_train_timesteps is 1", "from 2 to 10000"] },
        { "a trained beta above 1", Sd15With(("num_train_timesteps", 4), ("steps_offset", 0), ("trained_betas", new JsonArray(0.1, 0.2, 1.5, 0.3))), ["trained_betas[2] is 1.5", "(0, 1)"] },
        { "a trained beta of 0", Sd15With(("num_train_timesteps", 4), ("steps_offset", 0), ("trained_betas", new JsonArray(0.1, 0.0, 0.2, 0.3))), ["trained_betas[1] is 0", "(0, 1)"] },
        { "trained betas that underflow", Sd15With(("trained_betas", new JsonArray(Enumerable.Repeat(0.9, 1000).Select(b => (JsonNode?)b).ToArray()))), ["trained_betas over num_train_timesteps 1000", "ᾱ = 0", "at least"] },
        // Heun's class defaults are 0.00085 → 0.012: a file with only beta_start 0.015 passes the shared defaults
        // (beta_end 0.02) and is refused when the folder's scheduler is built, still at load.
        { "a start above the class's default end", Sd15With(("_class_name", "HeunDiscreteScheduler"), ("beta_end", null), ("beta_start", 0.015)), ["beta_start is 0.015", "beta_end is 0.012"] },
    };

    [Theory]
    [MemberData(nameof(BadSchedules))]
    public void ABadScheduleIsRefusedAtLoadNamingTheKeyTheValueAndTheRange(string name, string schedulerJson, string[] expected)
    {
        using var folder = TestModelFactory.CreateTemp();
        File.WriteAllText(Path.Combine(folder.Path, "scheduler", "scheduler_config.json"), schedulerJson);
        var e = Assert.Throws<InvalidDataException>(() => StableDiffusionPipeline.Load(folder.Path).Dispose());
        Assert.Contains("scheduler_config.json", e.Message);
        foreach (var text in expected) Assert.True(e.Message.Contains(text, StringComparison.Ordinal), $"{name}: '{text}' is not in: {e.Message}");
    }

    [Fact]
    public void RealSchedulesPassTheChecks()
    {
        // SD 1.5 (scaled_linear), the cosine schedule (ᾱ_T ≈ 2.4·10⁻⁹), zero-SNR rescaling (ᾱ_T = 0 on purpose) and 10000 steps.
        foreach (var json in new[]
        {
            TestModelOptions.Sd15PndmSchedulerConfig,
            Sd15With(("beta_schedule", "squaredcos_cap_v2")),
            Sd15With(("_class_name", "DDIMScheduler"), ("rescale_betas_zero_snr", true), ("timestep_spacing", "trailing")),
            Sd15With(("num_train_timesteps", 10_000)),
        })
            SchedulerMath.ValidateSchedule(SchedulerConfig.Parse(json));
        var cosine = SchedulerMath.AlphasCumprod(SchedulerMath.Betas(SchedulerConfig.Parse(Sd15With(("beta_schedule", "squaredcos_cap_v2"))), 1000));
        Assert.InRange(cosine[^1], 1e-9, 1e-8);
    }

    [Fact]
    public void TheCheckIsExactForEveryKindOfNonFiniteValue()
    {
        float[] values = new float[1000];
        Assert.True(NonFiniteLatentsException.AllFinite(values));
        values[999] = float.MaxValue;
        values[3] = -float.MaxValue;
        Assert.True(NonFiniteLatentsException.AllFinite(values));
        foreach (var bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, BitConverter.Int32BitsToSingle(0x7FC00001), BitConverter.Int32BitsToSingle(unchecked((int)0xFFC00000)) })
            for (int at = 0; at < values.Length; at += 97)
            {
                var copy = (float[])values.Clone();
                copy[at] = bad;
                Assert.False(NonFiniteLatentsException.AllFinite(copy), $"{bad} at {at}");
            }
    }
}

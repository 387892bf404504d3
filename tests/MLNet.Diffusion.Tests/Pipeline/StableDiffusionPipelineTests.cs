using Microsoft.Extensions.Logging;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Support;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Pipeline;

public class StableDiffusionPipelineTests
{
    private const string Prompt = "a photo of a red cat";

    /// <summary>SD 1.5's schedule with set_alpha_to_one = true: DDIM and PNDM then end at ᾱ = 1, exactly on the
    /// oracle's target. (SD 1.5's own config stops at ᾱ_0 = 0.99915, leaving noise of σ ≈ 0.029 in the latents.)</summary>
    private const string ExactEndConfig = """{"_class_name":"PNDMScheduler","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,"set_alpha_to_one":true,"skip_prk_steps":true,"steps_offset":1,"clip_sample":false}""";

    public static TheoryData<OnnxElementType, TimestepForm, bool, string?> InputForms => new()
    {
        { OnnxElementType.Int32, TimestepForm.FloatBatch, false, null },
        { OnnxElementType.Int64, TimestepForm.Int64Batch, false, "model.onnx_data" },
        { OnnxElementType.Int64, TimestepForm.FloatScalar, false, null },
        { OnnxElementType.Int32, TimestepForm.FloatBatch, true, "weights.pb" },
        { OnnxElementType.Int64, TimestepForm.Int64Batch, true, null },
        { OnnxElementType.Int32, TimestepForm.FloatScalar, true, null },
    };

    [Theory]
    [MemberData(nameof(InputForms))]
    public void EveryExportFormGeneratesTheOracleTarget(OnnxElementType ids, TimestepForm timestep, bool fp16, string? external)
    {
        var o = new TestModelOptions { IdType = ids, Timestep = timestep, Fp16 = fp16, ExternalWeights = external, SchedulerConfigJson = ExactEndConfig };
        using var folder = TestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var result = pipeline.Generate([new ImagePrompt(Prompt, 7)], new GenerationOptions { Steps = 20, GuidanceScale = 3, Scheduler = "ddim" })[0];
        var expected = ExpectedLatents(Prompt, "", 3, 8, 8, o);
        // Integer timesteps are exact; fp16 rounds every UNet input and output to 11 bits.
        Assert.True(MaxAbsDiff(result.Latents, expected) < (fp16 ? 3e-2 : 2e-3), $"max error {MaxAbsDiff(result.Latents, expected)}");
        Assert.Equal(64, result.Image.Width);
        Assert.Equal(64, result.Image.Height);
        // The test VAE decodes latent value z to pixel z in every 8×8 block: check the image's colour.
        var px = result.Image.Pixels;
        for (int c = 0; c < 3; c++)
            Assert.InRange(px[c], ExpectedByte(expected[c * 64]) - 3, ExpectedByte(expected[c * 64]) + 3);
        result.Image.Dispose();
    }

    [Theory]
    [InlineData("pndm", 50)]
    [InlineData("ddim", 50)]
    [InlineData("ddpm", 50)]
    [InlineData("lms", 30)]
    [InlineData("euler", 30)]
    [InlineData("euler-a", 30)]
    [InlineData("dpm++2m", 25)]
    [InlineData("dpm++2m-karras", 25)]
    [InlineData("dpm++2m-sde", 25)]
    [InlineData("dpm++2m-sde-karras", 25)]
    [InlineData("heun", 25)]
    [InlineData("kdpm2", 25)]
    [InlineData("lcm", 6)]
    [InlineData("unipc", 20)]
    [InlineData("unipc-karras", 20)]
    [InlineData("deis", 20)]
    [InlineData("dpm++2s", 20)]
    public void EverySchedulerReachesTheGuidedTargetThroughThePipeline(string scheduler, int steps)
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { SchedulerConfigJson = ExactEndConfig });
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var result = pipeline.Generate([new ImagePrompt(Prompt, 11) { NegativePrompt = "blue dog" }],
            new GenerationOptions { Steps = steps, GuidanceScale = 2.5f, Scheduler = scheduler })[0];
        var expected = ExpectedLatents(Prompt, "blue dog", 2.5f, 8, 8);
        double error = MaxAbsDiff(result.Latents, expected);
        // DEIS ends at σ_min, not 0 (log ρ has no value at 0): that much of the start's noise stays, |ε| < 5 here.
        double tolerance = 2e-2 + (scheduler == "deis" ? 5 * SigmaMinOf(pipeline) : 0);
        Assert.True(error < tolerance, $"{scheduler}: max error {error}");
        result.Image.Dispose();
    }

    private static double SigmaMinOf(StableDiffusionPipeline pipeline)
    {
        var deis = (DeisMultistepScheduler)SchedulerFactory.Create("deis", pipeline.SchedulerConfig);
        deis.SetTimesteps(1);
        return deis.Sigmas[^1];
    }

    [Fact]
    public void Sd2StyleModelWithVPredictionAndBangPaddingRuns()
    {
        var o = new TestModelOptions
        {
            EmbeddingWidth = 1024,
            PredictionType = "v_prediction",
            PadToken = "!",
            SchedulerConfigJson = """{"_class_name":"EulerDiscreteScheduler","beta_start":0.00085,"beta_end":0.012,"beta_schedule":"scaled_linear","num_train_timesteps":1000,"prediction_type":"v_prediction","steps_offset":1,"timestep_spacing":"leading"}""",
        };
        using var folder = TestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.Equal(TestTokenizer.TokenId("!"), pipeline.TextEncoder.Tokenizer.PadId);
        var result = pipeline.Generate(Prompt, 3, new GenerationOptions { Steps = 30, GuidanceScale = 1 });
        Assert.True(MaxAbsDiff(result.Latents, ExpectedLatents(Prompt, "", 1, 8, 8, o)) < 2e-2);
        result.Image.Dispose();
    }

    [Fact]
    public void SameSeedGivesIdenticalBytesAndOtherSeedsDiffer()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        // SD 1.5's DDIM ends at σ ≈ 0.029, so each seed's noise still shows in the image.
        var options = new GenerationOptions { Steps = 3, Scheduler = "ddim" };
        using var a = pipeline.Generate(Prompt, 1, options).Image;
        using var b = pipeline.Generate(Prompt, 1, options).Image;
        using var c = pipeline.Generate(Prompt, 2, options).Image;
        Assert.Equal(a.Pixels.ToArray(), b.Pixels.ToArray());
        Assert.NotEqual(a.Pixels.ToArray(), c.Pixels.ToArray());
    }

    [Fact]
    public void BatchedImagesEqualImagesGeneratedAlone()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var options = new GenerationOptions { Steps = 4, Scheduler = "euler-a" };
        var requests = new[] { new ImagePrompt("red cat", 5), new ImagePrompt("blue dog", 6) { GuidanceScale = 1 }, new ImagePrompt("the horse", 7) { NegativePrompt = "cat" } };
        var batch = pipeline.Generate(requests, options);
        for (int i = 0; i < requests.Length; i++)
        {
            var alone = pipeline.Generate([requests[i]], options)[0];
            Assert.True(MaxAbsDiff(batch[i].Latents, alone.Latents) < 1e-5, $"image {i} differs in a batch");
            alone.Image.Dispose();
            batch[i].Image.Dispose();
        }
    }

    [Fact]
    public void GuidanceRescaleChangesTheImageDeterministicallyAndIsChecked()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var plain = new GenerationOptions { Steps = 4, Scheduler = "euler", GuidanceScale = 7.5f };
        var zero = plain.Clone();
        zero.GuidanceRescale = 0;
        var rescaled = plain.Clone();
        rescaled.GuidanceRescale = 0.7f;
        var a = pipeline.Generate(Prompt, 3, plain);
        var b = pipeline.Generate(Prompt, 3, zero);
        var c = pipeline.Generate(Prompt, 3, rescaled);
        var d = pipeline.Generate(Prompt, 3, rescaled);
        Assert.Equal(a.Latents, b.Latents);
        Assert.Equal(c.Latents, d.Latents);
        Assert.True(MaxAbsDiff(a.Latents, c.Latents) > 1e-3, "rescale 0.7 changed nothing");
        foreach (var r in new[] { a, b, c, d }) r.Image.Dispose();
        var bad = plain.Clone();
        bad.GuidanceRescale = 1.5f;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.Generate(Prompt, 3, bad));
        Assert.Contains("GuidanceRescale", e.Message);
    }

    [Fact]
    public void EachDistinctTextIsEncodedOnceInOneRunAndImagesMatchTheirSeparateGeneration()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var options = new GenerationOptions { Steps = 3, Scheduler = "ddim" };
        // Four seeds of one prompt, a second prompt whose negative is the first prompt, all else with the empty negative.
        var requests = new[]
        {
            new ImagePrompt("red cat", 1), new ImagePrompt("red cat", 2), new ImagePrompt("red cat", 3), new ImagePrompt("red cat", 4),
            new ImagePrompt("blue dog", 5) { NegativePrompt = "red cat" },
        };
        long runs = pipeline.TextEncoder.RunCount, rows = pipeline.TextEncoder.EncodedPromptCount;
        var batch = pipeline.Generate(requests, options);
        Assert.Equal(1, pipeline.TextEncoder.RunCount - runs);
        Assert.Equal(3, pipeline.TextEncoder.EncodedPromptCount - rows); // "red cat", "", "blue dog"

        // The embeddings each image got are its own texts': the same latents as asking with the embeddings directly.
        for (int i = 0; i < requests.Length; i++)
        {
            var cond = pipeline.EncodeText([requests[i].Prompt]);
            var uncond = pipeline.EncodeText([requests[i].NegativePrompt ?? ""]);
            var latents = pipeline.Denoise(cond, uncond, [requests[i]], options);
            Assert.True(MaxAbsDiff(batch[i].Latents, latents) < 1e-5, $"image {i} differs");
            batch[i].Image.Dispose();
        }

        // Without guidance no negative prompt is encoded.
        rows = pipeline.TextEncoder.EncodedPromptCount;
        foreach (var r in pipeline.Generate([new ImagePrompt("red cat", 1) { GuidanceScale = 1 }, new ImagePrompt("red cat", 2) { GuidanceScale = 1 }], options)) r.Image.Dispose();
        Assert.Equal(1, pipeline.TextEncoder.EncodedPromptCount - rows);
    }

    [Fact]
    public void PndmMakesFiftyOneUNetCallsForFiftyStepsAndReportsThem()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var reports = new List<DiffusionProgress>();
        var progress = new SynchronousProgress<DiffusionProgress>(reports.Add);
        pipeline.Generate(Prompt, 0, new GenerationOptions { Steps = 50 }, progress).Image.Dispose();
        var denoising = reports.Where(r => r.Stage == DiffusionStage.Denoising).ToList();
        Assert.Equal(51, denoising.Count);
        Assert.All(denoising, r => Assert.Equal(51, r.Total));
        Assert.Equal(Enumerable.Range(1, 51), denoising.Select(r => r.Step));
        Assert.Contains(reports, r => r.Stage == DiffusionStage.Decoding && r.Step == 1);
    }

    [Fact]
    public void CancellationBetweenStepsStopsAndLeavesThePipelineUsable()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var cts = new CancellationTokenSource();
        int seen = 0;
        var progress = new SynchronousProgress<DiffusionProgress>(p =>
        {
            if (p.Stage == DiffusionStage.Denoising && ++seen == 3) cts.Cancel();
        });
        Assert.ThrowsAny<OperationCanceledException>(() => pipeline.Generate(Prompt, 0, new GenerationOptions { Steps = 20 }, progress, cts.Token));
        Assert.Equal(3, seen);
        var result = pipeline.Generate(Prompt, 0, new GenerationOptions { Steps = 20, Scheduler = "euler" });
        Assert.True(MaxAbsDiff(result.Latents, ExpectedLatents(Prompt, "", 7.5f, 8, 8)) < 2e-3);
        result.Image.Dispose();
    }

    [Fact]
    public void CudaRequestFallsBackToCpuWithALoggedReason()
    {
        using var folder = TestModelFactory.CreateTemp();
        var logger = new ListLogger();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { Device = ExecutionDevice.Cuda, Logger = logger });
        Assert.Equal(ExecutionDevice.Cpu, pipeline.Device);
        Assert.Contains("CUDA", pipeline.FallbackReason);
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("CUDA") && e.Message.Contains("CPU"));
        pipeline.Generate(Prompt, 0, new GenerationOptions { Steps = 2 }).Image.Dispose();
    }

    [Fact]
    public void CudaRequestWithoutFallbackThrowsTheReason()
    {
        using var folder = TestModelFactory.CreateTemp();
        var e = Assert.Throws<InvalidOperationException>(() =>
            StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { Device = ExecutionDevice.Cuda, FallbackToCpu = false }));
        Assert.Contains("CUDA device 0", e.Message);
        Assert.Contains("FallbackToCpu", e.Message);
    }

    [Theory]
    [InlineData("unet", "unet")]
    [InlineData("vae_decoder", "vae_decoder")]
    [InlineData("tokenizer/merges.txt", "merges.txt")]
    [InlineData("scheduler", "scheduler_config.json")]
    public void MissingComponentIsNamed(string removed, string named)
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-missing-");
        try
        {
            TestModelFactory.CreateWithout(dir.FullName, removed);
            var e = Assert.Throws<FileNotFoundException>(() => StableDiffusionPipeline.Load(dir.FullName));
            Assert.Contains(named, e.Message);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void WrongShapedUNetIsRefusedAtLoad()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-shape-");
        try
        {
            TestModelFactory.CreateWithWrongSampleRank(dir.FullName);
            var e = Assert.Throws<InvalidDataException>(() => StableDiffusionPipeline.Load(dir.FullName));
            Assert.Contains("'sample'", e.Message);
            Assert.Contains("rank 3", e.Message);
            Assert.Contains("unet", e.Message);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void CorruptModelFileIsNamed()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-corrupt-");
        try
        {
            TestModelFactory.CreateWithCorruptFile(dir.FullName, "vae_decoder/model.onnx");
            var e = Assert.Throws<InvalidDataException>(() => StableDiffusionPipeline.Load(dir.FullName));
            Assert.Contains(Path.Combine("vae_decoder", "model.onnx"), e.Message);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void MissingFolderIsNamed()
    {
        var e = Assert.Throws<DirectoryNotFoundException>(() => StableDiffusionPipeline.Load("/nonexistent/sd-model"));
        Assert.Contains("/nonexistent/sd-model", e.Message);
    }

    [Fact]
    public void BadSettingsAreRefusedWithTheirName()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var size = Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.Generate(Prompt, 0, new GenerationOptions { Width = 100 }));
        Assert.Contains("a multiple of 8", size.Message);
        Assert.Contains("100", size.Message);
        var steps = Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.Generate(Prompt, 0, new GenerationOptions { Steps = -5 }));
        Assert.Contains("Steps", steps.Message);
        Assert.Contains("-5", steps.Message);
        var scheduler = Assert.Throws<ArgumentException>(() => pipeline.Generate(Prompt, 0, new GenerationOptions { Scheduler = "warp-drive" }));
        Assert.Contains("warp-drive", scheduler.Message);
        Assert.Contains("euler-a", scheduler.Message);
        var guidance = Assert.Throws<ArgumentOutOfRangeException>(() => pipeline.Generate(Prompt, 0, new GenerationOptions { GuidanceScale = float.NaN }));
        Assert.Contains("GuidanceScale", guidance.Message);
    }

    [Fact]
    public void LongPromptIsEncodedInChunksWithANote()
    {
        using var folder = TestModelFactory.CreateTemp();
        var logger = new ListLogger();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { Logger = logger });
        string longPrompt = string.Join(' ', Enumerable.Repeat("red cat", 60));
        pipeline.Generate(longPrompt, 0, new GenerationOptions { Steps = 1 }).Image.Dispose();
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Information && e.Message.Contains("has 120 tokens in 2 chunks"));
        Assert.DoesNotContain(logger.Entries, e => e.Level == LogLevel.Warning);
    }

    [Fact]
    public void FolderSchedulerCanBeOverriddenAndUnknownFolderSchedulerFailsAtLoad()
    {
        var o = new TestModelOptions { SchedulerConfigJson = """{"_class_name":"FancyScheduler","num_train_timesteps":1000}""" };
        using var folder = TestModelFactory.CreateTemp(o);
        var e = Assert.Throws<ArgumentException>(() => StableDiffusionPipeline.Load(folder.Path));
        Assert.Contains("FancyScheduler", e.Message);
        Assert.Contains("scheduler_config.json", e.Message);
    }

    /// <summary>IProgress that reports on the calling thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}

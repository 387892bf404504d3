using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Families;

/// <summary>
/// The SDXL family through the engine, on the closed-form folders of <see cref="XlTestModelFactory"/>: the oracle UNet's
/// target depends on the per-token embeddings, the pooled embedding, the time ids and the guidance embedding, so the final
/// latents show that each reached the UNet with the right values.
/// </summary>
public sealed class SdxlFamilyTests
{
    private const string Prompt = "a red cat";

    /// <summary>Euler ends at σ = 0, on the oracle's x̂₀: the target within float rounding.</summary>
    private const double Tolerance = 2e-3;

    private static float[] TimeIds(params float[] values) => values;

    /// <summary>The target for a prompt's embeddings and time ids; <paramref name="zeros"/> gives the zero embeddings.</summary>
    private static float[] Target(string? prompt, float[] timeIds, XlTestModelOptions o, float[]? cond = null)
    {
        int contextLength = TestTokenizer.MaxLength * o.ContextWidth;
        var context = prompt is null ? new float[contextLength] : XlTestModelFactory.PromptEmbedsForPrompt(prompt, o);
        var pooled = !o.IsXl ? [] : prompt is null ? new float[o.ResolvedPooledWidth] : XlTestModelFactory.PooledForPrompt(prompt, o);
        return XlTestModelFactory.TargetLatent(context, pooled, timeIds, cond ?? [], o);
    }

    private static float[] Guided(float[] conditional, float[] unconditional, float g)
    {
        var z = new float[4];
        for (int c = 0; c < 4; c++) z[c] = unconditional[c] + g * (conditional[c] - unconditional[c]);
        return z;
    }

    private static float[] Generate(StableDiffusionPipeline pipeline, GenerationOptions options, string negative = "")
    {
        var result = pipeline.Generate([new ImagePrompt(Prompt, 5) { NegativePrompt = negative }], options)[0];
        result.Image.Dispose();
        return result.Latents;
    }

    [Theory]
    [InlineData(XlExtraInputNaming.Canonical)]
    [InlineData(XlExtraInputNaming.Unnamed)]
    public void BaseModelConditionsOnBothPenultimateStatesThePooledEmbeddingAndTimeIdsInHeightWidthOrder(XlExtraInputNaming naming)
    {
        var o = new XlTestModelOptions { ExtraInputs = naming };
        using var folder = XlTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.Equal(ModelFamily.StableDiffusionXL, pipeline.Family);
        // A non-square size: the time ids are (height, width, 0, 0, height, width).
        var latents = Generate(pipeline, new GenerationOptions { Width = 96, Height = 32, Steps = 20, GuidanceScale = 1, Scheduler = "euler" });
        var expected = TestModelFactory.ExpandTarget(Target(Prompt, TimeIds(32, 96, 0, 0, 32, 96), o), 4, 12);
        Assert.True(MaxAbsDiff(latents, expected) < Tolerance, $"max error {MaxAbsDiff(latents, expected)}");
        var swapped = TestModelFactory.ExpandTarget(Target(Prompt, TimeIds(96, 32, 0, 0, 96, 32), o), 4, 12);
        Assert.True(MaxAbsDiff(expected, swapped) > 10 * Tolerance, "the oracle must tell (height, width) from (width, height)");
    }

    [Fact]
    public void MicroConditioningOptionsReachTheTimeIdsOfEachGuidanceHalf()
    {
        var o = new XlTestModelOptions();
        using var folder = XlTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var options = new GenerationOptions
        {
            Width = 64, Height = 64, Steps = 20, GuidanceScale = 2, Scheduler = "euler",
            OriginalWidth = 512, OriginalHeight = 256, CropTop = 32, CropLeft = 16, TargetWidth = 1024, TargetHeight = 768,
            NegativeOriginalWidth = 128, NegativeOriginalHeight = 96,
        };
        var latents = Generate(pipeline, options, negative: "blue dog");
        var conditional = Target(Prompt, TimeIds(256, 512, 32, 16, 768, 1024), o);
        var unconditional = Target("blue dog", TimeIds(96, 128, 32, 16, 768, 1024), o);
        var expected = TestModelFactory.ExpandTarget(Guided(conditional, unconditional, 2), 8, 8);
        Assert.True(MaxAbsDiff(latents, expected) < Tolerance, $"max error {MaxAbsDiff(latents, expected)}");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AnEmptyNegativePromptIsZerosOnlyWhenTheFolderForcesZeros(bool forceZeros)
    {
        var o = new XlTestModelOptions { ForceZerosForEmptyPrompt = forceZeros };
        using var folder = XlTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var latents = Generate(pipeline, new GenerationOptions { Width = 64, Height = 64, Steps = 20, GuidanceScale = 3, Scheduler = "euler" });
        var ids = TimeIds(64, 64, 0, 0, 64, 64);
        var unconditional = forceZeros ? Target(null, ids, o) : Target("", ids, o);
        var expected = TestModelFactory.ExpandTarget(Guided(Target(Prompt, ids, o), unconditional, 3), 8, 8);
        Assert.True(MaxAbsDiff(latents, expected) < Tolerance, $"max error {MaxAbsDiff(latents, expected)}");
    }

    [Fact]
    public void RefinerTakesTheSecondEncoderAloneAndAestheticScoresInItsTimeIds()
    {
        var o = new XlTestModelOptions { Family = XlTestFamily.SdxlRefiner };
        using var folder = XlTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.Equal(ModelFamily.StableDiffusionXLRefiner, pipeline.Family);
        var options = new GenerationOptions { Width = 64, Height = 48, Steps = 20, GuidanceScale = 2, Scheduler = "euler", AestheticScore = 7, NegativeAestheticScore = 3 };
        var latents = Generate(pipeline, options);
        // The refiner's folder does not force zeros: the negative half is the empty prompt's.
        var expected = Guided(Target(Prompt, TimeIds(48, 64, 0, 0, 7), o), Target("", TimeIds(48, 64, 0, 0, 3), o), 2);
        Assert.True(MaxAbsDiff(latents, TestModelFactory.ExpandTarget(expected, 6, 8)) < Tolerance);
    }

    [Theory]
    [InlineData(XlTestFamily.Sd, 1.5f)]
    [InlineData(XlTestFamily.Sd, 4f)]
    [InlineData(XlTestFamily.Sdxl, 8.5f)]
    public void LatentConsistencyModelsGetTheGuidanceEmbeddingAndOneUNetRowPerImage(XlTestFamily family, float guidance)
    {
        var o = new XlTestModelOptions { Family = family, Lcm = true };
        using var folder = XlTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.True(pipeline.UsesGuidanceEmbedding);
        long runs = pipeline.UNet.RunCount;
        var latents = Generate(pipeline, new GenerationOptions { Width = 64, Height = 64, Steps = 4, GuidanceScale = guidance });
        Assert.Equal(4, pipeline.UNet.RunCount - runs); // no classifier-free guidance: one call per step
        var cond = new float[XlTestModelFactory.GuidanceEmbeddingWidth];
        GuidanceScaleEmbedding.Write(guidance, cond);
        var ids = family == XlTestFamily.Sdxl ? TimeIds(64, 64, 0, 0, 64, 64) : [];
        var expected = TestModelFactory.ExpandTarget(Target(Prompt, ids, o, cond), 8, 8);
        // LCM's last step returns c_skip·x + c_out·x̂₀ with c_skip ≈ 1e-5: the target within a few thousandths.
        Assert.True(MaxAbsDiff(latents, expected) < 1e-2, $"max error {MaxAbsDiff(latents, expected)}");
        var other = new float[cond.Length];
        GuidanceScaleEmbedding.Write(guidance + 1, other);
        Assert.True(MaxAbsDiff(Target(Prompt, ids, o, other), Target(Prompt, ids, o, cond)) > 0.05, "the oracle must depend on the guidance embedding");
    }

    [Fact]
    public void TurboWithTheFolderDefaultsRunsOneCallAtTimestep999AndLandsOnTheDenoisedEstimate()
    {
        var o = new XlTestModelOptions { Turbo = true };
        using var folder = XlTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.Equal(512, pipeline.DefaultSize);
        var schedule = MLNet.Diffusion.Schedulers.SchedulerFactory.Create(null, pipeline.SchedulerConfig);
        schedule.SetTimesteps(1);
        Assert.Equal([999f], schedule.Timesteps.ToArray());
        long runs = pipeline.UNet.RunCount;
        var latents = Generate(pipeline, new GenerationOptions { Steps = 1, GuidanceScale = 0 });
        Assert.Equal(1, pipeline.UNet.RunCount - runs);
        // Euler ancestral from σ_max straight to σ = 0 adds no noise: the result is the oracle's x̂₀, the target.
        var expected = TestModelFactory.ExpandTarget(Target(Prompt, TimeIds(512, 512, 0, 0, 512, 512), o), 64, 64);
        Assert.True(MaxAbsDiff(latents, expected) < Tolerance, $"max error {MaxAbsDiff(latents, expected)}");
    }

    [Fact]
    public void ExporterConventionsGiveTheSameImage()
    {
        var reference = new XlTestModelOptions();
        var options = new GenerationOptions { Width = 64, Height = 64, Steps = 10, GuidanceScale = 2, Scheduler = "euler" };
        float[] Run(XlTestModelOptions o)
        {
            using var folder = XlTestModelFactory.CreateTemp(o);
            using var pipeline = StableDiffusionPipeline.Load(folder.Path);
            return Generate(pipeline, options);
        }
        var expected = Run(reference);
        foreach (var variant in new[]
        {
            reference with { TextEncoderIdType = MLNet.Diffusion.ModelBuilder.Onnx.OnnxElementType.Int32, TextEncoder2IdType = MLNet.Diffusion.ModelBuilder.Onnx.OnnxElementType.Int32 },
            reference with { Timestep = TimestepForm.Int64Batch },
            reference with { Timestep = TimestepForm.FloatScalar, UnetStaticBatch = 2 },
            reference with { ExtraInputs = XlExtraInputNaming.Unnamed, UnetStaticLatentSize = true, SampleSize = 8 },
        })
            Assert.True(MaxAbsDiff(Run(variant), expected) < 1e-4, variant.ToString());
        Assert.True(MaxAbsDiff(Run(reference with { Fp16 = true }), expected) < 3e-2);
    }

    [Fact]
    public void AmbiguousExtraInputsAreRefusedWithTheInputsFoundAndExpected()
    {
        using var folder = XlTestModelFactory.CreateTemp(new XlTestModelOptions { ExtraInputs = XlExtraInputNaming.UnnamedSymbolic });
        var e = Assert.Throws<InvalidDataException>(() => StableDiffusionPipeline.Load(folder.Path));
        Assert.Contains(XlTestModelFactory.UnnamedTimeIds, e.Message);
        Assert.Contains("time_ids [batch, 6", e.Message);
        Assert.Contains("text_embeds [batch, P]", e.Message);
        Assert.Contains("unet", e.Message);
    }

    [Fact]
    public void AnEncoderWithoutThePenultimateHiddenStateIsRefused()
    {
        using var folder = XlTestModelFactory.CreateTemp(new XlTestModelOptions { TextEncoder2HiddenStates = false });
        var e = Assert.Throws<InvalidDataException>(() => StableDiffusionPipeline.Load(folder.Path));
        Assert.Contains("text_encoder_2", e.Message);
        Assert.Contains("penultimate hidden state", e.Message);
        Assert.Contains("text_embeds", e.Message); // the outputs it has are listed
    }

    [Fact]
    public void BaseHandsOverToTheRefinerAndEveryCallOfTheScheduleRunsOnce()
    {
        var baseOptions = new XlTestModelOptions();
        var refinerOptions = new XlTestModelOptions { Family = XlTestFamily.SdxlRefiner };
        using var baseFolder = XlTestModelFactory.CreateTemp(baseOptions);
        using var refinerFolder = XlTestModelFactory.CreateTemp(refinerOptions);
        using var basePipeline = StableDiffusionPipeline.Load(baseFolder.Path);
        using var refiner = StableDiffusionPipeline.Load(refinerFolder.Path);
        long baseRuns = basePipeline.UNet.RunCount, refinerRuns = refiner.UNet.RunCount;
        var options = new GenerationOptions { Width = 64, Height = 64, Steps = 25, GuidanceScale = 1, Scheduler = "euler" };
        var result = basePipeline.Generate([new ImagePrompt(Prompt, 3)], refiner, 0.8f, options)[0];
        long first = basePipeline.UNet.RunCount - baseRuns, second = refiner.UNet.RunCount - refinerRuns;
        Assert.Equal(25, first + second);
        Assert.Equal(20, first); // DDIM leading, 25 steps: 961 … 201 are at or above round(1000 − 0.8·1000) = 200
        // The refiner finishes the schedule, so the image ends on the refiner's target.
        var expected = TestModelFactory.ExpandTarget(Target(Prompt, TimeIds(64, 64, 0, 0, 6), refinerOptions), 8, 8);
        Assert.True(MaxAbsDiff(result.Latents, expected) < Tolerance, $"max error {MaxAbsDiff(result.Latents, expected)}");
        result.Image.Dispose();
    }

    [Fact]
    public void InitLatentsNeedDenoisingStartAndTheGenerationSize()
    {
        using var folder = XlTestModelFactory.CreateTemp(new XlTestModelOptions { Family = XlTestFamily.SdxlRefiner });
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var options = new GenerationOptions { Width = 64, Height = 64, Steps = 10 };
        var e = Assert.Throws<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Prompt) { InitLatents = new float[256] }], options));
        Assert.Contains("DenoisingStart", e.Message);
        options.DenoisingStart = 0.8f;
        e = Assert.Throws<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Prompt) { InitLatents = new float[100] }], options));
        Assert.Contains("4×8×8 = 256", e.Message);
        e = Assert.Throws<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Prompt)], options));
        Assert.Contains("InitLatents", e.Message);
        options.DenoisingStart = 1f;
        e = Assert.ThrowsAny<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Prompt) { InitLatents = new float[256] }], options));
        Assert.Contains("strictly between 0 and 1", e.Message);
    }
}

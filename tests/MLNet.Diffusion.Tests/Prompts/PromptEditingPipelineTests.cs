using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Oracles;
using MLNet.Diffusion.Tests.Performance;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Tests.Transforms;
using MLNet.Diffusion.Tokenization;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.PromptEditing;

/// <summary>
/// Prompt editing and alternation through the engine, with the oracle UNet (<see cref="TestModelFactory"/>): the final
/// latents equal those of a reference loop that conditions each UNet call on the text A1111's schedule gives it (call k
/// takes the first entry whose end step is ≥ k), and differ from the loops that switch one call earlier or later.
/// </summary>
public sealed class PromptEditingPipelineTests : IDisposable
{
    private const int Size = 64, Latent = Size / 8;
    private const long Seed = 7;
    private const float DataStd = 0.5f; // data N(z, s²): the denoiser's prediction depends on the path, so a switch one call off shows
    private readonly TempModelFolder _folder = TestModelFactory.CreateTemp(new TestModelOptions { DataStd = DataStd });

    public void Dispose() => _folder.Dispose();

    private StableDiffusionPipeline Load() => StableDiffusionPipeline.Load(_folder.Path, new DiffusionRuntimeOptions { IntraOpThreads = 1 });

    private static GenerationOptions Options(string scheduler, int steps, float guidance) =>
        new() { Width = Size, Height = Size, Steps = steps, Scheduler = scheduler, GuidanceScale = guidance };

    /// <summary>The oracle's target for a text, from the pipeline's own embeddings of it.</summary>
    private static float[] Target(StableDiffusionPipeline pipeline, string text) => TestModelFactory.TargetLatent(pipeline.EncodeText([text]));

    /// <summary>
    /// The denoising loop with the closed-form UNet, conditioned at call k on <paramref name="targetOfCall"/>(k), from the
    /// pipeline's noise for <see cref="Seed"/> (guidance is linear in the target, so a guided call's target is
    /// z_u + g·(z_c − z_u)).
    /// </summary>
    private static float[] Reference(StableDiffusionPipeline pipeline, string scheduler, int steps, Func<int, float[]> targetOfCall)
    {
        var s = SchedulerFactory.Create(scheduler, pipeline.SchedulerConfig);
        s.SetTimesteps(steps);
        int length = 4 * Latent * Latent;
        var noise = new BatchNoise(NoiseFactory.Create(NoiseKind.Default, Seed));
        var latents = new float[length];
        noise.Fill(latents);
        for (int i = 0; i < length; i++) latents[i] *= s.InitNoiseSigma;
        var input = new float[length];
        var output = new float[length];
        while (s.StepIndex < s.CallCount)
        {
            int call = s.StepIndex;
            s.ScaleModelInput(latents, input);
            new GaussianOracle(s, TestModelFactory.ExpandTarget(targetOfCall(call), Latent, Latent), DataStd).Predict(input, s.Timesteps[call], output);
            s.Step(output, latents, noise);
        }
        return latents;
    }

    private static float[] Guided(float[] conditional, float[] unconditional, float g) =>
        [.. Enumerable.Range(0, 4).Select(c => unconditional[c] + g * (conditional[c] - unconditional[c]))];

    private static float[] Generate(StableDiffusionPipeline pipeline, string prompt, GenerationOptions options, string? negative = null) =>
        pipeline.Generate([new ImagePrompt(prompt, Seed) { NegativePrompt = negative ?? "" }], options)[0].Latents!;

    /// <summary>Asserts the engine's latents are the reference's for the switch call <paramref name="last"/>, and not those of
    /// a switch one call earlier or later (so an off-by-one cannot pass).</summary>
    private static void AssertSwitchAt(float[] actual, Func<int, float[]> referenceOfLast, int last)
    {
        const double tolerance = 2e-5;
        Assert.True(MaxAbsDiff(actual, referenceOfLast(last)) < tolerance, $"not the latents of a switch after call {last}");
        foreach (int other in new[] { last - 1, last + 1 })
            Assert.True(MaxAbsDiff(actual, referenceOfLast(other)) > 50 * tolerance, $"the latents of a switch after call {other} are as close: {MaxAbsDiff(actual, referenceOfLast(other))} vs {MaxAbsDiff(actual, referenceOfLast(last))}");
    }

    [Theory]
    [InlineData("ddim", 10, "a [red:blue:4] cat", 4)]      // a step number: calls 0–4 on "red", 5–9 on "blue"
    [InlineData("ddim", 10, "a [red:blue:0.35] cat", 3)]   // a fraction: int(0.35 × 10) = 3
    [InlineData("euler", 12, "a [red:blue:6] cat", 6)]
    [InlineData("heun", 5, "a [red:blue:4] cat", 4)]       // Heun: 9 UNet calls for 5 steps; the schedule counts calls
    [InlineData("heun", 5, "a [red:blue:0.5] cat", 4)]     // int(0.5 × 9) = 4
    public void AnEditConditionsOnFromUpToItsStepAndOnToAfter(string scheduler, int steps, string prompt, int last)
    {
        using var pipeline = Load();
        var from = Target(pipeline, "a red cat");
        var to = Target(pipeline, "a blue cat");
        var actual = Generate(pipeline, prompt, Options(scheduler, steps, 1));
        AssertSwitchAt(actual, k => Reference(pipeline, scheduler, steps, call => call <= k ? from : to), last);
    }

    [Fact]
    public void AddingAndRemovingAtAStepFollowTheSameRule()
    {
        using var pipeline = Load();
        var with = Target(pipeline, "a red cat");
        var without = Target(pipeline, "a  cat");
        AssertSwitchAt(Generate(pipeline, "a [red::3] cat", Options("ddim", 8, 1)), k => Reference(pipeline, "ddim", 8, call => call <= k ? with : without), 3);
        AssertSwitchAt(Generate(pipeline, "a [red:3] cat", Options("ddim", 8, 1)), k => Reference(pipeline, "ddim", 8, call => call <= k ? without : with), 3);
    }

    [Fact]
    public void AlternationTakesEachWordInTurnAsA1111Does()
    {
        using var pipeline = Load();
        var red = Target(pipeline, "a red cat");
        var blue = Target(pipeline, "a blue cat");
        var actual = Generate(pipeline, "a [red|blue] cat", Options("ddim", 8, 1));
        // A1111's schedule [(1, red), (2, blue), (3, red), …]: call 0 and call 1 both take the first entry (0 ≤ 1, 1 ≤ 1).
        var expected = Reference(pipeline, "ddim", 8, call => Math.Max(call, 1) % 2 == 1 ? red : blue);
        Assert.True(MaxAbsDiff(actual, expected) < 2e-5);
        var shifted = Reference(pipeline, "ddim", 8, call => call % 2 == 0 ? red : blue);
        Assert.True(MaxAbsDiff(actual, shifted) > 1e-3);
    }

    [Fact]
    public void AScheduledNegativePromptSwitchesTheUnconditionalHalfWithGuidance()
    {
        using var pipeline = Load();
        const float g = 5;
        var cond = Target(pipeline, "a cat");
        var from = Target(pipeline, "red");
        var to = Target(pipeline, "blue");
        var actual = Generate(pipeline, "a cat", Options("ddim", 8, g), negative: "[red:blue:2]");
        AssertSwitchAt(actual, k => Reference(pipeline, "ddim", 8, call => Guided(cond, call <= k ? from : to, g)), 2);
        // Both halves scheduled, in one batch with an unscheduled image: each row follows its own schedule.
        var images = pipeline.Generate(
        [
            new ImagePrompt("a [red:blue:5] cat", Seed) { NegativePrompt = "[red:blue:2]" },
            new ImagePrompt("a cat", Seed + 1),
        ], Options("ddim", 8, g));
        var red = Target(pipeline, "a red cat");
        var blue = Target(pipeline, "a blue cat");
        Assert.True(MaxAbsDiff(images[0].Latents!,
            Reference(pipeline, "ddim", 8, call => Guided(call <= 5 ? red : blue, call <= 2 ? from : to, g))) < 2e-5);
        Assert.Equal(pipeline.Generate([new ImagePrompt("a cat", Seed + 1)], Options("ddim", 8, g))[0].Latents!, images[1].Latents!);
    }

    [Fact]
    public void AnSdxlEditSwitchesThePooledEmbeddingWithThePerTokenOnes()
    {
        // Euler ends on the oracle's x̂₀ of the last call: the guided target of the texts that condition it.
        var o = new XlTestModelOptions();
        using var folder = XlTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { IntraOpThreads = 1 });
        var options = new GenerationOptions { Width = 64, Height = 64, Steps = 20, GuidanceScale = 2, Scheduler = "euler" };
        var result = pipeline.Generate([new ImagePrompt("[red cat:blue dog:3]", 5) { NegativePrompt = "[green:purple:5]" }], options)[0];
        result.Image.Dispose();
        float[] ids = [64, 64, 0, 0, 64, 64];
        float[] Target(string context, string pooled) =>
            XlTestModelFactory.TargetLatent(XlTestModelFactory.PromptEmbedsForPrompt(context, o), XlTestModelFactory.PooledForPrompt(pooled, o), ids, [], o);
        var expected = TestModelFactory.ExpandTarget(Guided(Target("blue dog", "blue dog"), Target("purple", "purple"), 2), 8, 8);
        Assert.True(MaxAbsDiff(result.Latents, expected) < 2e-3, $"max error {MaxAbsDiff(result.Latents, expected)}");
        var stalePooled = TestModelFactory.ExpandTarget(Guided(Target("blue dog", "red cat"), Target("purple", "green"), 2), 8, 8);
        Assert.True(MaxAbsDiff(expected, stalePooled) > 2e-2, "the oracle must tell a stale pooled embedding");
    }

    [Fact]
    public void APromptWithoutEditingIsBitIdenticalToTheEmbeddingPath()
    {
        using var pipeline = Load();
        var options = Options("ddim", 6, 4);
        foreach (string prompt in new[] { "a (red:1.3) cat on [a] hill", "a red cat" })
        {
            var viaPrompt = Generate(pipeline, prompt, options);
            var viaEmbeddings = pipeline.Denoise(pipeline.EncodeText([prompt]), pipeline.EncodeText([""]), [Seed], [4f], options);
            Assert.Equal(viaEmbeddings, viaPrompt);
        }
        // An edit whose step lies beyond the schedule is its "from" text at every call: exactly that prompt's image.
        Assert.Equal(Generate(pipeline, "a red cat", options), Generate(pipeline, "a [red:blue:100] cat", options));
    }

    [Fact]
    public void AnImageToImageRequestCountsTheSkippedCallsAsPast()
    {
        using var pipeline = Load();
        using var init = MLNet.Diffusion.Imaging.ImageTensor.ToImage(new float[3 * Size * Size], Size, Size);
        var options = Options("ddim", 10, 1);
        // Strength 0.5 of 10 steps runs calls 5–9: an edit at call 3 is already past, so the image is "blue"'s.
        var edited = pipeline.Generate([new ImagePrompt("a [red:blue:3] cat", Seed) { InitImage = init, Strength = 0.5f }], options)[0].Latents!;
        var blue = pipeline.Generate([new ImagePrompt("a blue cat", Seed) { InitImage = init, Strength = 0.5f }], options)[0].Latents!;
        Assert.Equal(blue, edited);
    }

    [Fact]
    public void TheTextEncodingStageRefusesAScheduledPromptNamingItsColumn()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new PromptRow { Prompt = "a cat", Id = "0" }, new PromptRow { Prompt = "a [red|blue] cat", Id = "1" } });
        var options = TransformTestKit.Options(_folder.Path);
        using var encoder = ml.Transforms.EncodePrompts(options).Fit(table);
        var e = Assert.ThrowsAny<Exception>(() => encoder.Transform(table).GetColumn<VBuffer<float>>("PromptEmbedding").ToList());
        var inner = e as ArgumentException ?? e.InnerException as ArgumentException;
        Assert.NotNull(inner);
        Assert.Contains("Data row 2", inner!.Message);
        Assert.Contains("column 'Prompt'", inner.Message);
        Assert.Contains("GenerateImages", inner.Message);
    }

    [Fact]
    public void TheGenerateImagesStageFollowsTheSchedule()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new PromptRow { Prompt = "a [red:blue:1] cat", Id = "0" } });
        var options = TransformTestKit.Options(_folder.Path);
        using var generator = ml.Transforms.GenerateImages(options).Fit(table);
        var image = TransformTestKit.ReadImages(generator.Transform(table)).Single();
        using var pipeline = Load();
        var generation = TransformTestKit.Generation(options);
        using var expected = pipeline.Generate([new ImagePrompt("a [red:blue:1] cat", options.Seed)], generation)[0];
        using var unedited = pipeline.Generate([new ImagePrompt("a red cat", options.Seed)], generation)[0];
        Assert.Equal(expected.Image.Pixels.ToArray(), image);
        Assert.NotEqual(unedited.Image.Pixels.ToArray(), image);
    }
}

/// <summary>Prompt editing allocates nothing per step and rewrites the conditioning only at the calls where it changes.</summary>
[Collection(AllocationCollection.Name)]
public sealed class PromptEditingAllocationTests
{
    [Fact]
    public void AlternationAllocatesNothingPerStepAfterWarmUp()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { IntraOpThreads = 1 });
        var options = new GenerationOptions { Width = 64, Height = 64, Steps = 8, Scheduler = "euler", GuidanceScale = 5 };
        ImagePrompt[] requests = [new("a [red|blue] cat", 1) { NegativePrompt = "[ugly:blurry:3]" }, new("a dog", 2)];
        pipeline.Generate(requests, options, new DenoisingStepAllocations());
        var runs = new List<IReadOnlyList<(long, bool)>>();
        for (int run = 0; run < 3; run++)
        {
            var probe = new DenoisingStepAllocations();
            pipeline.Generate(requests, options, probe);
            Assert.Equal(7, probe.Deltas.Count);
            runs.Add(probe.Deltas);
        }
        AllocationProbe.AssertZeroPerStep(runs, "alternation");
    }

    [Fact]
    public void ARowIsRewrittenOnlyAtTheCallsWhereItsConditioningChanges()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { IntraOpThreads = 1 });
        var t = pipeline.EncodeTexts(["a red cat", "a blue cat", "ugly", "blurry"], null, CancellationToken.None);
        var edit = new ConditioningSchedule([new(4, "a red cat"), new(10, "a blue cat")], [t[0], t[1]], 10);
        var steps = Enumerable.Range(1, 10).ToArray();
        var alternation = new ConditioningSchedule([.. steps.Select(k => new ScheduledText(k, k % 2 == 1 ? "ugly" : "blurry"))],
            [.. steps.Select(k => k % 2 == 1 ? t[2] : t[3])], 10);
        Assert.Equal(2, alternation.Count); // equal texts share one embedding
        PromptEmbedding[] embeddings =
        [
            new(t[0].Hidden, t[2].Hidden) { Schedule = edit, NegativeSchedule = alternation },
            new(t[1].Hidden, t[3].Hidden),
        ];
        var shape = new BatchShape(2, 4, 8, 8, 77, 768, Guided: true);
        using var unet = pipeline.UNet.Bind(shape.ModelBatch, 8, 8, 77, 768);
        var scheduled = ScheduledConditioning.For([0, 1], embeddings, shape, pooledExtra: -1)!;
        var writes = new List<int>();
        for (int call = 0; call < 10; call++)
        {
            int before = scheduled.RowWrites;
            scheduled.Apply(call, unet, guided: true);
            writes.Add(scheduled.RowWrites - before);
        }
        // The edit changes at call 5; the alternation (ugly at calls 0 and 1, then blurry, ugly, …) at every call from 2.
        Assert.Equal([0, 0, 1, 1, 1, 2, 1, 1, 1, 1], writes);
        Assert.Null(ScheduledConditioning.For([1], embeddings, shape, pooledExtra: -1)); // an unscheduled batch runs as before
    }

    [Fact]
    public void ScheduledTextsOfDifferentSizesAreRefusedRatherThanSpilledIntoTheNextRow()
    {
        var shape = new BatchShape(2, 4, 8, 8, 77, 8, Guided: false);
        var short1 = new TextEmbedding(new float[77 * 8], null);
        var long2 = new TextEmbedding(new float[2 * 77 * 8], null);
        var schedule = new ConditioningSchedule([new(3, "a"), new(10, "a long one")], [short1, long2], 10);
        PromptEmbedding[] embeddings = [new(short1.Hidden, null) { Schedule = schedule }, new(short1.Hidden, null)];
        var e = Assert.Throws<ArgumentException>(() => ScheduledConditioning.For([0, 1], embeddings, shape, pooledExtra: -1));
        Assert.Contains("Image 0", e.Message);
        Assert.Contains("616 and 1232", e.Message);
    }

    /// <summary>The managed bytes this thread allocated between consecutive denoising reports (one UNet call each).</summary>
    private sealed class DenoisingStepAllocations : IProgress<DiffusionProgress>
    {
        private long _last;
        private int _collections;
        private bool _lastWasDenoising;

        public List<(long Bytes, bool Clean)> Deltas { get; } = new(64);

        public void Report(DiffusionProgress value)
        {
            long now = GC.GetAllocatedBytesForCurrentThread();
            int collections = GC.CollectionCount(0);
            bool denoising = value.Stage == DiffusionStage.Denoising;
            if (denoising && _lastWasDenoising) Deltas.Add((now - _last, collections == _collections));
            _lastWasDenoising = denoising;
            _collections = collections;
            _last = GC.GetAllocatedBytesForCurrentThread();
        }
    }
}

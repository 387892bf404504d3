using System.Text.Json;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.TestModels;
using Xunit;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>
/// The flow-matching Heun scheduler: its schedule and a whole run of steps bit for bit against diffusers' operations
/// (Data/reference/make_flow_match_reference.py, "heun"), its call count, and through the pipeline on the flow oracle,
/// where it must land on the same μ as Euler; the scheduler kinds do not mix with the model kinds.
/// </summary>
public sealed class FlowMatchHeunDiscreteSchedulerTests
{
    private static readonly string ReferencePath = Path.Combine(AppContext.BaseDirectory, "Data", "reference", "flow_match_reference.json");
    private static readonly Lazy<JsonDocument> Reference = new(() => JsonDocument.Parse(File.ReadAllText(ReferencePath)));

    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        foreach (var c in Reference.Value.RootElement.GetProperty("heun").EnumerateArray()) data.Add(c.GetProperty("name").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void ScheduleAndStepsEqualDiffusersBitForBit(string name)
    {
        var c = Reference.Value.RootElement.GetProperty("heun").EnumerateArray().Single(e => e.GetProperty("name").GetString() == name);
        var scheduler = new FlowMatchHeunDiscreteScheduler(SchedulerConfig.Parse(c.GetProperty("config").GetRawText()));
        int steps = c.GetProperty("steps").GetInt32();
        scheduler.SetTimesteps(steps);
        Assert.Equal(2 * steps - 1, scheduler.CallCount);
        Assert.Equal(Floats(c.GetProperty("timesteps")), scheduler.Timesteps.ToArray());
        // diffusers repeats σ per call; the scheduler keeps one per step: the reference's, without the repeats.
        var perCall = Floats(c.GetProperty("sigmas"));
        var perStep = perCall.Where((_, i) => i == 0 || i % 2 == 1).ToArray();
        Assert.Equal(perStep, scheduler.Sigmas.ToArray());

        var sample = Floats(c.GetProperty("sample"));
        foreach (var v in c.GetProperty("velocities").EnumerateArray()) scheduler.Step(Floats(v), sample);
        Assert.Equal(Floats(c.GetProperty("final")), sample);
    }

    [Fact]
    public void ImageToImageStartsAtTheFirstCallOfAStep()
    {
        var scheduler = new FlowMatchHeunDiscreteScheduler(SchedulerConfig.Parse("""{"shift": 3.0}"""));
        scheduler.SetTimesteps(5);
        Assert.Equal(4, scheduler.FirstCallOfStep(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => scheduler.SetBeginIndex(3));
        var noised = new float[2];
        scheduler.AddNoise([1f, 1f], [0f, 2f], 4, noised);
        float sigma = scheduler.Sigmas[2];
        Assert.Equal(new[] { 1f - sigma, 2f * sigma + (1f - sigma) }, noised);
    }

    [Fact]
    public void ThroughThePipelineItLandsOnTheOraclesTargetWithTwoCallsPerStep()
    {
        var o = new FlowTestModelOptions();
        using var folder = FlowTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var result = pipeline.Generate("a red cube", 2, new GenerationOptions { Steps = 4, GuidanceScale = 1, Scheduler = "flow-heun" });
        var (embeds, pooled) = FlowTestModelFactory.Sd3ConditioningForPrompt("a red cube", 256, true, o);
        var expected = FlowTestModelFactory.TargetLatents(embeds, pooled, 0, 16, 16, o);
        Assert.True(Pipeline.PipelineTestHelpers.MaxAbsDiff(result.Latents, expected) < 2e-3);
        Assert.Equal(7, pipeline.UNet.RunCount);
    }

    [Fact]
    public void SchedulerKindsDoNotMixWithModelKinds()
    {
        using (var folder = FlowTestModelFactory.CreateTemp(new FlowTestModelOptions()))
        using (var pipeline = StableDiffusionPipeline.Load(folder.Path))
        {
            var error = Assert.Throws<ArgumentException>(() => pipeline.Generate("x", 1, new GenerationOptions { Steps = 2, Scheduler = "euler" }));
            Assert.Contains("predicts a velocity", error.Message);
            Assert.Contains("flow-euler or flow-heun", error.Message);
        }
        using (var folder = TestModelFactory.CreateTemp())
        using (var pipeline = StableDiffusionPipeline.Load(folder.Path))
        {
            var error = Assert.Throws<ArgumentException>(() => pipeline.Generate("x", 1, new GenerationOptions { Steps = 2, Scheduler = "flow-euler" }));
            Assert.Contains("flow-matching sampler", error.Message);
        }
        Assert.DoesNotContain(SchedulerFactory.Names, n => n.Contains("flow", StringComparison.OrdinalIgnoreCase));
    }

    private static float[] Floats(JsonElement array) => array.EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
}

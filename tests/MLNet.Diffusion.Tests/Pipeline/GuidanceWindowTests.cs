using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Pipeline;

/// <summary>
/// Guidance in a limited interval of noise levels and guidance that ends after a fraction of the calls: the calls outside
/// run the conditional half alone. With the oracle UNet, Euler ends (at σ = 0) on the target of its last call's
/// conditioning, so the final latents show whether the last calls were guided, and the UNet's row count shows how many
/// calls ran both halves.
/// </summary>
public sealed class GuidanceWindowTests : IDisposable
{
    private const string Prompt = "a red cat";
    private readonly TempModelFolder _folder = TestModelFactory.CreateTemp();
    private readonly StableDiffusionPipeline _pipeline;

    public GuidanceWindowTests() => _pipeline = StableDiffusionPipeline.Load(_folder.Path);

    public void Dispose()
    {
        _pipeline.Dispose();
        _folder.Dispose();
    }

    private (float[] Latents, long Rows) Run(GenerationOptions options, int images = 1)
    {
        long rows = _pipeline.UNet.RowCount;
        var requests = Enumerable.Range(0, images).Select(i => new ImagePrompt(Prompt, 10 + i) { NegativePrompt = "blue dog" }).ToArray();
        var results = _pipeline.Generate(requests, options);
        foreach (var r in results) r.Image.Dispose();
        return (results[0].Latents, _pipeline.UNet.RowCount - rows);
    }

    private static GenerationOptions Options() => new() { Steps = 20, GuidanceScale = 3, Scheduler = "euler" };

    /// <summary>The schedule's noise levels, as the window reads them.</summary>
    private double[] Sigmas()
    {
        var scheduler = SchedulerFactory.Create("euler", _pipeline.SchedulerConfig);
        scheduler.SetTimesteps(20);
        var train = SchedulerMath.Sigmas(scheduler.AlphasCumprod);
        return [.. scheduler.Timesteps.ToArray().Select(t => SchedulerMath.SigmaAtTimestep(t, train))];
    }

    [Fact]
    public void GuidanceEndGuidesTheFirstCallsOnlyAndTheRestRunOneRowPerImage()
    {
        var options = Options();
        options.GuidanceEnd = 0.4f;
        var (latents, rows) = Run(options, images: 2);
        Assert.Equal(8 * 4 + 12 * 2, rows); // calls 0–7 guided (two rows per image), 8–19 conditional only
        // The last calls are unguided: the latents end on the conditional target.
        Assert.True(MaxAbsDiff(latents, ExpectedLatents(Prompt, "blue dog", 1, 8, 8)) < 2e-3);
        Assert.True(MaxAbsDiff(latents, ExpectedLatents(Prompt, "blue dog", 3, 8, 8)) > 0.05);
    }

    [Fact]
    public void TheIntervalGuidesExactlyTheCallsWhoseSigmaLiesInIt()
    {
        var sigmas = Sigmas();
        float low = (float)((sigmas[14] + sigmas[15]) / 2), high = (float)((sigmas[4] + sigmas[5]) / 2);
        var options = Options();
        options.GuidanceIntervalLow = low;
        options.GuidanceIntervalHigh = high;
        var (latents, rows) = Run(options);
        int guided = sigmas.Count(s => s > low && s <= high);
        Assert.Equal(10, guided); // calls 5–14
        Assert.Equal(guided * 2 + (20 - guided), rows);
        Assert.True(MaxAbsDiff(latents, ExpectedLatents(Prompt, "blue dog", 1, 8, 8)) < 2e-3);

        // An interval that holds the last calls: they are guided, and the latents end on the guided target.
        options.GuidanceIntervalHigh = null;
        options.GuidanceIntervalLow = 0;
        options.GuidanceEnd = null;
        (latents, rows) = Run(options);
        Assert.Equal(40, rows);
        Assert.True(MaxAbsDiff(latents, ExpectedLatents(Prompt, "blue dog", 3, 8, 8)) < 2e-3);
    }

    [Fact]
    public void AWindowHoldingEveryCallGivesTheBytesOfPlainGuidanceAndAnEmptyOneThoseOfNoGuidance()
    {
        var everything = Options();
        everything.GuidanceEnd = 1;
        everything.GuidanceIntervalLow = 0;
        Assert.Equal(Run(Options()).Latents, Run(everything).Latents);

        var none = Options();
        none.GuidanceEnd = 0;
        var (latents, rows) = Run(none);
        Assert.Equal(20, rows);
        var unguided = Options();
        unguided.GuidanceScale = 1;
        Assert.Equal(Run(unguided).Latents, latents);
    }

    [Theory]
    [InlineData(-1f, null, null, "GuidanceIntervalLow")]
    [InlineData(2f, 1f, null, "must be below")]
    [InlineData(null, 0f, null, "GuidanceIntervalHigh")]
    [InlineData(null, null, 1.5f, "GuidanceEnd")]
    public void OutOfRangeWindowsAreRefusedNamingTheSetting(float? low, float? high, float? end, string expected)
    {
        var options = Options();
        options.GuidanceIntervalLow = low;
        options.GuidanceIntervalHigh = high;
        options.GuidanceEnd = end;
        var e = Assert.ThrowsAny<ArgumentException>(() => _pipeline.Generate(Prompt, 0, options));
        Assert.Contains(expected, e.Message);
    }
}

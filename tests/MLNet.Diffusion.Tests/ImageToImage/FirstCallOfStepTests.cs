using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.ImageToImage;

/// <summary>Where image-to-image starts in each scheduler's call list (<see cref="DiffusionScheduler.FirstCallOfStep"/>).</summary>
public class FirstCallOfStepTests
{
    private const string Config = """{"_class_name":"PNDMScheduler","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,"set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"timestep_spacing":"leading"}""";

    private static DiffusionScheduler Create(string name, int steps, string config = Config)
    {
        var s = SchedulerFactory.Create(name, SchedulerConfig.Parse(config, "test"));
        s.SetTimesteps(steps);
        return s;
    }

    [Theory]
    [InlineData("ddim", "ddim")]
    [InlineData("pndm", "ddim")]
    [InlineData("heun", "euler")]
    [InlineData("kdpm2", "euler")]
    [InlineData("lms", "euler")]
    public void EachStepStartsAtTheTimestepOfTheSameStepOfAFirstOrderScheduler(string name, string reference)
    {
        foreach (int steps in new[] { 1, 2, 5, 20 })
        {
            var s = Create(name, steps);
            var r = Create(reference, steps);
            for (int k = 0; k < steps; k++)
                Assert.Equal(r.Timesteps[k], s.Timesteps[s.FirstCallOfStep(k)]);
            Assert.Equal(s.CallCount, s.FirstCallOfStep(steps));
        }
    }

    [Theory]
    [InlineData("ddim", 10, new[] { 10, 9, 5, 1, 0 })]
    [InlineData("euler-a", 10, new[] { 10, 9, 5, 1, 0 })]
    [InlineData("dpm++2m", 10, new[] { 10, 9, 5, 1, 0 })]
    [InlineData("lcm", 10, new[] { 10, 9, 5, 1, 0 })]
    [InlineData("unipc", 10, new[] { 10, 9, 5, 1, 0 })]
    [InlineData("pndm", 10, new[] { 11, 9, 5, 1, 0 })]      // the warm-up's extra call belongs to step 0
    [InlineData("heun", 10, new[] { 19, 17, 9, 1, 0 })]     // 2 calls per kept step, the last one single
    [InlineData("kdpm2", 10, new[] { 19, 17, 9, 1, 0 })]
    public void RemainingCallsForSkippedSteps(string name, int steps, int[] expected)
    {
        // Remaining model calls after skipping 0, 1, 5, 9 and 10 steps.
        int[] skipped = [0, 1, 5, 9, 10];
        var s = Create(name, steps);
        Assert.Equal(expected, skipped.Select(k => s.CallCount - s.FirstCallOfStep(k)).ToArray());
    }

    [Fact]
    public void PndmRungeKuttaWarmUpStartsAtTheStartOfARungeKuttaStep()
    {
        var s = Create("pndm", 10, Config.Replace("\"skip_prk_steps\":true", "\"skip_prk_steps\":false"));
        Assert.Equal(19, s.CallCount);
        Assert.Equal(new[] { 0, 4, 8, 12, 13, 18, 19 }, new[] { 0, 1, 2, 3, 4, 9, 10 }.Select(s.FirstCallOfStep).ToArray());
        foreach (int k in Enumerable.Range(0, 11)) s.SetBeginIndex(s.FirstCallOfStep(k)); // every one is accepted
    }

    [Fact]
    public void EveryFirstCallIsAValidBeginIndexForEveryScheduler()
    {
        foreach (var name in SchedulerFactory.Names)
            foreach (int steps in new[] { 1, 4, 25 })
            {
                var s = Create(name, steps);
                for (int k = 0; k <= steps; k++)
                {
                    s.SetTimesteps(steps);
                    s.SetBeginIndex(s.FirstCallOfStep(k));
                    Assert.Equal(s.FirstCallOfStep(k), s.StepIndex);
                }
            }
    }

    [Fact]
    public void OutOfRangeStepsAndMissingTimestepsAreRefused()
    {
        var fresh = SchedulerFactory.Create("ddim", SchedulerConfig.Parse(Config, "test"));
        Assert.Throws<InvalidOperationException>(() => fresh.FirstCallOfStep(0));
        var s = Create("heun", 5);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.FirstCallOfStep(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.FirstCallOfStep(6));
    }
}

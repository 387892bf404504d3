using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>
/// The SDXL base → refiner hand-off (diffusers' <c>denoising_end</c> / <c>denoising_start</c>) on SDXL base's own
/// scheduler configuration (Euler, leading spacing, steps_offset 1). Expected counts: diffusers'
/// <c>StableDiffusionXLPipeline</c> "Apply denoising_end" filter and <c>StableDiffusionXLImg2ImgPipeline.get_timesteps</c>
/// run on diffusers' own schedulers built from the same file.
/// </summary>
public class DenoisingSplitTests
{
    private static DiffusionScheduler Sdxl(string scheduler, int steps)
    {
        var s = SchedulerFactory.Create(scheduler, ReleasedSchedulerConfigs.Load("sdxl-base"));
        s.SetTimesteps(steps);
        return s;
    }

    [Theory]
    [InlineData(1000, 0.8, 200)]
    [InlineData(1000, 0.5, 500)]
    [InlineData(1000, 0.75, 250)]
    [InlineData(4, 0.375, 2)]       // 4 − 1.5 = 2.5 rounds half to even, as Python's round (not 3)
    [InlineData(4, 0.625, 2)]       // 1.5 → 2
    public void CutoffIsRoundedAsPython(int trainSteps, double fraction, int expected)
    {
        Assert.Equal(expected, DenoisingSplit.Cutoff(trainSteps, fraction));
    }

    [Theory]
    [InlineData(25, 20, 961f, 201f, 161f)]  // leading: 961, 921, …, 1 (ratio 40)
    [InlineData(40, 32, 976f, 201f, 176f)]  // leading: 976, 951, …, 1 (ratio 25)
    public void EulerBaseRunsTheCallsAtOrAboveTheCutoffAndTheRefinerTheRestEachOnce(int steps, int baseCalls, float first, float lastBase, float firstRefiner)
    {
        var base_ = Sdxl("euler", steps);
        int end = DenoisingSplit.EndCallCount(base_, 0.8);
        Assert.Equal(baseCalls, end);
        Assert.Equal(first, base_.Timesteps[0]);
        Assert.Equal(lastBase, base_.Timesteps[end - 1]);
        Assert.All(base_.Timesteps[..end].ToArray(), t => Assert.True(t >= 200));

        var refiner = Sdxl("euler", steps);
        int start = DenoisingSplit.StartCallIndex(refiner, 0.8);
        Assert.Equal(end, start);
        Assert.Equal(firstRefiner, refiner.Timesteps[start]);
        Assert.All(refiner.Timesteps[start..].ToArray(), t => Assert.True(t < 200));

        // Together: every timestep of the schedule exactly once.
        var together = base_.Timesteps[..end].ToArray().Concat(refiner.Timesteps[start..].ToArray()).ToArray();
        Assert.Equal(base_.Timesteps.ToArray(), together);

        // The refiner starts there: SetBeginIndex takes the index as it is.
        refiner.SetBeginIndex(start);
        Assert.Equal(start, refiner.StepIndex);
    }

    [Theory]
    // scheduler, steps, fraction, diffusers' base call count, diffusers' refiner begin index (of 2·steps − 1 calls)
    [InlineData("heun", 25, 0.8, 39, 38)]
    [InlineData("heun", 40, 0.8, 63, 62)]
    [InlineData("heun", 10, 0.5, 9, 8)]
    [InlineData("kdpm2", 25, 0.8, 39, 38)]
    [InlineData("kdpm2", 25, 0.5, 24, 24)]
    [InlineData("kdpm2", 25, 0.75, 36, 36)]
    [InlineData("kdpm2", 40, 0.5, 39, 38)]
    public void SecondOrderRefinerAddsOneCallWhenTheCountBelowTheCutoffIsEven(string scheduler, int steps, double fraction, int baseCalls, int refinerStart)
    {
        var s = Sdxl(scheduler, steps);
        Assert.Equal(2, s.Order);
        Assert.Equal(2 * steps - 1, s.CallCount);
        Assert.Equal(baseCalls, DenoisingSplit.EndCallCount(s, fraction));
        int start = DenoisingSplit.StartCallIndex(s, fraction);
        Assert.Equal(refinerStart, start);
        // The refiner always begins with the first call of a step (even index), which SetBeginIndex requires.
        Assert.Equal(0, start % 2);
        s.SetBeginIndex(start);

        // Below the cutoff without the parity rule: the count itself.
        int below = 0;
        foreach (var t in s.Timesteps) if (t < DenoisingSplit.Cutoff(1000, fraction)) below++;
        Assert.Equal(below % 2 == 0 ? s.CallCount - below - 1 : s.CallCount - below, start);
    }

    [Fact]
    public void HeunSharesOneCallBetweenBaseAndRefinerAsDiffusersDoes()
    {
        // 25 steps, f = 0.8: calls 961 | 921, 921 | … | 201, 201 | 161, 161 | …: 39 calls are at or above 200 (the base
        // ends with the first call of the step at 201), 10 below; even, so diffusers' refiner takes 11 and begins at 38.
        var s = Sdxl("heun", 25);
        Assert.Equal(201f, s.Timesteps[37]);
        Assert.Equal(201f, s.Timesteps[38]);
        Assert.Equal(161f, s.Timesteps[39]);
        Assert.Equal(39, DenoisingSplit.EndCallCount(s, 0.8));
        Assert.Equal(38, DenoisingSplit.StartCallIndex(s, 0.8));
    }

    [Fact]
    public void FirstOrderSchedulersHaveOrderOne()
    {
        foreach (var name in new[] { "euler", "euler-a", "ddim", "pndm", "lcm", "dpm++2m", "unipc", "lms" })
            Assert.Equal(1, Sdxl(name, 10).Order);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(-0.2)]
    [InlineData(double.NaN)]
    public void FractionOutsideTheOpenUnitIntervalIsRefusedNamingIt(double fraction)
    {
        var s = Sdxl("euler", 25);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => DenoisingSplit.EndCallCount(s, fraction));
        Assert.Contains("strictly between 0 and 1", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => DenoisingSplit.StartCallIndex(s, fraction));
    }

    [Fact]
    public void SplittingBeforeSetTimestepsIsRefused()
    {
        var s = SchedulerFactory.Create("euler", ReleasedSchedulerConfigs.Load("sdxl-base"));
        var e = Assert.Throws<InvalidOperationException>(() => DenoisingSplit.EndCallCount(s, 0.8));
        Assert.Contains("SetTimesteps", e.Message);
    }
}

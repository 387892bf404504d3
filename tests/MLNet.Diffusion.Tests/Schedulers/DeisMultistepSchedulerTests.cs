using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>DEIS beyond diffusers' figures (DiffusersReferenceLoopTests): every order, configuration checks, no allocation.</summary>
public class DeisMultistepSchedulerTests
{
    private static DeisMultistepScheduler Sd15(params (string, object?)[] overrides) => new(SigmaTestKit.Sd15(overrides));

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(3, true)]
    public void FixedTargetIsReachedUpToTheFinalSigmaMin(int order, bool karras)
    {
        // A noise-prediction ODE keeps the start's noise direction: at σ_min the sample is μ + σ_min·ε (|ε| < 5 here).
        var s = Sd15(("solver_order", order), ("use_karras_sigmas", karras));
        Assert.True(SigmaTestKit.FixedTargetError(s, 20) < 5 * SigmaTestKit.SigmaMin);
        s.SetTimesteps(20);
        Assert.Equal(SigmaTestKit.SigmaMin, s.Sigmas[20], 1e-6);
    }

    [Fact]
    public void GaussianDataKeepsItsMean()
    {
        var s = Sd15(("solver_order", 3));
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, 0.5, 25, 16384, 11, out _);
        SigmaTestKit.AssertMeanWithinFourStandardErrors(end, 0.3, 0.5);
        Assert.Equal(0, SigmaTestKit.AllocationsAfterFirstStep(Sd15(("solver_order", 3)), 12, 4096));
    }

    [Fact]
    public void ConfigurationChecksNameTheKey()
    {
        // A DPM-Solver folder's final_sigmas_type is not DEIS's: DEIS still ends at σ_min.
        var fromDpmConfig = Sd15(("final_sigmas_type", "zero"));
        fromDpmConfig.SetTimesteps(10);
        Assert.Equal(SigmaTestKit.SigmaMin, fromDpmConfig.Sigmas[10], 1e-6);
        Assert.Contains("algorithm_type", Assert.Throws<InvalidDataException>(() => Sd15(("algorithm_type", "sde-dpmsolver++"))).Message);
        Assert.Equal("DEISMultistepScheduler", Sd15(("algorithm_type", "dpmsolver++")).Name); // mapped to deis, as diffusers does
        Assert.Contains("solver_order", Assert.Throws<InvalidDataException>(() => Sd15(("solver_order", 0))).Message);
        Assert.Contains("thresholding", Assert.Throws<NotSupportedException>(() => Sd15(("thresholding", true))).Message);
        Assert.Equal("DEISMultistepScheduler", Sd15(("solver_type", "bh2")).Name); // diffusers maps the other solver types to logrho
        Assert.Equal("DEISMultistepScheduler", SchedulerFactory.Create("deis-karras", SigmaTestKit.Sd15()).Name);
    }
}

using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>UniPC beyond diffusers' figures (DiffusersReferenceLoopTests): convergence, state, configuration checks.</summary>
public class UniPcMultistepSchedulerTests
{
    private static UniPcMultistepScheduler Sd15(params (string, object?)[] overrides) => new(SigmaTestKit.Sd15(overrides));

    [Theory]
    [InlineData(1, "bh2", true)]
    [InlineData(2, "bh2", true)]
    [InlineData(3, "bh2", true)]
    [InlineData(2, "bh1", true)]
    [InlineData(2, "bh2", false)] // noise prediction
    public void FixedTargetIsReachedAtEveryOrder(int order, string solverType, bool predictX0)
    {
        var s = Sd15(("solver_order", order), ("solver_type", solverType), ("predict_x0", predictX0),
            ("final_sigmas_type", predictX0 ? "zero" : "sigma_min"));
        // With data prediction the last step returns the converted output itself (σ' = 0); noise prediction stops at
        // σ_min, where the start's noise is still there at that level (|ε| < 5 over 1024 values).
        Assert.True(SigmaTestKit.FixedTargetError(s, 20) < (predictX0 ? 1e-5 : 5 * SigmaTestKit.SigmaMin));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void GaussianDataKeepsMeanAndVarianceCloseAt25Steps(int order)
    {
        var s = Sd15(("solver_order", order), ("use_karras_sigmas", true));
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, 0.5, 25, 16384, 11, out var start);
        SigmaTestKit.AssertMeanWithinFourStandardErrors(end, 0.3, 0.5);
        // The exact probability-flow ODE keeps the data's variance; a 25-step solver with Karras σ lands within a few per cent.
        Assert.InRange(SigmaTestKit.TransferRatio(s, start, end, 0.5), 0.97, 1.03);
    }

    [Fact]
    public void DisabledCorrectorChangesOnlyWhatFollowsThatStepAndNothingIsAllocatedPerStep()
    {
        var plain = SigmaTestKit.RunFromMarginal(Sd15(), 0.3f, 0.5, 10, 256, 3, out _);
        var again = SigmaTestKit.RunFromMarginal(Sd15(), 0.3f, 0.5, 10, 256, 3, out _);
        var without = SigmaTestKit.RunFromMarginal(Sd15(("disable_corrector", new[] { 4 })), 0.3f, 0.5, 10, 256, 3, out _);
        Assert.Equal(plain, again);
        Assert.NotEqual(plain, without);
        Assert.Equal(0, SigmaTestKit.AllocationsAfterFirstStep(Sd15(("solver_order", 3)), 12, 4096));
    }

    [Fact]
    public void BadAndUnsupportedOptionsNameTheKey()
    {
        Assert.Contains("solver_type", Assert.Throws<InvalidDataException>(() => Sd15(("solver_type", "bh3"))).Message);
        Assert.Contains("solver_order", Assert.Throws<InvalidDataException>(() => Sd15(("solver_order", 4))).Message);
        Assert.Contains("disable_corrector", Assert.Throws<InvalidDataException>(() => Sd15(("disable_corrector", new[] { 1.5 }))).Message);
        Assert.Contains("thresholding", Assert.Throws<NotSupportedException>(() => Sd15(("thresholding", true))).Message);
        Assert.Contains("predict_x0", Assert.Throws<InvalidDataException>(() => Sd15(("predict_x0", false))).Message); // with final σ = 0
        Assert.Contains("use_flow_sigmas", Assert.Throws<NotSupportedException>(() => Sd15(("use_flow_sigmas", true))).Message);
        Assert.Equal("UniPCMultistepScheduler", SchedulerFactory.Create("unipc", SigmaTestKit.Sd15()).Name);
        Assert.True(((UniPcMultistepScheduler)SchedulerFactory.Create("unipc-karras", SigmaTestKit.Sd15())).Sigmas.IsEmpty); // until SetTimesteps
    }
}

using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Oracles;

namespace MLNet.Diffusion.Tests.Schedulers;

public class KDpm2DiscreteSchedulerTests
{
    private static KDpm2DiscreteScheduler Sd15(params (string, object?)[] overrides) => new(SigmaTestKit.Sd15(overrides));

    [Fact]
    public void ClassDefaultsAreTheLatentDiffusionBetas()
    {
        var s = new KDpm2DiscreteScheduler(SchedulerConfig.Empty);
        Assert.Equal("KDPM2DiscreteScheduler", s.Name);
        Assert.Equal(0.00085, s.Betas[0], 1e-12);
        Assert.Equal(0.012, s.Betas[^1], 1e-12);
    }

    [Fact]
    public void Sd15Linspace25InterleavesFractionalMidpointTimesteps()
    {
        var s = Sd15();
        s.SetTimesteps(25);
        // diffusers: cat([t[:1], stack(τ[1:-1], t[1:]).flatten()]) → 2n − 1 = 49 calls t₀, τ₁, t₁, …, τ₂₄, t₂₄.
        Assert.Equal(49, s.CallCount);
        Assert.Equal(999f, s.Timesteps[0]);
        Assert.Equal(957.375f, s.Timesteps[2], 1e-3f);
        Assert.Equal(915.75f, s.Timesteps[4], 1e-3f);
        Assert.Equal(0f, s.Timesteps[48]);
        // Midpoints in log σ: √(14.614641·11.435938) = 12.927959 → τ₁ = 978.4973 (log-σ interpolation of the
        // training table); √(11.435938·9.076805) = 10.188316 → τ₂ = 936.8752. The last step (to 0) has none.
        Assert.Equal(12.927959, s.MidpointSigmas[0], 1e-4);
        Assert.Equal(10.188316, s.MidpointSigmas[1], 1e-4);
        Assert.Equal(0, s.MidpointSigmas[24]);
        Assert.Equal(978.4973f, s.Timesteps[1], 2e-3f);
        Assert.Equal(936.8752f, s.Timesteps[3], 2e-3f);
        Assert.Equal(SigmaTestKit.SigmaMax, s.InitNoiseSigma, 1e-5);
    }

    [Fact]
    public void KarrasSigmasRoundStepTimestepsButNotMidpoints()
    {
        var s = Sd15(("use_karras_sigmas", true));
        s.SetTimesteps(25);
        // Karras σ₁ = 12.3279 ↦ t = 969.761 → rounded 970; the midpoint between σ₀ and σ₁ ↦ τ₁ = 984.533, kept.
        Assert.Equal(999f, s.Timesteps[0]);
        Assert.Equal(970f, s.Timesteps[2]);
        Assert.Equal(984.533f, s.Timesteps[1], 2e-3f);
        Assert.Equal(SigmaTestKit.SigmaMin, s.Sigmas[24], 1e-8);
    }

    [Fact]
    public void ScaleModelInputUsesTheMidpointSigmaAtTheSecondCall()
    {
        var s = Sd15();
        s.SetTimesteps(10);
        var x = new float[3];
        SigmaTestKit.AssertScalesBy(s, s.Sigmas[0]);
        SigmaTestKit.StepOnce(s, x);
        SigmaTestKit.AssertScalesBy(s, s.MidpointSigmas[0]);
        SigmaTestKit.StepOnce(s, x);
        SigmaTestKit.AssertScalesBy(s, s.Sigmas[1]);
    }

    [Theory]
    [InlineData("epsilon", false)]
    [InlineData("v_prediction", false)]
    [InlineData("epsilon", true)]
    public void FixedTargetIsReachedWithin1e5(string prediction, bool karras)
    {
        // Measured max |x − μ| ≈ 1.2e-7.
        Assert.True(SigmaTestKit.FixedTargetError(Sd15(("prediction_type", prediction), ("use_karras_sigmas", karras)), 20) < 1e-5);
    }

    [Theory]
    [InlineData("epsilon")]
    [InlineData("v_prediction")]
    public void GaussianDataTransferMatchesAScalarMidpointModelAndPreservesTheMarginal(string prediction)
    {
        const double sd = 0.5;
        const int steps = 50;
        var s = Sd15(("prediction_type", prediction));
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, sd, steps, 16384, 11, out var start);
        SigmaTestKit.AssertMeanWithinFourStandardErrors(end, 0.3, sd);

        // Scalar model of the midpoint method with σ_mid = exp((log σ + log σ')/2), d = (1 − k(σ))·g/σ.
        double D(double g, double sig) => (1 - sd * sd / (sd * sd + sig * sig)) * g / sig;
        double gain = 1;
        for (int i = 0; i < steps; i++)
        {
            double sig = s.Sigmas[i], next = s.Sigmas[i + 1];
            if (next == 0) { gain += (next - sig) * D(gain, sig); continue; }
            double mid = Math.Exp((Math.Log(sig) + Math.Log(next)) / 2);
            double half = gain + (mid - sig) * D(gain, sig);
            gain += (next - sig) * D(half, mid);
        }
        double expected = gain * gain * (sd * sd + s.Sigmas[0] * s.Sigmas[0]) / (sd * sd);
        double ratio = SigmaTestKit.TransferRatio(s, start, end, sd);
        // The oracle reads σ at the fractional midpoint timestep by linear interpolation while the scheduler mapped it
        // with log-σ interpolation, so the model is evaluated at a slightly different σ there; measured agreement with
        // the scalar model 7e-5 (the other schedulers, with consistent σ, agree to 2e-7).
        Assert.Equal(expected, ratio, 2e-4);
        // Measured 1.0169 at 50 steps (1.056 at 25): the variance error shrinks with the step size.
        Assert.InRange(ratio, 0.99, 1.03);
    }

    [Fact]
    public void BeginIndexMustStartAStep()
    {
        var s = Sd15();
        s.SetTimesteps(10);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.SetBeginIndex(1));
        s.SetBeginIndex(2);
        Assert.Equal(2, s.StepIndex);
    }

    [Fact]
    public void AddNoiseUsesTheStepSigmaOfTheCall()
    {
        var s = Sd15();
        s.SetTimesteps(10);
        var dest = new float[1];
        s.AddNoise([1f], [1f], 4, dest);
        Assert.Equal(1 + s.Sigmas[2], dest[0], 1e-5);
    }

    [Fact]
    public void RerunGivesIdenticalResultsAndStepsAllocateNothing()
    {
        var s = Sd15();
        var oracle = new GaussianOracle(s, SigmaTestKit.Pattern(256), 0.5);
        Assert.Equal(oracle.Sample(10, 256, 5), oracle.Sample(10, 256, 5));
        Assert.Equal(0, SigmaTestKit.AllocationsAfterFirstStep(s, 10, 4096));
    }

    [Fact]
    public void SamplePredictionIsNotSupported()
    {
        Assert.Throws<NotSupportedException>(() => Sd15(("prediction_type", "sample")));
    }
}

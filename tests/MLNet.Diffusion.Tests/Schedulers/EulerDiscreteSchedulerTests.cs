using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

public class EulerDiscreteSchedulerTests
{
    private static EulerDiscreteScheduler Sd15(params (string, object?)[] overrides) => new(SigmaTestKit.Sd15(overrides));

    [Fact]
    public void Sd15Linspace50MatchesDiffusersTimestepsAndSigmas()
    {
        var s = Sd15();
        s.SetTimesteps(50);
        Assert.Equal(50, s.CallCount);
        // linspace(0, 999, 50) reversed, kept fractional: 999, 978.6122…, …, 20.3878, 0.
        Assert.Equal(999f, s.Timesteps[0]);
        Assert.Equal(978.6122f, s.Timesteps[1], 1e-3f);
        Assert.Equal(20.387755f, s.Timesteps[48], 1e-3f);
        Assert.Equal(0f, s.Timesteps[49]);
        // σ = np.interp(t, arange(1000), √((1 − ᾱ)/ᾱ)): 14.6146 at t = 999, 12.93677 at t = 978.61, 0.029167 at t = 0, then 0.
        Assert.Equal(51, s.Sigmas.Length);
        Assert.Equal(SigmaTestKit.SigmaMax, s.Sigmas[0], 1e-6);
        Assert.Equal(12.936773, s.Sigmas[1], 1e-4);
        Assert.Equal(SigmaTestKit.SigmaMin, s.Sigmas[49], 1e-8);
        Assert.Equal(0, s.Sigmas[50]);
        // linspace spacing: init_noise_sigma = σ_max.
        Assert.Equal(SigmaTestKit.SigmaMax, s.InitNoiseSigma, 1e-5);
    }

    [Fact]
    public void LeadingSpacingUsesStepsOffsetAndUnitVarianceInInitNoise()
    {
        var s = Sd15(("timestep_spacing", "leading"));
        s.SetTimesteps(50);
        // leading: i·(1000 div 50) + steps_offset (1) → 981, 961, …, 1.
        Assert.Equal(981f, s.Timesteps[0]);
        Assert.Equal(961f, s.Timesteps[1]);
        Assert.Equal(1f, s.Timesteps[49]);
        Assert.Equal(13.120411, s.Sigmas[0], 1e-4);
        // leading: √(σ_max² + 1) = √(13.120411² + 1) = 13.158464.
        Assert.Equal(13.158464, s.InitNoiseSigma, 1e-4);
    }

    [Fact]
    public void TrailingSpacingStartsAtTheLastTrainingStepWithSigmaMaxInit()
    {
        var s = Sd15(("timestep_spacing", "trailing"));
        s.SetTimesteps(50);
        Assert.Equal(999f, s.Timesteps[0]);
        Assert.Equal(979f, s.Timesteps[1]);
        Assert.Equal(19f, s.Timesteps[49]);
        Assert.Equal(SigmaTestKit.SigmaMax, s.InitNoiseSigma, 1e-5);
    }

    [Fact]
    public void KarrasSigmasRunFromSigmaMaxToSigmaMinWithRho7AndFractionalTimesteps()
    {
        var s = Sd15(("use_karras_sigmas", true));
        s.SetTimesteps(50);
        // (σ_max^(1/7) + i/49·(σ_min^(1/7) − σ_max^(1/7)))^7: 14.6146, 13.42923, …, 0.035676, 0.029167, then 0.
        Assert.Equal(SigmaTestKit.SigmaMax, s.Sigmas[0], 1e-6);
        Assert.Equal(13.429235, s.Sigmas[1], 1e-5);
        Assert.Equal(0.0356760, s.Sigmas[48], 1e-6);
        Assert.Equal(SigmaTestKit.SigmaMin, s.Sigmas[49], 1e-8);
        Assert.Equal(0, s.Sigmas[50]);
        // Timesteps are the log-σ interpolated positions of those σ (diffusers' _sigma_to_t), not rounded.
        Assert.Equal(999f, s.Timesteps[0], 1e-3f);
        Assert.Equal(0f, s.Timesteps[49], 1e-3f);
        Assert.Equal(SchedulerMath.SigmaToTimestep(s.Sigmas[10], SchedulerMath.Sigmas(s.AlphasCumprod)), s.Timesteps[10], 1e-3);
        Assert.NotEqual(MathF.Round(s.Timesteps[10]), s.Timesteps[10]);
    }

    [Fact]
    public void KarrasSigmaRangeCanComeFromTheConfig()
    {
        var s = Sd15(("use_karras_sigmas", true), ("sigma_min", 0.1), ("sigma_max", 10.0));
        s.SetTimesteps(20);
        Assert.Equal(10.0, s.Sigmas[0], 1e-9);
        Assert.Equal(0.1, s.Sigmas[19], 1e-9);
    }

    [Fact]
    public void FinalSigmasTypeSigmaMinEndsAtTheFirstTrainingSigma()
    {
        var s = Sd15(("final_sigmas_type", "sigma_min"));
        s.SetTimesteps(10);
        Assert.Equal(SigmaTestKit.SigmaMin, s.Sigmas[10], 1e-8);
    }

    [Fact]
    public void RescaleBetasZeroSnrFloorsTheLastAlphaBarAsDiffusersDoes()
    {
        // Zero terminal SNR makes ᾱ_999 = 0 (σ = ∞); diffusers' σ schedulers set it to 2⁻²⁴, so σ_max = √(2²⁴ − 1) ≈ 4096.
        var s = Sd15(("rescale_betas_zero_snr", true), ("timestep_spacing", "trailing"));
        s.SetTimesteps(10);
        Assert.Equal(Math.Sqrt((1 << 24) - 1), s.Sigmas[0], 1e-6);
        Assert.Equal(s.Sigmas[0], s.InitNoiseSigma, 1e-3);
        // LMSDiscreteScheduler has no such key, so diffusers ignores it there.
        var lms = new LmsDiscreteScheduler(SigmaTestKit.Sd15(("rescale_betas_zero_snr", true)));
        lms.SetTimesteps(10);
        Assert.Equal(SigmaTestKit.SigmaMax, lms.Sigmas[0], 1e-6);
    }

    [Theory]
    [InlineData("epsilon", false)]
    [InlineData("v_prediction", false)]
    [InlineData("epsilon", true)]
    [InlineData("v_prediction", true)]
    [InlineData("sample", false)]
    public void FixedTargetIsReachedWithin1e5(string prediction, bool karras)
    {
        // Exact denoiser for data fixed at a pattern μ in [−1, 1]: measured max |x − μ| ≈ 1.2e-7 (float rounding).
        var s = Sd15(("prediction_type", prediction), ("use_karras_sigmas", karras));
        Assert.True(SigmaTestKit.FixedTargetError(s, 30) < 1e-5);
    }

    [Theory]
    [InlineData("epsilon")]
    [InlineData("v_prediction")]
    public void GaussianDataTransferMatchesTheEulerRecursionAndApproachesTheMarginal(string prediction)
    {
        // Data N(0.3, 0.5²), 16384 independent elements, started from the exact marginal at σ_max.
        const double sd = 0.5;
        var s = Sd15(("prediction_type", prediction));
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, sd, 50, 16384, 11, out var start);
        SigmaTestKit.AssertMeanWithinFourStandardErrors(end, 0.3, sd);

        // Independent scalar model of Euler on this linear problem: D − μ = k(σ)(x − μ), k = s²/(s² + σ²), so each step
        // multiplies x − μ by 1 + (σ' − σ)(1 − k)/σ. The measured Var(end)/Var(start) must match it (no sampling error:
        // the map is the same affine function for every element).
        double gain = 1;
        for (int i = 0; i < 50; i++)
        {
            double sig = s.Sigmas[i], k = sd * sd / (sd * sd + sig * sig);
            gain *= 1 + (s.Sigmas[i + 1] - sig) * (1 - k) / sig;
        }
        double expected = gain * gain * (sd * sd + s.Sigmas[0] * s.Sigmas[0]) / (sd * sd);
        double ratio = SigmaTestKit.TransferRatio(s, start, end, sd);
        Assert.Equal(expected, ratio, 1e-5); // measured agreement ≤ 2e-7
        // First order: at 50 steps the variance is still 10% short (measured 0.8983 of s²), and the gap shrinks with steps.
        Assert.InRange(ratio, 0.88, 0.92);
    }

    [Fact]
    public void ScaleModelInputDividesBySqrtSigmaSquaredPlusOneAtTheCurrentStep()
    {
        var s = Sd15();
        s.SetTimesteps(20);
        SigmaTestKit.AssertScalesBy(s, s.Sigmas[0]);
        SigmaTestKit.StepOnce(s, new float[3]);
        SigmaTestKit.AssertScalesBy(s, s.Sigmas[1]);
    }

    [Fact]
    public void AddNoiseIsOriginalPlusSigmaTimesNoiseAtTheCall()
    {
        var s = Sd15();
        s.SetTimesteps(20);
        var dest = new float[2];
        s.AddNoise([1f, -1f], [0.5f, 2f], 5, dest);
        Assert.Equal(1 + 0.5 * s.Sigmas[5], dest[0], 1e-5);
        Assert.Equal(-1 + 2 * s.Sigmas[5], dest[1], 1e-5);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.AddNoise([1f], [1f], 20, new float[1]));
    }

    [Fact]
    public void RerunGivesIdenticalResultsAndStepsAllocateNothing()
    {
        var s = Sd15(("use_karras_sigmas", true));
        var a = new Oracles.GaussianOracle(s, SigmaTestKit.Pattern(256), 0.5).Sample(25, 256, 5);
        var b = new Oracles.GaussianOracle(s, SigmaTestKit.Pattern(256), 0.5).Sample(25, 256, 5);
        Assert.Equal(a, b);
        Assert.Equal(0, SigmaTestKit.AllocationsAfterFirstStep(s, 25, 4096));
    }

    [Fact]
    public void SteppingPastTheEndThrows()
    {
        var s = Sd15();
        Assert.Throws<InvalidOperationException>(() => s.Step(new float[1], new float[1]));
        s.SetTimesteps(1);
        SigmaTestKit.StepOnce(s, new float[4]);
        Assert.Throws<InvalidOperationException>(() => s.Step(new float[4], new float[4]));
    }

    [Theory]
    [InlineData("use_exponential_sigmas")]
    [InlineData("use_beta_sigmas")]
    public void UnsupportedSigmaOptionsThrowNamingTheKey(string key)
    {
        var e = Assert.Throws<NotSupportedException>(() => Sd15((key, true)));
        Assert.Contains(key, e.Message);
    }
}

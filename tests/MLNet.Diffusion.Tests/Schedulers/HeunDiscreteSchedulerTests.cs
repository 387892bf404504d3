using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Oracles;

namespace MLNet.Diffusion.Tests.Schedulers;

public class HeunDiscreteSchedulerTests
{
    private static HeunDiscreteScheduler Sd15(params (string, object?)[] overrides) => new(SigmaTestKit.Sd15(overrides));

    [Fact]
    public void ClassDefaultsAreTheLatentDiffusionBetas()
    {
        // diffusers' HeunDiscreteScheduler defaults to beta_start 0.00085, beta_end 0.012, beta_schedule linear.
        var s = new HeunDiscreteScheduler(SchedulerConfig.Empty);
        Assert.Equal(0.00085, s.Betas[0], 1e-12);
        Assert.Equal(0.012, s.Betas[^1], 1e-12);
        Assert.Equal((0.00085 + 0.012) / 2, (s.Betas[499] + s.Betas[500]) / 2, 1e-9);
    }

    [Fact]
    public void Sd15Linspace25ListsEveryModelCall()
    {
        var s = Sd15();
        s.SetTimesteps(25);
        // 2n − 1 calls: t₀, t₁, t₁, …, t₂₄, t₂₄ with t = linspace(0, 999, 25) reversed = 999, 957.375, 915.75, …, 0.
        Assert.Equal(49, s.CallCount);
        Assert.Equal(999f, s.Timesteps[0]);
        Assert.Equal(957.375f, s.Timesteps[1], 1e-3f);
        Assert.Equal(957.375f, s.Timesteps[2], 1e-3f);
        Assert.Equal(915.75f, s.Timesteps[3], 1e-3f);
        Assert.Equal(915.75f, s.Timesteps[4], 1e-3f);
        Assert.Equal(0f, s.Timesteps[47]);
        Assert.Equal(0f, s.Timesteps[48]);
        Assert.Equal(26, s.Sigmas.Length);
        Assert.Equal(SigmaTestKit.SigmaMax, s.Sigmas[0], 1e-6);
        Assert.Equal(11.435938, s.Sigmas[1], 1e-4);
        Assert.Equal(SigmaTestKit.SigmaMin, s.Sigmas[24], 1e-8);
        Assert.Equal(SigmaTestKit.SigmaMax, s.InitNoiseSigma, 1e-5);
    }

    [Fact]
    public void KarrasSigmasKeepFractionalTimesteps()
    {
        var s = Sd15(("use_karras_sigmas", true));
        s.SetTimesteps(25);
        Assert.Equal(49, s.CallCount);
        Assert.Equal(SigmaTestKit.SigmaMin, s.Sigmas[24], 1e-8);
        // σ₁ = 12.3279 (ρ = 7 between 14.6146 and 0.029167 in 25 levels) sits at t ≈ 969.76.
        Assert.Equal(969.761f, s.Timesteps[1], 2e-3f);
        Assert.Equal(s.Timesteps[1], s.Timesteps[2]);
    }

    [Fact]
    public void ScaleModelInputUsesTheSigmaOfEachCall()
    {
        var s = Sd15();
        s.SetTimesteps(10);
        var x = new float[3];
        SigmaTestKit.AssertScalesBy(s, s.Sigmas[0]); // call 0: σ₀
        SigmaTestKit.StepOnce(s, x);
        SigmaTestKit.AssertScalesBy(s, s.Sigmas[1]); // call 1 (correction at σ₁)
        SigmaTestKit.StepOnce(s, x);
        SigmaTestKit.AssertScalesBy(s, s.Sigmas[1]); // call 2 (next step from σ₁)
        SigmaTestKit.StepOnce(s, x);
        SigmaTestKit.AssertScalesBy(s, s.Sigmas[2]); // call 3
    }

    [Theory]
    [InlineData("epsilon", false)]
    [InlineData("v_prediction", false)]
    [InlineData("sample", false)]
    [InlineData("epsilon", true)]
    public void FixedTargetIsReachedWithin1e5(string prediction, bool karras)
    {
        // Measured max |x − μ| ≈ 6e-8.
        Assert.True(SigmaTestKit.FixedTargetError(Sd15(("prediction_type", prediction), ("use_karras_sigmas", karras)), 20) < 1e-5);
    }

    [Theory]
    [InlineData("epsilon")]
    [InlineData("v_prediction")]
    public void GaussianDataTransferMatchesKDiffusionHeunAndPreservesTheMarginal(string prediction)
    {
        const double sd = 0.5;
        const int steps = 25;
        var s = Sd15(("prediction_type", prediction));
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, sd, steps, 16384, 11, out var start);
        SigmaTestKit.AssertMeanWithinFourStandardErrors(end, 0.3, sd);

        // k-diffusion sample_heun on the scalar g = (x − μ)/(x_T − μ) with d = (1 − k(σ))·g/σ.
        double D(double g, double sig) => (1 - sd * sd / (sd * sd + sig * sig)) * g / sig;
        double gain = 1;
        for (int i = 0; i < steps; i++)
        {
            double sig = s.Sigmas[i], next = s.Sigmas[i + 1], d = D(gain, sig);
            double euler = gain + (next - sig) * d;
            gain = next == 0 ? euler : gain + (next - sig) * (d + D(euler, next)) / 2;
        }
        double expected = gain * gain * (sd * sd + s.Sigmas[0] * s.Sigmas[0]) / (sd * sd);
        double ratio = SigmaTestKit.TransferRatio(s, start, end, sd);
        Assert.Equal(expected, ratio, 1e-5); // measured agreement ≤ 2e-7
        // Second order: 25 steps (49 calls) keep the variance within 1.1% (measured 1.0111; 1.0003 at 50 steps).
        Assert.InRange(ratio, 0.99, 1.02);
    }

    [Fact]
    public void ClipSampleClampsTheDenoisedEstimate()
    {
        // With clip_sample_range 0.5 the denoised estimate of a target in [−1, 1] is clamped to [−0.5, 0.5],
        // and the last (Euler) step lands on it.
        var s = Sd15(("clip_sample", true), ("clip_sample_range", 0.5));
        var mu = SigmaTestKit.Pattern(256);
        var x = new GaussianOracle(s, mu, 0).Sample(10, 256, 1);
        for (int i = 0; i < 256; i++) Assert.Equal(Math.Clamp(mu[i], -0.5f, 0.5f), x[i], 1e-5);
    }

    [Fact]
    public void BeginIndexMustStartAStep()
    {
        var s = Sd15();
        s.SetTimesteps(10);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.SetBeginIndex(3));
        s.SetBeginIndex(4);
        Assert.Equal(4, s.StepIndex);
        // Image-to-image from call 4 (σ₂) with the exact denoiser reaches the target.
        var mu = SigmaTestKit.Pattern(64);
        var eps = new float[64];
        new GaussianNoise(2).Fill(eps);
        var x = new float[64];
        s.AddNoise(mu, eps, 4, x);
        Assert.Equal(mu[0] + s.Sigmas[2] * eps[0], x[0], 1e-4);
        var oracle = new GaussianOracle(s, mu, 0);
        var input = new float[64];
        var output = new float[64];
        while (s.StepIndex < s.CallCount)
        {
            s.ScaleModelInput(x, input);
            oracle.Predict(input, s.Timesteps[s.StepIndex], output);
            s.Step(output, x);
        }
        for (int i = 0; i < 64; i++) Assert.Equal(mu[i], x[i], 1e-5);
    }

    [Fact]
    public void RerunGivesIdenticalResultsAndStepsAllocateNothing()
    {
        var s = Sd15();
        var oracle = new GaussianOracle(s, SigmaTestKit.Pattern(256), 0.5);
        Assert.Equal(oracle.Sample(10, 256, 5), oracle.Sample(10, 256, 5));
        Assert.Equal(0, SigmaTestKit.AllocationsAfterFirstStep(s, 10, 4096));
    }
}

using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Oracles;

namespace MLNet.Diffusion.Tests.Schedulers;

public class EulerAncestralSchedulerTests
{
    private static EulerAncestralScheduler Sd15(params (string, object?)[] overrides) => new(SigmaTestKit.Sd15(overrides));

    [Fact]
    public void Sd15Linspace50MatchesDiffusersTables()
    {
        var s = Sd15();
        Assert.Equal("EulerAncestralDiscreteScheduler", s.Name);
        Assert.True(s.IsStochastic);
        s.SetTimesteps(50);
        Assert.Equal(999f, s.Timesteps[0]);
        Assert.Equal(978.6122f, s.Timesteps[1], 1e-3f);
        Assert.Equal(SigmaTestKit.SigmaMax, s.Sigmas[0], 1e-6);
        Assert.Equal(SigmaTestKit.SigmaMin, s.Sigmas[49], 1e-8);
        Assert.Equal(0, s.Sigmas[50]);
        Assert.Equal(SigmaTestKit.SigmaMax, s.InitNoiseSigma, 1e-5);
        var leading = Sd15(("timestep_spacing", "leading"));
        leading.SetTimesteps(50);
        Assert.Equal(981f, leading.Timesteps[0]);
        Assert.Equal(13.158464, leading.InitNoiseSigma, 1e-4); // √(σ(981)² + 1)
    }

    [Theory]
    [InlineData("epsilon")]
    [InlineData("v_prediction")]
    public void FixedTargetIsReachedWithin1e5(string prediction)
    {
        // With s = 0 the ancestral noise cancels at the last step (σ_up = 0 there, and D = μ); measured ≈ 1.2e-7.
        Assert.True(SigmaTestKit.FixedTargetError(Sd15(("prediction_type", prediction)), 30) < 1e-5);
    }

    [Theory]
    [InlineData("epsilon", 50)]
    [InlineData("v_prediction", 50)]
    [InlineData("epsilon", 200)]
    public void GaussianDataMeanAndVarianceMatchTheAncestralProcessWithinStandardErrors(string prediction, int steps)
    {
        // Data N(μ = 0.3, s² = 0.25) over a 4×64×64 latent of independent elements, started from the exact marginal
        // N(μ, s² + σ_max²) (the scheduler's own AddNoise at call 0), then every step with the exact denoiser.
        const double mu = 0.3, sd = 0.5;
        const int n = 4 * 64 * 64;
        var s = Sd15(("prediction_type", prediction));
        var end = SigmaTestKit.RunFromMarginal(s, (float)mu, sd, steps, n, 21, out _);
        var (mean, variance) = SigmaTestKit.Moments(end);

        // Linear-Gaussian analysis of one ancestral step: D − μ = k(x − μ) with k = s²/(s² + σ²), so
        // x' − μ = f·(x − μ) + σ_up·z with f = (s² + σ_down·σ)/(s² + σ²): the mean stays μ exactly and the variance
        // follows v' = f²v + σ_up². At 50 steps this predicts 0.812·s² (first order: the sampler under-disperses),
        // at 200 steps 0.932·s²; it tends to s² as the steps grow.
        double v = sd * sd + s.Sigmas[0] * s.Sigmas[0];
        for (int i = 0; i < steps; i++)
        {
            double sig = s.Sigmas[i], to = s.Sigmas[i + 1];
            double up = Math.Sqrt(to * to * (sig * sig - to * to) / (sig * sig)), down = Math.Sqrt(to * to - up * up);
            double f = (sd * sd + down * sig) / (sd * sd + sig * sig);
            v = f * f * v + up * up;
        }
        Assert.InRange(v / (sd * sd), steps == 50 ? 0.80 : 0.92, steps == 50 ? 0.82 : 0.94);

        // Standard errors over n independent elements: SE(mean) = √(v/n), SE(variance) = v·√(2/(n − 1)).
        double seMean = Math.Sqrt(v / n), seVar = v * Math.Sqrt(2.0 / (n - 1));
        Assert.True(Math.Abs(mean - mu) < 4 * seMean, $"mean {mean}, expected {mu} ± {4 * seMean}");
        Assert.True(Math.Abs(variance - v) < 4 * seVar, $"variance {variance}, expected {v} ± {4 * seVar}");
    }

    [Fact]
    public void SameSeedGivesIdenticalSamplesAndAnotherSeedDoesNot()
    {
        var s = Sd15();
        var oracle = new GaussianOracle(s, SigmaTestKit.Pattern(512), 0.5);
        var a = oracle.Sample(20, 512, 42);
        var b = oracle.Sample(20, 512, 42);
        var c = oracle.Sample(20, 512, 43);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void StepWithoutNoiseThrowsArgumentNullException()
    {
        var s = Sd15();
        s.SetTimesteps(10);
        Assert.Throws<ArgumentNullException>(() => s.Step(new float[4], new float[4]));
        Assert.Equal(0, s.StepIndex);
    }

    [Fact]
    public void StepAddsExactlySigmaUpTimesTheDrawnNoise()
    {
        // Same model output and sample, two noise sources: the results differ by σ_up·(z₁ − z₂) with
        // σ_up = √(σ₁²(σ₀² − σ₁²)/σ₀²).
        var s1 = Sd15();
        var s2 = Sd15();
        s1.SetTimesteps(10);
        s2.SetTimesteps(10);
        var output = new float[] { 0.1f, -0.2f, 0.3f, 0.4f };
        var x1 = new float[] { 5f, -3f, 1f, 2f };
        var x2 = (float[])x1.Clone();
        s1.Step(output, x1, new GaussianNoise(1));
        s2.Step(output, x2, new GaussianNoise(2));
        var z1 = new float[4];
        var z2 = new float[4];
        new GaussianNoise(1).Fill(z1);
        new GaussianNoise(2).Fill(z2);
        double sig = s1.Sigmas[0], to = s1.Sigmas[1];
        double up = Math.Sqrt(to * to * (sig * sig - to * to) / (sig * sig));
        for (int i = 0; i < 4; i++) Assert.Equal(up * (z1[i] - z2[i]), x1[i] - x2[i], 1e-4);
    }

    [Fact]
    public void ScaleModelInputDividesBySqrtSigmaSquaredPlusOneAtTheCurrentStep()
    {
        var s = Sd15();
        s.SetTimesteps(20);
        SigmaTestKit.AssertScalesBy(s, s.Sigmas[0]);
        SigmaTestKit.StepOnce(s, new float[3], new GaussianNoise(0));
        SigmaTestKit.AssertScalesBy(s, s.Sigmas[1]);
    }

    [Fact]
    public void StepsAllocateNothingAfterTheFirst()
    {
        Assert.Equal(0, SigmaTestKit.AllocationsAfterFirstStep(Sd15(), 20, 4096));
    }

    [Fact]
    public void SamplePredictionIsNotSupported()
    {
        var e = Assert.Throws<NotSupportedException>(() => Sd15(("prediction_type", "sample")));
        Assert.Contains("sample", e.Message);
    }
}

using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using static MLNet.Diffusion.Tests.Schedulers.AlphaBarTestKit;

namespace MLNet.Diffusion.Tests.Schedulers;

public class LcmSchedulerTests
{
    private const int Large = 4 * 64 * 64;   // 16384 independent elements
    private const double Mu = 0.3, S = 0.5;

    [Theory]
    // k = 1000 div 50 = 20; distillation schedule 999, 979, …, 19; indices ⌊i·50/n⌋.
    [InlineData(50, 4, new float[] { 999, 759, 499, 259 })]                          // indices 0, 12, 25, 37
    [InlineData(50, 8, new float[] { 999, 879, 759, 639, 499, 379, 259, 139 })]      // 0, 6, 12, 18, 25, 31, 37, 43
    [InlineData(50, 3, new float[] { 999, 679, 339 })]                               // 0, 16, 33
    [InlineData(50, 1, new float[] { 999 })]
    // original_inference_steps 100: k = 10, schedule 999, 989, …, 9; indices 0, 25, 50, 75.
    [InlineData(100, 4, new float[] { 999, 749, 499, 249 })]
    public void TimestepsMatchDiffusers(int originalSteps, int steps, float[] expected)
    {
        var lcm = new LcmScheduler(Config(("original_inference_steps", originalSteps)));
        lcm.SetTimesteps(steps);
        Assert.Equal(expected, lcm.Timesteps.ToArray());
    }

    [Fact]
    public void MoreStepsThanOriginalScheduleThrows()
    {
        var lcm = new LcmScheduler(SchedulerConfig.Empty);
        Assert.Throws<ArgumentOutOfRangeException>(() => lcm.SetTimesteps(51));
        lcm.SetTimesteps(50);
        Assert.Equal(50, lcm.CallCount);
    }

    [Fact]
    public void ClassDefaultsApplyToMissingKeys()
    {
        // LCMScheduler's β defaults differ from DDIM's: 0.00085 → 0.012, scaled_linear.
        var lcm = new LcmScheduler(SchedulerConfig.Empty);
        Assert.Equal(0.00085, lcm.Betas[0], 12);
        Assert.Equal(0.012, lcm.Betas[999], 12);
        double root = Math.Sqrt(0.00085) + 500.0 / 999 * (Math.Sqrt(0.012) - Math.Sqrt(0.00085));
        Assert.Equal(root * root, lcm.Betas[500], 12);
        Assert.Equal(50, lcm.OriginalInferenceSteps);
        Assert.Equal(10.0, lcm.TimestepScaling);
        Assert.Equal(1.0, lcm.FinalAlphaCumprod);
        Assert.True(lcm.IsStochastic);

        // A file that names only the schedule still takes the class's beta_start / beta_end.
        var linear = new LcmScheduler(Config(("beta_schedule", "linear")));
        Assert.Equal(0.00085, linear.Betas[0], 12);
        Assert.Equal(0.00085 + 500.0 / 999 * (0.012 - 0.00085), linear.Betas[500], 12);

        // clip_sample defaults to false for LCM: a target outside [−1, 1] is reached, not clipped.
        var free = Generate(new LcmScheduler(SchedulerConfig.Empty), [1.5f], 0, 4, 256, seed: 2);
        Assert.True(MaxAbsError(free, [1.5f]) < 1e-4, $"max error {MaxAbsError(free, [1.5f])}");
        var clipped = Generate(new LcmScheduler(Config(("clip_sample", true))), [1.5f], 0, 4, 256, seed: 2);
        Assert.True(MaxAbsError(clipped, [1f]) < 1e-4, $"max error {MaxAbsError(clipped, [1f])}");
    }

    [Fact]
    public void BoundaryScalingsFollowConsistencyModelParameterisation()
    {
        var lcm = new LcmScheduler(SchedulerConfig.Empty);
        Assert.Equal((1.0, 0.0), lcm.BoundaryScalings(0));   // f(x, 0) = x
        var (skip, output) = lcm.BoundaryScalings(259);
        double tau = 2590;                                      // t·timestep_scaling
        Assert.Equal(0.25 / (tau * tau + 0.25), skip, 15);
        Assert.Equal(tau / Math.Sqrt(tau * tau + 0.25), output, 15);
    }

    [Theory]
    [InlineData("epsilon", 4)]
    [InlineData("epsilon", 8)]
    [InlineData("v_prediction", 4)]
    [InlineData("v_prediction", 8)]
    [InlineData("sample", 4)]
    [InlineData("sample", 8)]
    public void FixedTargetConverges(string prediction, int steps)
    {
        // s = 0: x̂₀ = μ at every step and the last output is c_out·μ + c_skip·x with c_skip < 4e-8 at t ≥ 139;
        // measured error ≲ 4e-7.
        var mu = Pattern();
        var x = Generate(new LcmScheduler(Config(("prediction_type", prediction))), mu, 0, steps, 1024, seed: 3);
        Assert.True(MaxAbsError(x, mu) < 1e-4, $"max error {MaxAbsError(x, mu)}");
    }

    [Fact]
    public void GaussianData4StepsMatchesExactChainMoments()
    {
        // With the Gaussian oracle the model is the MMSE denoiser E[x₀ | x_t], not a consistency function, so
        // LCM does not reproduce s²: each step re-noises the shrunken estimate and the output is the last
        // estimate, variance 0.228 here (s² = 0.25). What it must match is the exact linear-Gaussian chain
        // (AffineStep with c_out·x̂₀ + c_skip·x, then √ᾱ_prev scaling and √(1 − ᾱ_prev)·z).
        // Tolerance: 4 standard errors for n = 16384.
        var lcm = new LcmScheduler(SchedulerConfig.Empty);
        var x = GenerateFast(lcm, Mu, S, 4, Large, seed: 4);

        int[] t = [999, 759, 499, 259];
        var m = (Mean: 0.0, Variance: 1.0);
        for (int i = 0; i < t.Length; i++)
        {
            double a = lcm.AlphasCumprod[t[i]], tau = 10.0 * t[i];
            double cSkip = 0.25 / (tau * tau + 0.25), cOut = tau / Math.Sqrt(tau * tau + 0.25);
            if (i == t.Length - 1)
                m = AffineStep(m, a, Mu, S, cOut, 0, cSkip, 0);
            else
            {
                double ap = lcm.AlphasCumprod[t[i + 1]];
                m = AffineStep(m, a, Mu, S, Math.Sqrt(ap) * cOut, 0, Math.Sqrt(ap) * cSkip, Math.Sqrt(1 - ap));
            }
        }
        var (mean, variance) = Moments(x);
        Assert.InRange(mean, m.Mean - 4 * Math.Sqrt(m.Variance / Large), m.Mean + 4 * Math.Sqrt(m.Variance / Large));
        Assert.InRange(variance, m.Variance * (1 - 4 * Math.Sqrt(2.0 / Large)), m.Variance * (1 + 4 * Math.Sqrt(2.0 / Large)));
        Assert.True(m.Variance < 0.95 * S * S);
    }

    [Fact]
    public void SameSeedSameOutputDifferentSeedDifferentOutput()
    {
        float[] Run(long seed) => Generate(new LcmScheduler(SchedulerConfig.Empty), [(float)Mu], S, 4, 512, seed);
        Assert.Equal(Run(31), Run(31));
        Assert.NotEqual(Run(31), Run(32));
    }

    [Fact]
    public void StepWithoutNoiseThrowsStepBeforeSetTimestepsThrows()
    {
        var lcm = new LcmScheduler(SchedulerConfig.Empty);
        Assert.Throws<InvalidOperationException>(() => lcm.Step(new float[4], new float[4], new GaussianNoise(1)));
        lcm.SetTimesteps(4);
        Assert.Throws<ArgumentNullException>(() => lcm.Step(new float[4], new float[4]));
        Assert.Throws<NotSupportedException>(() => new LcmScheduler(Config(("thresholding", true))));
    }

    [Fact]
    public void ImageToImageFromBeginIndexConverges()
    {
        var mu = Pattern();
        var x = GenerateFrom(new LcmScheduler(SchedulerConfig.Empty), mu, 8, 4, 1024, seed: 6);
        Assert.True(MaxAbsError(x, mu) < 1e-4, $"max error {MaxAbsError(x, mu)}");
    }

    [Fact]
    public void NoAllocationAfterFirstStep()
    {
        Assert.Equal(0, AllocatedAfterFirstStep(new LcmScheduler(SchedulerConfig.Empty), 8, 1024));
    }
}

using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using static MLNet.Diffusion.Tests.Schedulers.AlphaBarTestKit;

namespace MLNet.Diffusion.Tests.Schedulers;

public class DdimSchedulerTests
{
    private const int Large = 4 * 64 * 64;   // 16384 independent elements
    private const double Mu = 0.3, S = 0.5;

    [Fact]
    public void Sd15Config50StepsLeadingTimesteps()
    {
        var ddim = new DdimScheduler(SchedulerConfig.Parse(Sd15Json));
        ddim.SetTimesteps(50);
        // leading: i·(1000 div 50) + steps_offset 1, decreasing.
        var expected = Enumerable.Range(0, 50).Select(i => 981f - 20 * i).ToArray();
        Assert.Equal(expected, ddim.Timesteps.ToArray());
        Assert.Equal(1f, ddim.Timesteps[^1]);
    }

    [Theory]
    // trailing: round(1000 − i·1000/n) − 1. n = 3: 1000, 666.67, 333.33 → 999, 666, 332.
    [InlineData("trailing", 3, new float[] { 999, 666, 332 })]
    // n = 7: 1000, 857.14, 714.29, 571.43, 428.57, 285.71, 142.86 → minus 1 after rounding.
    [InlineData("trailing", 7, new float[] { 999, 856, 713, 570, 428, 285, 142 })]
    // linspace(0, 999, 7) = i·166.5; numpy rounds half to even: 166.5 → 166, 499.5 → 500, 832.5 → 832.
    [InlineData("linspace", 7, new float[] { 999, 832, 666, 500, 333, 166, 0 })]
    // linspace(0, 999, 10) = i·111.
    [InlineData("linspace", 10, new float[] { 999, 888, 777, 666, 555, 444, 333, 222, 111, 0 })]
    public void SpacingMatchesDiffusers(string spacing, int steps, float[] expected)
    {
        // steps_offset only applies to leading spacing, as in diffusers.
        var ddim = new DdimScheduler(Config(("timestep_spacing", spacing), ("steps_offset", 1)));
        ddim.SetTimesteps(steps);
        Assert.Equal(expected, ddim.Timesteps.ToArray());
    }

    [Fact]
    public void ClassDefaultsApplyToMissingKeys()
    {
        var ddim = new DdimScheduler(SchedulerConfig.Empty);
        Assert.Equal(0.0001, ddim.Betas[0], 12);
        Assert.Equal(0.02, ddim.Betas[^1], 12);
        Assert.Equal(1.0, ddim.FinalAlphaCumprod);   // set_alpha_to_one defaults to true
        ddim.SetTimesteps(10);
        Assert.Equal(900f, ddim.Timesteps[0]);        // leading, steps_offset 0
        Assert.Equal(0.0, ddim.Eta);
        Assert.False(ddim.IsStochastic);
    }

    [Fact]
    public void SetAlphaToOneDefaultTrueEndsCleanFalseLeavesAlpha0Noise()
    {
        var mu = Pattern();
        // Default (true): the last step goes to ᾱ = 1, so the s = 0 target is hit to float precision.
        var clean = Generate(new DdimScheduler(SchedulerConfig.Empty), mu, 0, 20, 4096, seed: 1);
        Assert.True(MaxAbsError(clean, mu) < 1e-4, $"max error {MaxAbsError(clean, mu)}");

        // false: the sample ends at t = 0, √ᾱ₀·μ + √(1 − ᾱ₀)·ε, i.e. residual noise of std √β₀ = 0.01.
        var ddim = new DdimScheduler(Config(("set_alpha_to_one", false)));
        double a0 = ddim.AlphasCumprod[0];
        Assert.Equal(a0, ddim.FinalAlphaCumprod);
        var noisy = Generate(ddim, mu, 0, 20, 4096, seed: 1);
        var residual = new float[noisy.Length];
        for (int i = 0; i < noisy.Length; i++) residual[i] = (float)(noisy[i] - Math.Sqrt(a0) * mu[i % mu.Length]);
        double std = Math.Sqrt(Moments(residual).Variance);
        // The residual std estimates √(1 − ᾱ₀) with relative standard error 1/√(2n) ≈ 1.1 %; allow 5 %.
        Assert.InRange(std, 0.95 * Math.Sqrt(1 - a0), 1.05 * Math.Sqrt(1 - a0));
    }

    [Fact]
    public void ClipSampleDefaultTrueClipsPredictedX0()
    {
        var outside = new[] { 1.5f };
        var clipped = Generate(new DdimScheduler(SchedulerConfig.Empty), outside, 0, 20, 256, seed: 2);
        Assert.True(MaxAbsError(clipped, [1f]) < 1e-4, "clip_sample defaults to true: x̂₀ is clipped to 1");
        var free = Generate(new DdimScheduler(Config(("clip_sample", false))), outside, 0, 20, 256, seed: 2);
        Assert.True(MaxAbsError(free, outside) < 1e-4);
        var range = Generate(new DdimScheduler(Config(("clip_sample_range", 1.2))), outside, 0, 20, 256, seed: 2);
        Assert.True(MaxAbsError(range, [1.2f]) < 1e-4);
    }

    [Theory]
    [InlineData("epsilon", 20)]
    [InlineData("epsilon", 50)]
    [InlineData("v_prediction", 20)]
    [InlineData("sample", 20)]
    public void FixedTargetConverges(string prediction, int steps)
    {
        // s = 0: x̂₀ = μ at every step, so each DDIM step is exact; only float rounding remains (measured ≲ 2e-6).
        var mu = Pattern();
        var ddim = new DdimScheduler(SchedulerConfig.Parse(Sd15Json).With(("set_alpha_to_one", true), ("prediction_type", prediction)));
        var x = Generate(ddim, mu, 0, steps, 1024, seed: 3);
        Assert.True(MaxAbsError(x, mu) < 1e-4, $"max error {MaxAbsError(x, mu)}");
    }

    [Theory]
    [InlineData(0.0, "epsilon")]
    [InlineData(1.0, "epsilon")]
    [InlineData(0.0, "v_prediction")]
    [InlineData(0.0, "sample")]
    [InlineData(0.5, "v_prediction")]
    public void GaussianData50StepsMatchesExactChainMoments(double eta, string prediction)
    {
        // With data N(μ, s²) the oracle is linear, so the 50-step chain's output is exactly Gaussian with moments
        // given by AffineStep. DDIM is first order, so those moments are not yet N(μ, s²): η = 0 gives variance
        // 0.2232 and η = 1 gives 0.1973 (s² = 0.25). Tolerance: 4 standard errors, √(V/n) for the mean and
        // V·√(2/n) for the variance (n = 16384).
        // The oracle's ε, v and x₀ outputs describe the same denoiser, so the moments do not depend on the
        // prediction type; with s > 0 this also checks ε̂ from v and x₀, which the s = 0 runs cannot see.
        var ddim = new DdimScheduler(Config(("clip_sample", false), ("prediction_type", prediction))) { Eta = eta };
        var x = GenerateFast(ddim, Mu, S, 50, Large, seed: 4);

        var m = (Mean: 0.0, Variance: 1.0);
        for (int i = 0; i < 50; i++)
        {
            int t = 980 - 20 * i, prev = t - 20;
            double a = ddim.AlphasCumprod[t], ap = prev >= 0 ? ddim.AlphasCumprod[prev] : 1.0;
            double sigma = eta * Math.Sqrt((1 - ap) / (1 - a) * (1 - a / ap));
            m = AffineStep(m, a, Mu, S, Math.Sqrt(ap), Math.Sqrt(1 - ap - sigma * sigma), 0, sigma);
        }
        var (mean, variance) = Moments(x);
        Assert.InRange(mean, m.Mean - 4 * Math.Sqrt(m.Variance / Large), m.Mean + 4 * Math.Sqrt(m.Variance / Large));
        Assert.InRange(variance, m.Variance * (1 - 4 * Math.Sqrt(2.0 / Large)), m.Variance * (1 + 4 * Math.Sqrt(2.0 / Large)));
    }

    [Fact]
    public void Deterministic1000StepsMatchesDataDistribution()
    {
        // With all 1000 training steps the probability-flow ODE (η = 0) reproduces N(μ, s²).
        // Tolerance: 4 standard errors for n = 16384 (mean 4·s/√n = 0.016, variance 4·s²·√(2/n) = 0.011) plus the
        // discretisation bias left at 1000 steps, which the exact moment recursion puts at −0.0015 in the variance
        // and −0.001 in the mean: 0.005 is added to the variance bound.
        var ddim = new DdimScheduler(Config(("clip_sample", false)));
        var x = GenerateFast(ddim, Mu, S, 1000, Large, seed: 5);
        var (mean, variance) = Moments(x);
        Assert.InRange(mean, Mu - 4 * S / Math.Sqrt(Large), Mu + 4 * S / Math.Sqrt(Large));
        double tol = 4 * S * S * Math.Sqrt(2.0 / Large) + 0.005;
        Assert.InRange(variance, S * S - tol, S * S + tol);
    }

    [Fact]
    public void Ancestral1000StepsMatchesDataDistribution()
    {
        // η = 1 with all 1000 steps is DDPM's ancestral chain and reproduces N(μ, s²). Drawing the per-step noise
        // dominates the run time, so n = 2048 (DdpmSchedulerTests runs the same chain with 4096): 4 standard
        // errors are 0.044 (mean) and 4·s²·√(2/n) = 0.031 (variance); the fixed-small posterior variance leaves
        // the 1000-step chain 0.0039 low (exact moment recursion), so 0.005 is added to the variance bound.
        const int n = 2048;
        var ddim = new DdimScheduler(Config(("clip_sample", false))) { Eta = 1 };
        var x = GenerateFast(ddim, Mu, S, 1000, n, seed: 5);
        var (mean, variance) = Moments(x);
        Assert.InRange(mean, Mu - 4 * S / Math.Sqrt(n), Mu + 4 * S / Math.Sqrt(n));
        double tol = 4 * S * S * Math.Sqrt(2.0 / n) + 0.005;
        Assert.InRange(variance, S * S - tol, S * S + tol);
    }

    [Theory]
    [InlineData("epsilon")]
    [InlineData("v_prediction")]
    [InlineData("sample")]
    public void FastOracleAgreesWithGaussianOracle(string prediction)
    {
        var ddim = new DdimScheduler(Config(("prediction_type", prediction)));
        var oracle = new Oracles.GaussianOracle(ddim, [(float)Mu], S);
        var x = new float[256];
        new GaussianNoise(9).Fill(x);
        var slow = new float[x.Length];
        var fast = new float[x.Length];
        foreach (int t in new[] { 0, 1, 250, 999 })
        {
            oracle.Predict(x, t, slow);
            FastPredict(ddim.PredictionType, ddim.AlphasCumprod[t], Mu, S, x, fast);
            for (int i = 0; i < x.Length; i++) Assert.Equal(slow[i], fast[i], 1e-5 * Math.Max(1, Math.Abs(slow[i])));
        }
    }

    [Fact]
    public void EtaMakesItStochasticAndNeedsNoise()
    {
        var ddim = new DdimScheduler(SchedulerConfig.Empty) { Eta = 1 };
        Assert.True(ddim.IsStochastic);
        ddim.SetTimesteps(10);
        var sample = new float[16];
        Assert.Throws<ArgumentNullException>(() => ddim.Step(new float[16], sample));

        ddim.Eta = 0;
        ddim.Step(new float[16], sample);   // deterministic: no noise source needed
        Assert.Equal(1, ddim.StepIndex);
        Assert.Throws<ArgumentOutOfRangeException>(() => ddim.Eta = -0.1);
    }

    [Fact]
    public void SameSeedSameOutputDifferentSeedDifferentOutput()
    {
        float[] Run(long seed) => Generate(new DdimScheduler(Config(("clip_sample", false))) { Eta = 1 }, [(float)Mu], S, 20, 512, seed);
        Assert.Equal(Run(11), Run(11));
        Assert.NotEqual(Run(11), Run(12));
    }

    [Fact]
    public void StepBeforeSetTimestepsThrows()
    {
        var ddim = new DdimScheduler(SchedulerConfig.Empty);
        Assert.Throws<InvalidOperationException>(() => ddim.Step(new float[4], new float[4]));
        ddim.SetTimesteps(1);
        ddim.Step(new float[4], new float[4]);
        Assert.Throws<InvalidOperationException>(() => ddim.Step(new float[4], new float[4]));
    }

    [Fact]
    public void ThresholdingIsRejected()
    {
        var e = Assert.Throws<NotSupportedException>(() => new DdimScheduler(Config(("thresholding", true))));
        Assert.Contains("thresholding", e.Message);
    }

    [Fact]
    public void AddNoiseUsesAlphaBarAtCallTimestep()
    {
        var ddim = new DdimScheduler(SchedulerConfig.Parse(Sd15Json));
        ddim.SetTimesteps(50);
        var dest = new float[2];
        ddim.AddNoise([1f, -2f], [0.5f, 3f], 10, dest);
        double a = ddim.AlphasCumprod[781];   // Timesteps[10] = 981 − 200
        Assert.Equal(Math.Sqrt(a) * 1 + Math.Sqrt(1 - a) * 0.5, dest[0], 5);
        Assert.Equal(Math.Sqrt(a) * -2 + Math.Sqrt(1 - a) * 3, dest[1], 5);
    }

    [Fact]
    public void ImageToImageFromBeginIndexConverges()
    {
        var mu = Pattern();
        var ddim = new DdimScheduler(SchedulerConfig.Parse(Sd15Json).With(("set_alpha_to_one", true)));
        var x = GenerateFrom(ddim, mu, 50, 25, 1024, seed: 6);
        Assert.True(MaxAbsError(x, mu) < 1e-4, $"max error {MaxAbsError(x, mu)}");
    }

    [Fact]
    public void NoAllocationAfterFirstStep()
    {
        Assert.Equal(0, AllocatedAfterFirstStep(new DdimScheduler(SchedulerConfig.Empty) { Eta = 1 }, 20, 1024));
    }
}

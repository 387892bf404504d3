using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using static MLNet.Diffusion.Tests.Schedulers.AlphaBarTestKit;

namespace MLNet.Diffusion.Tests.Schedulers;

public class DdpmSchedulerTests
{
    private const int Large = 4 * 64 * 64;   // 16384 independent elements
    private const double Mu = 0.3, S = 0.5;

    [Fact]
    public void Sd15Config50StepsLeadingTimesteps()
    {
        var ddpm = new DdpmScheduler(SchedulerConfig.Parse(Sd15Json));
        ddpm.SetTimesteps(50);
        Assert.Equal(Enumerable.Range(0, 50).Select(i => 981f - 20 * i).ToArray(), ddpm.Timesteps.ToArray());
    }

    [Theory]
    // trailing: round(1000 − i·1000/3) − 1 = 999, 666, 332.
    [InlineData("trailing", 3, new float[] { 999, 666, 332 })]
    // linspace(0, 999, 5) = 0, 249.75, 499.5, 749.25, 999 → 0, 250, 500, 749, 999 (numpy rounding).
    [InlineData("linspace", 5, new float[] { 999, 749, 500, 250, 0 })]
    // leading: i·(1000 div 4) + steps_offset 0.
    [InlineData("leading", 4, new float[] { 750, 500, 250, 0 })]
    public void SpacingMatchesDiffusers(string spacing, int steps, float[] expected)
    {
        var ddpm = new DdpmScheduler(Config(("timestep_spacing", spacing)));
        ddpm.SetTimesteps(steps);
        Assert.Equal(expected, ddpm.Timesteps.ToArray());
    }

    [Fact]
    public void ClassDefaultsApplyToMissingKeys()
    {
        var ddpm = new DdpmScheduler(SchedulerConfig.Empty);
        Assert.Equal("fixed_small", ddpm.VarianceType);
        Assert.True(ddpm.IsStochastic);
        Assert.Equal(0.0001, ddpm.Betas[0], 12);
        ddpm.SetTimesteps(1000);
        Assert.Equal(999f, ddpm.Timesteps[0]);
        Assert.Equal(0f, ddpm.Timesteps[^1]);

        // clip_sample defaults to true: a target outside [−1, 1] ends at the clip bound.
        var clipped = Generate(new DdpmScheduler(SchedulerConfig.Empty), [1.5f], 0, 50, 256, seed: 2);
        Assert.True(MaxAbsError(clipped, [1f]) < 1e-4, $"max error {MaxAbsError(clipped, [1f])}");
        var free = Generate(new DdpmScheduler(Config(("clip_sample", false))), [1.5f], 0, 50, 256, seed: 2);
        Assert.True(MaxAbsError(free, [1.5f]) < 1e-4, $"max error {MaxAbsError(free, [1.5f])}");
    }

    [Theory]
    [InlineData("epsilon")]
    [InlineData("v_prediction")]
    [InlineData("sample")]
    public void FixedTargetConverges(string prediction)
    {
        // s = 0: each posterior step keeps x ~ N(√ᾱ·μ, 1 − ᾱ) exactly and the step at t = 0 adds no noise and
        // lands on x̂₀ = μ; measured error ≲ 2e-9.
        var mu = Pattern();
        var x = Generate(new DdpmScheduler(Config(("prediction_type", prediction))), mu, 0, 50, 1024, seed: 3);
        Assert.True(MaxAbsError(x, mu) < 1e-4, $"max error {MaxAbsError(x, mu)}");
    }

    [Theory]
    [InlineData("fixed_small")]
    [InlineData("fixed_small_log")]
    [InlineData("fixed_large")]
    public void GaussianData50StepsMatchesExactChainMoments(string varianceType)
    {
        // On N(μ, s²) data the chain is linear-Gaussian, so its output moments follow AffineStep exactly:
        // variance 0.1973 for fixed_small (the posterior variance ignores Var[x₀ | x_t]) and 0.2675 for
        // fixed_large (β_t overshoots) at 50 steps; s² = 0.25. Tolerance: 4 standard errors for n = 16384.
        var ddpm = new DdpmScheduler(Config(("clip_sample", false), ("variance_type", varianceType)));
        var x = GenerateFast(ddpm, Mu, S, 50, Large, seed: 4);

        var m = (Mean: 0.0, Variance: 1.0);
        for (int i = 0; i < 50; i++)
        {
            int t = 980 - 20 * i, prev = t - 20;
            double a = ddpm.AlphasCumprod[t], ap = prev >= 0 ? ddpm.AlphasCumprod[prev] : 1.0;
            double beta = 1 - a / ap;
            double variance = t == 0 ? 0 : varianceType == "fixed_large" ? beta : (1 - ap) / (1 - a) * beta;
            m = AffineStep(m, a, Mu, S, Math.Sqrt(ap) * beta / (1 - a), 0, Math.Sqrt(1 - beta) * (1 - ap) / (1 - a), Math.Sqrt(variance));
        }
        var (mean, var) = Moments(x);
        Assert.InRange(mean, m.Mean - 4 * Math.Sqrt(m.Variance / Large), m.Mean + 4 * Math.Sqrt(m.Variance / Large));
        Assert.InRange(var, m.Variance * (1 - 4 * Math.Sqrt(2.0 / Large)), m.Variance * (1 + 4 * Math.Sqrt(2.0 / Large)));
    }

    [Fact]
    public void GaussianData1000StepsMatchesDataDistribution()
    {
        // The full 1000-step ancestral chain reproduces N(μ, s²). Per-step noise dominates the run time, so
        // n = 4096: 4 standard errors are 0.031 (mean) and 4·s²·√(2/n) = 0.022 (variance); the fixed_small
        // chain ends 0.0039 below s² (exact moment recursion), so 0.005 is added to the variance bound.
        const int n = 4096;
        var x = GenerateFast(new DdpmScheduler(Config(("clip_sample", false))), Mu, S, 1000, n, seed: 6);
        var (mean, variance) = Moments(x);
        Assert.InRange(mean, Mu - 4 * S / Math.Sqrt(n), Mu + 4 * S / Math.Sqrt(n));
        double tol = 4 * S * S * Math.Sqrt(2.0 / n) + 0.005;
        Assert.InRange(variance, S * S - tol, S * S + tol);
    }

    [Fact]
    public void SameSeedSameOutputDifferentSeedDifferentOutput()
    {
        float[] Run(long seed) => Generate(new DdpmScheduler(SchedulerConfig.Empty), [(float)Mu], S, 20, 512, seed);
        Assert.Equal(Run(21), Run(21));
        Assert.NotEqual(Run(21), Run(22));
    }

    [Fact]
    public void StepWithoutNoiseThrowsStepBeforeSetTimestepsThrows()
    {
        var ddpm = new DdpmScheduler(SchedulerConfig.Empty);
        Assert.Throws<InvalidOperationException>(() => ddpm.Step(new float[4], new float[4], new GaussianNoise(1)));
        ddpm.SetTimesteps(10);
        Assert.Throws<ArgumentNullException>(() => ddpm.Step(new float[4], new float[4]));
        Assert.Equal(0, ddpm.StepIndex);
    }

    [Theory]
    [InlineData("fixed_large_log")]
    [InlineData("learned")]
    [InlineData("learned_range")]
    public void UnsupportedVarianceTypesAreRejected(string varianceType)
    {
        var e = Assert.Throws<NotSupportedException>(() => new DdpmScheduler(Config(("variance_type", varianceType))));
        Assert.Contains(varianceType, e.Message);
        Assert.Throws<InvalidDataException>(() => new DdpmScheduler(Config(("variance_type", "fixed_medium"))));
        Assert.Throws<NotSupportedException>(() => new DdpmScheduler(Config(("thresholding", true))));
    }

    [Fact]
    public void ImageToImageFromBeginIndexConverges()
    {
        var mu = Pattern();
        var x = GenerateFrom(new DdpmScheduler(SchedulerConfig.Empty), mu, 50, 30, 1024, seed: 6);
        Assert.True(MaxAbsError(x, mu) < 1e-4, $"max error {MaxAbsError(x, mu)}");
    }

    [Fact]
    public void NoAllocationAfterFirstStep()
    {
        Assert.Equal(0, AllocatedAfterFirstStep(new DdpmScheduler(SchedulerConfig.Empty), 20, 1024));
    }
}

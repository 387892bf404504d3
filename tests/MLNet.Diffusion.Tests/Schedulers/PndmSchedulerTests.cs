using MLNet.Diffusion.Schedulers;
using static MLNet.Diffusion.Tests.Schedulers.AlphaBarTestKit;

namespace MLNet.Diffusion.Tests.Schedulers;

public class PndmSchedulerTests
{
    private const int Large = 4 * 64 * 64;   // 16384 independent elements
    private const double Mu = 0.3, S = 0.5;

    private static SchedulerConfig Sd15 => SchedulerConfig.Parse(Sd15Json, "stable-diffusion-v1-5/scheduler/scheduler_config.json");

    [Fact]
    public void Sd15ConfigParsesAndGivesDiffusers51Calls()
    {
        var config = Sd15;
        Assert.Equal("PNDMScheduler", config.ClassName);
        var pndm = new PndmScheduler(config);
        Assert.True(pndm.SkipPrkSteps);
        Assert.Equal(0.00085, pndm.Betas[0], 12);
        Assert.Equal(0.012, pndm.Betas[999], 12);
        Assert.Equal(pndm.AlphasCumprod[0], pndm.FinalAlphaCumprod);
        Assert.Equal(1 - 0.00085, pndm.FinalAlphaCumprod, 12);

        pndm.SetTimesteps(50);
        // diffusers: τ = 1, 21, …, 981; plms_timesteps = concat(τ[:-1], τ[-2:-1], τ[-1:])[::-1].
        float[] expected =
        [
            981, 961, 961, 941, 921, 901, 881, 861, 841, 821, 801, 781, 761, 741, 721, 701, 681, 661, 641, 621,
            601, 581, 561, 541, 521, 501, 481, 461, 441, 421, 401, 381, 361, 341, 321, 301, 281, 261, 241, 221,
            201, 181, 161, 141, 121, 101, 81, 61, 41, 21, 1,
        ];
        Assert.Equal(51, pndm.CallCount);
        Assert.Equal(expected, pndm.Timesteps.ToArray());
    }

    [Fact]
    public void RungeKuttaWarmupGivesDiffusers59Calls()
    {
        var pndm = new PndmScheduler(Sd15.With(("skip_prk_steps", false)));
        pndm.SetTimesteps(50);
        // Four highest τ a..d = 921, 941, 961, 981 and h = 1000 div 50 div 2 = 10:
        // prk = [d, c+h, c+h, c, c, b+h, b+h, b, b, a+h, a+h, a], then plms = τ[:-3][::-1] = 921, 901, …, 1.
        var expected = new float[] { 981, 971, 971, 961, 961, 951, 951, 941, 941, 931, 931, 921 }
            .Concat(Enumerable.Range(0, 47).Select(i => 921f - 20 * i)).ToArray();
        Assert.Equal(59, pndm.CallCount);
        Assert.Equal(expected, pndm.Timesteps.ToArray());
    }

    [Theory]
    // linspace(0, 999, 7) rounded half to even: 0, 166, 333, 500, 666, 832, 999; 832 is visited twice.
    [InlineData("linspace", 7, new float[] { 999, 832, 832, 666, 500, 333, 166, 0 })]
    // trailing: round(arange(1000, 0, −100))[::-1] − 1 = 99, 199, …, 999.
    [InlineData("trailing", 10, new float[] { 999, 899, 899, 799, 699, 599, 499, 399, 299, 199, 99 })]
    // leading with steps_offset 1 and n = 2: τ = 1, 501.
    [InlineData("leading", 2, new float[] { 501, 1, 1 })]
    [InlineData("leading", 1, new float[] { 1 })]
    public void PlmsSpacingMatchesDiffusers(string spacing, int steps, float[] expected)
    {
        var pndm = new PndmScheduler(Sd15.With(("timestep_spacing", spacing)));
        pndm.SetTimesteps(steps);
        Assert.Equal(expected, pndm.Timesteps.ToArray());
    }

    [Fact]
    public void ClassDefaultsApplyToMissingKeys()
    {
        var pndm = new PndmScheduler(SchedulerConfig.Empty);
        Assert.False(pndm.SkipPrkSteps);                            // skip_prk_steps defaults to false
        Assert.Equal(pndm.AlphasCumprod[0], pndm.FinalAlphaCumprod); // set_alpha_to_one defaults to false
        Assert.Equal(0.0001, pndm.Betas[0], 12);
        pndm.SetTimesteps(50);
        Assert.Equal(59, pndm.CallCount);
        Assert.Equal(980f, pndm.Timesteps[0]);                       // steps_offset defaults to 0
    }

    [Fact]
    public void SetAlphaToOneDefaultFalseLeavesAlpha0Noise()
    {
        var mu = Pattern();
        var pndm = new PndmScheduler(Config(("skip_prk_steps", true)));
        double a0 = pndm.AlphasCumprod[0];
        var x = Generate(pndm, mu, 0, 20, 4096, seed: 1);
        var residual = new float[x.Length];
        for (int i = 0; i < x.Length; i++) residual[i] = (float)(x[i] - Math.Sqrt(a0) * mu[i % mu.Length]);
        // The final sample sits at t = 0: residual std √(1 − ᾱ₀) = 0.01, estimated to ≈ 1.1 % (1/√(2n)); allow 5 %.
        double std = Math.Sqrt(Moments(residual).Variance);
        Assert.InRange(std, 0.95 * Math.Sqrt(1 - a0), 1.05 * Math.Sqrt(1 - a0));

        var clean = Generate(new PndmScheduler(Config(("skip_prk_steps", true), ("set_alpha_to_one", true))), mu, 0, 20, 4096, seed: 1);
        Assert.True(MaxAbsError(clean, mu) < 1e-4, $"max error {MaxAbsError(clean, mu)}");
    }

    [Theory]
    [InlineData(true, "epsilon")]
    [InlineData(true, "v_prediction")]
    [InlineData(true, "sample")]
    [InlineData(false, "epsilon")]
    [InlineData(false, "v_prediction")]
    [InlineData(false, "sample")]
    public void FixedTargetConverges(bool skipPrk, string prediction)
    {
        // s = 0: along the exact path ε̂ is constant, every multistep combination (weights sum to 1) returns it and
        // the eq. 9 transfer is exact; only float rounding remains (measured ≲ 3e-6). This also holds for
        // v and x₀ prediction only because each output is converted to ε̂ at its own timestep.
        var mu = Pattern();
        var pndm = new PndmScheduler(Sd15.With(("skip_prk_steps", skipPrk), ("set_alpha_to_one", true), ("prediction_type", prediction)));
        var x = Generate(pndm, mu, 0, 50, 1024, seed: 3);
        Assert.True(MaxAbsError(x, mu) < 1e-4, $"max error {MaxAbsError(x, mu)}");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void GaussianData50StepsMatchesDataDistribution(bool skipPrk)
    {
        // PLMS is 4th order: at 50 steps its output on N(μ, s²) data already has the data's moments (the exact
        // recursion gives mean 0.2989, variance 0.2506 for the PLMS warm-up), where first-order DDIM still has
        // variance 0.2232. Tolerance: 4 standard errors for n = 16384 (mean 0.016, variance 0.011) plus 0.002
        // for the remaining discretisation bias.
        var pndm = new PndmScheduler(Config(("skip_prk_steps", skipPrk), ("set_alpha_to_one", true)));
        var x = GenerateFast(pndm, Mu, S, 50, Large, seed: 4);
        var (mean, variance) = Moments(x);
        Assert.InRange(mean, Mu - 4 * S / Math.Sqrt(Large) - 0.002, Mu + 4 * S / Math.Sqrt(Large) + 0.002);
        double tol = 4 * S * S * Math.Sqrt(2.0 / Large) + 0.002;
        Assert.InRange(variance, S * S - tol, S * S + tol);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void StepsFollowDiffusersStepByStep(bool skipPrk)
    {
        // A scalar re-statement of diffusers' step_plms / step_prk bookkeeping (counter, ets, cur_sample,
        // cur_model_output), fed with made-up ε outputs; the transfer is written in its DDIM form
        // √ᾱ'·(x − √(1−ᾱ)·ε)/√ᾱ + √(1−ᾱ')·ε, algebraically PNDM eq. 9.
        var pndm = new PndmScheduler(Sd15.With(("skip_prk_steps", skipPrk)));
        pndm.SetTimesteps(20);
        int r = 1000 / 20, h = r / 2;
        double Alpha(int t) => t >= 0 ? pndm.AlphasCumprod[t] : pndm.FinalAlphaCumprod;
        double Transfer(double x, int t, int tp, double e) =>
            Math.Sqrt(Alpha(tp)) * (x - Math.Sqrt(1 - Alpha(t)) * e) / Math.Sqrt(Alpha(t)) + Math.Sqrt(1 - Alpha(tp)) * e;

        var ets = new List<double>();
        double expected = 0.8, curSample = 0, curOutput = 0;
        var sample = new[] { 0.8f };
        for (int counter = 0; counter < pndm.CallCount; counter++)
        {
            int t = (int)pndm.Timesteps[counter];
            double output = 0.3 * Math.Sin(counter + 1.0) + 0.05 * expected;   // any model output
            double e = output;
            int prk = skipPrk ? 0 : 12;
            if (counter < prk)
            {
                int prev = t - (counter % 2 == 1 ? 0 : h), start = (int)pndm.Timesteps[counter / 4 * 4];
                switch (counter % 4)
                {
                    case 0: curOutput = e / 6; ets.Add(e); curSample = expected; break;
                    case 1: case 2: curOutput += e / 3; break;
                    default: e = curOutput + e / 6; curOutput = 0; break;
                }
                expected = Transfer(curSample, start, prev, e);
            }
            else
            {
                int from = t, prev = t - r;
                if (counter != 1 || !skipPrk) { ets.Add(e); if (ets.Count > 4) ets.RemoveAt(0); }
                else { prev = t; from = t + r; }
                double c;
                if (skipPrk && counter == 0) { c = e; curSample = expected; }
                else if (skipPrk && counter == 1) { c = (e + ets[^1]) / 2; expected = curSample; }
                else if (ets.Count == 2) c = (3 * ets[^1] - ets[^2]) / 2;
                else if (ets.Count == 3) c = (23 * ets[^1] - 16 * ets[^2] + 5 * ets[^3]) / 12;
                else c = (55 * ets[^1] - 59 * ets[^2] + 37 * ets[^3] - 9 * ets[^4]) / 24;
                expected = Transfer(expected, from, prev, c);
            }
            pndm.Step([(float)output], sample);
            Assert.True(Math.Abs(sample[0] - expected) < 1e-5 * Math.Max(1, Math.Abs(expected)),
                $"call {counter} (t = {t}): {sample[0]} vs {expected}");
        }
    }

    [Fact]
    public void SetTimestepsResetsHistory()
    {
        var mu = Pattern();
        var fresh = Generate(new PndmScheduler(Sd15), mu, 0.2, 20, 512, seed: 8);

        var reused = new PndmScheduler(Sd15);
        var oracle = new Oracles.GaussianOracle(reused, mu, 0.2);
        oracle.Sample(30, 512, seed: 99);                       // a whole run at another step count
        reused.SetTimesteps(20);
        var partial = new float[512];
        for (int i = 0; i < 7; i++) reused.Step(partial, partial); // and a run abandoned part-way
        Assert.Equal(fresh, oracle.Sample(20, 512, seed: 8));
    }

    [Theory]
    [InlineData(true, 20)]
    [InlineData(false, 20)]
    public void NoAllocationAfterFirstStep(bool skipPrk, int steps)
    {
        var pndm = new PndmScheduler(Config(("skip_prk_steps", skipPrk)));
        Assert.Equal(0, AllocatedAfterFirstStep(pndm, steps, 1024));
    }

    [Theory]
    [InlineData(true, 1)]
    [InlineData(true, 2)]
    [InlineData(true, 25)]
    [InlineData(false, 4)]
    [InlineData(false, 8)]
    [InlineData(false, 20)]
    public void ImageToImageFromBeginIndexConverges(bool skipPrk, int begin)
    {
        var mu = Pattern();
        var pndm = new PndmScheduler(Sd15.With(("skip_prk_steps", skipPrk), ("set_alpha_to_one", true)));
        var x = GenerateFrom(pndm, mu, 50, begin, 1024, seed: 6);
        Assert.True(MaxAbsError(x, mu) < 1e-4, $"max error {MaxAbsError(x, mu)}");
    }

    [Fact]
    public void BeginIndexOnRepeatedTimestepMovesToItsSecondVisit()
    {
        var pndm = new PndmScheduler(Sd15);
        pndm.SetTimesteps(50);
        pndm.SetBeginIndex(1);
        Assert.Equal(2, pndm.StepIndex);
        Assert.Equal(961f, pndm.Timesteps[pndm.StepIndex]);
    }

    [Fact]
    public void BeginIndexInsideRungeKuttaStepThrows()
    {
        var pndm = new PndmScheduler(Sd15.With(("skip_prk_steps", false)));
        pndm.SetTimesteps(50);
        Assert.Throws<ArgumentOutOfRangeException>(() => pndm.SetBeginIndex(2));
        pndm.SetBeginIndex(12);
        Assert.Equal(12, pndm.StepIndex);
    }

    [Fact]
    public void RungeKuttaWarmupNeedsFourSteps()
    {
        var pndm = new PndmScheduler(SchedulerConfig.Empty);
        Assert.Throws<ArgumentOutOfRangeException>(() => pndm.SetTimesteps(3));
        pndm.SetTimesteps(4);
        Assert.Equal(13, pndm.CallCount);   // 12 Runge–Kutta calls + 1 multistep call
    }

    [Fact]
    public void StepBeforeSetTimestepsThrowsAndNoNoiseIsNeeded()
    {
        var pndm = new PndmScheduler(Sd15);
        Assert.False(pndm.IsStochastic);
        Assert.Throws<InvalidOperationException>(() => pndm.Step(new float[4], new float[4]));
        pndm.SetTimesteps(5);
        pndm.Step(new float[4], new float[4]);
        Assert.Equal(1, pndm.StepIndex);
    }

    [Fact]
    public void AddNoiseUsesAlphaBarAtCallTimestep()
    {
        var pndm = new PndmScheduler(Sd15);
        pndm.SetTimesteps(50);
        var dest = new float[1];
        pndm.AddNoise([0.5f], [-1f], 2, dest);
        double a = pndm.AlphasCumprod[961];
        Assert.Equal(Math.Sqrt(a) * 0.5 - Math.Sqrt(1 - a), dest[0], 5);
    }
}

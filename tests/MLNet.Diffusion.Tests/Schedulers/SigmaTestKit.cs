using MLNet.Diffusion.ModelBuilder.Synthetic;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Oracles;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>Shared fixtures for the LMS / Euler / Euler-ancestral / Heun / KDPM2 / DPM-Solver tests.</summary>
internal static class SigmaTestKit
{
    // Reference values for SD 1.5's scheduler_config.json (a PNDM config that pipelines hand to other classes; the
    // copy in SyntheticModelFolder), from the formulas in double precision (diffusers computes them in float32 and
    // agrees to about 1e-6 relative): ᾱ from β = linspace(√0.00085, √0.012, 1000)², σ = √((1 − ᾱ)/ᾱ).
    public const double SigmaMax = 14.614641229;   // σ at t = 999
    public const double SigmaMin = 0.0291671582;   // σ at t = 0, √(0.00085/0.99915)

    public static SchedulerConfig Sd15(params (string Key, object? Value)[] overrides) =>
        SchedulerConfig.Parse(SyntheticModelFolder.Sd15SchedulerConfig, "sd15/scheduler_config.json").With(overrides);

    /// <summary>A fixed target pattern in [−1, 1] (a few cycles of a sine, distinct per element).</summary>
    public static float[] Pattern(int length)
    {
        var mu = new float[length];
        for (int i = 0; i < length; i++) mu[i] = (float)Math.Sin(0.37 * i + 0.5);
        return mu;
    }

    /// <summary>Runs the oracle for data fixed at <paramref name="mu"/> (s = 0) and returns max |x − μ|.</summary>
    public static double FixedTargetError(DiffusionScheduler scheduler, int steps, int length = 1024, long seed = 7)
    {
        var mu = Pattern(length);
        var oracle = new GaussianOracle(scheduler, mu, 0);
        var x = oracle.Sample(steps, length, seed);
        double max = 0;
        for (int i = 0; i < length; i++) max = Math.Max(max, Math.Abs(x[i] - mu[i]));
        return max;
    }

    /// <summary>
    /// Starts from the exact marginal of data N(μ, s²) at the first call, built with the scheduler's own
    /// AddNoise (x₀ + σ·ε, or α·x₀ + σ_t·ε for DPM-Solver), and runs every call with the exact denoiser.
    /// Returns the final sample; <paramref name="start"/> receives the initial one. Stochastic steps draw from
    /// <paramref name="stepNoise"/> when given, else from the same generator as the start.
    /// </summary>
    public static float[] RunFromMarginal(DiffusionScheduler scheduler, float mu, double s, int steps, int length, long seed, out float[] start,
        INoiseSource? stepNoise = null)
    {
        var oracle = new GaussianOracle(scheduler, [mu], s);
        var noise = new GaussianNoise(seed);
        scheduler.SetTimesteps(steps);
        var x0 = new float[length];
        var eps = new float[length];
        noise.Fill(x0);
        noise.Fill(eps);
        for (int i = 0; i < length; i++) x0[i] = (float)(mu + s * x0[i]);
        var x = new float[length];
        scheduler.AddNoise(x0, eps, 0, x);
        start = (float[])x.Clone();
        var input = new float[length];
        var output = new float[length];
        while (scheduler.StepIndex < scheduler.CallCount)
        {
            scheduler.ScaleModelInput(x, input);
            oracle.Predict(input, scheduler.Timesteps[scheduler.StepIndex], output);
            scheduler.Step(output, x, stepNoise ?? noise);
        }
        return x;
    }

    /// <summary>Asserts that the sample mean of <paramref name="x"/> lies within four standard errors (sd/√n) of <paramref name="mu"/>.</summary>
    public static void AssertMeanWithinFourStandardErrors(ReadOnlySpan<float> x, double mu, double sd)
    {
        var (mean, _) = Moments(x);
        Assert.True(Math.Abs(mean - mu) < 4 * sd / Math.Sqrt(x.Length), $"mean {mean}");
    }

    public static (double Mean, double Variance) Moments(ReadOnlySpan<float> x)
    {
        double sum = 0, sumSq = 0;
        foreach (var v in x) sum += v;
        double mean = sum / x.Length;
        foreach (var v in x) sumSq += (v - mean) * (v - mean);
        return (mean, sumSq / (x.Length - 1));
    }

    /// <summary>
    /// For a deterministic solver and Gaussian data every element goes through the same affine map
    /// x_end − μ = G·(x_start − μ_start), so Var(end)/Var(start) = G² exactly, free of sampling error.
    /// Returns G² divided by the exact-ODE value s²/Var_theory(start), where Var_theory(start) = c₀²s² + c_ε²
    /// is read off the scheduler's AddNoise coefficients at call 0.
    /// </summary>
    public static double TransferRatio(DiffusionScheduler scheduler, float[] start, float[] end, double s)
    {
        var one = new float[] { 1 };
        var zero = new float[] { 0 };
        var c = new float[1];
        scheduler.AddNoise(one, zero, 0, c);
        double cx = c[0];
        scheduler.AddNoise(zero, one, 0, c);
        double ce = c[0];
        double ideal = s * s / (cx * cx * s * s + ce * ce);
        return Moments(end).Variance / Moments(start).Variance / ideal;
    }

    /// <summary>
    /// Bytes allocated on this thread by all calls after the first one of a generation: the least over three
    /// generations, since the runtime itself may allocate once on a thread (tiered JIT, type loading) while a
    /// step that allocates does so in every generation.
    /// </summary>
    public static long AllocationsAfterFirstStep(DiffusionScheduler scheduler, int steps, int length) =>
        SchedulerAllocation.AfterFirstCall(scheduler, new GaussianOracle(scheduler, Pattern(length), 0.5), new GaussianNoise(3), steps, length);

    /// <summary>Checks that ScaleModelInput at the current call divides by √(σ² + 1).</summary>
    public static void AssertScalesBy(DiffusionScheduler scheduler, double sigma)
    {
        var x = new float[] { 1f, -2f, 3.5f };
        var y = new float[3];
        scheduler.ScaleModelInput(x, y);
        double c = 1 / Math.Sqrt(sigma * sigma + 1);
        for (int i = 0; i < x.Length; i++) Assert.Equal(x[i] * c, y[i], 1e-5 * Math.Abs(x[i]));
    }

    /// <summary>Steps once with the exact denoiser for a fixed target (advances StepIndex).</summary>
    public static void StepOnce(DiffusionScheduler scheduler, float[] x, INoiseSource? noise = null)
    {
        var oracle = new GaussianOracle(scheduler, Pattern(x.Length), 0);
        var input = new float[x.Length];
        var output = new float[x.Length];
        scheduler.ScaleModelInput(x, input);
        oracle.Predict(input, scheduler.Timesteps[scheduler.StepIndex], output);
        scheduler.Step(output, x, noise);
    }
}

using System.Numerics.Tensors;
using MLNet.Diffusion.ModelBuilder.Synthetic;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Oracles;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>
/// Helpers shared by the DDIM / DDPM / PNDM / LCM tests: fixed targets, sample moments, and the exact moments
/// of a linear-Gaussian sampling chain driven by <see cref="GaussianOracle"/>.
/// </summary>
internal static class AlphaBarTestKit
{
    /// <summary>Stable Diffusion 1.5's scheduler/scheduler_config.json.</summary>
    public const string Sd15Json = SyntheticModelFolder.Sd15SchedulerConfig;

    /// <summary>A fixed target with values spread over [−0.95, 0.95].</summary>
    public static float[] Pattern(int length = 64)
    {
        var mu = new float[length];
        for (int i = 0; i < length; i++) mu[i] = (float)(0.95 * Math.Sin(0.7 * i + 0.3));
        return mu;
    }

    public static double MaxAbsError(float[] sample, float[] mean)
    {
        double worst = 0;
        for (int i = 0; i < sample.Length; i++)
            worst = Math.Max(worst, Math.Abs(sample[i] - mean[i % mean.Length]));
        return worst;
    }

    /// <summary>Sample mean and (unbiased) variance.</summary>
    public static (double Mean, double Variance) Moments(float[] x)
    {
        double sum = 0;
        foreach (var v in x) sum += v;
        double mean = sum / x.Length, ss = 0;
        foreach (var v in x) ss += (v - mean) * (v - mean);
        return (mean, ss / (x.Length - 1));
    }

    /// <summary>
    /// One step of an affine sampler in moment space. With x ~ N(m, V) per element and data N(μ, s²), the oracle's
    /// x̂₀ = μ + k·(x − √ᾱ·μ), k = √ᾱ·s²/(ᾱs² + 1 − ᾱ), and ε̂ = (x − √ᾱ·x̂₀)/√(1 − ᾱ); a step
    /// x' = c₀·x̂₀ + c₁·ε̂ + c₂·x + σ·z is then x' = g·x + h + σ·z, so m' = g·m + h and V' = g²·V + σ².
    /// </summary>
    public static (double Mean, double Variance) AffineStep((double Mean, double Variance) x, double alphaBar, double mu, double s,
        double cX0, double cEps, double cX, double sigma)
    {
        double sa = Math.Sqrt(alphaBar), sb = Math.Sqrt(1 - alphaBar);
        double k = sa * s * s / (alphaBar * s * s + 1 - alphaBar);
        // x̂₀ = k·x + (μ − k·√ᾱ·μ); ε̂ = ((1 − √ᾱ·k)·x − √ᾱ·(μ − k·√ᾱ·μ))/√(1 − ᾱ)
        double x0Slope = k, x0Const = mu - k * sa * mu;
        double epsSlope = (1 - sa * k) / sb, epsConst = -sa * x0Const / sb;
        double g = cX0 * x0Slope + cEps * epsSlope + cX, h = cX0 * x0Const + cEps * epsConst;
        return (g * x.Mean + h, g * g * x.Variance + sigma * sigma);
    }

    /// <summary>Runs a whole generation with the oracle.</summary>
    public static float[] Generate(DiffusionScheduler scheduler, float[] mean, double std, int steps, int length, long seed) =>
        new GaussianOracle(scheduler, mean, std).Sample(steps, length, seed);

    /// <summary>
    /// Generation from clean data: x = AddNoise(μ, ε, begin) then the calls from <paramref name="begin"/> on (image-to-image).
    /// </summary>
    public static float[] GenerateFrom(DiffusionScheduler scheduler, float[] mean, int steps, int begin, int length, long seed)
    {
        var oracle = new GaussianOracle(scheduler, mean, 0);
        var noise = new GaussianNoise(seed);
        scheduler.SetTimesteps(steps);
        scheduler.SetBeginIndex(begin);
        var clean = new float[length];
        for (int i = 0; i < length; i++) clean[i] = mean[i % mean.Length];
        var eps = new float[length];
        noise.Fill(eps);
        var sample = new float[length];
        scheduler.AddNoise(clean, eps, begin, sample);
        var input = new float[length];
        var output = new float[length];
        while (scheduler.StepIndex < scheduler.CallCount)
        {
            scheduler.ScaleModelInput(sample, input);
            oracle.Predict(input, scheduler.Timesteps[scheduler.StepIndex], output);
            scheduler.Step(output, sample, noise);
        }
        return sample;
    }

    /// <summary>
    /// Bytes allocated on this thread by all calls after the first of a generation (least of three generations).
    /// </summary>
    public static long AllocatedAfterFirstStep(DiffusionScheduler scheduler, int steps, int length) =>
        SchedulerAllocation.AfterFirstCall(scheduler, new GaussianOracle(scheduler, Pattern(), 0.2), new GaussianNoise(7), steps, length);

    /// <summary>
    /// The <see cref="GaussianOracle"/> output for a constant mean, written as the affine map it is
    /// (output = p·x + q) and applied with TensorPrimitives, for long runs in this Debug-built test project.
    /// </summary>
    public static void FastPredict(PredictionType type, double alphaBar, double mu, double s, ReadOnlySpan<float> x, Span<float> output)
    {
        double sa = Math.Sqrt(alphaBar), sb = Math.Sqrt(1 - alphaBar), denom = alphaBar * s * s + 1 - alphaBar;
        // ε = sb·(x − sa·μ)/denom, x₀ = μ + sa·s²·(x − sa·μ)/denom, v = sa·ε − sb·x₀.
        double ep = sb / denom, eq = -sb * sa * mu / denom;
        double xp = sa * s * s / denom, xq = mu - sa * s * s * sa * mu / denom;
        var (p, q) = type switch
        {
            PredictionType.Epsilon => (ep, eq),
            PredictionType.Sample => (xp, xq),
            _ => (sa * ep - sb * xp, sa * eq - sb * xq),
        };
        TensorPrimitives.Multiply(x, (float)p, output);
        TensorPrimitives.Add(output, (float)q, output);
    }

    /// <summary>A whole generation with <see cref="FastPredict"/> (integer timesteps only).</summary>
    public static float[] GenerateFast(DiffusionScheduler scheduler, double mu, double s, int steps, int length, long seed)
    {
        var noise = new GaussianNoise(seed);
        scheduler.SetTimesteps(steps);
        var sample = new float[length];
        noise.Fill(sample);
        var input = new float[length];
        var output = new float[length];
        while (scheduler.StepIndex < scheduler.CallCount)
        {
            scheduler.ScaleModelInput(sample, input);
            FastPredict(scheduler.PredictionType, scheduler.AlphasCumprod[(int)scheduler.Timesteps[scheduler.StepIndex]], mu, s, input, output);
            scheduler.Step(output, sample, noise);
        }
        return sample;
    }

    public static SchedulerConfig Config(params (string Key, object? Value)[] values) => SchedulerConfig.Empty.With(values);
}

using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Oracles;

/// <summary>
/// The exact denoiser for data x₀ ~ N(μ, s²) per element (s = 0: one fixed target).
/// With x_t = √ᾱ·x₀ + √(1 − ᾱ)·ε, x_t ~ N(√ᾱ·μ, ᾱs² + 1 − ᾱ), and
/// E[ε | x_t] = √(1 − ᾱ)(x_t − √ᾱ·μ)/(ᾱs² + 1 − ᾱ), E[x₀ | x_t] = μ + √ᾱ·s²(x_t − √ᾱ·μ)/(ᾱs² + 1 − ᾱ).
/// A scheduler driven by this model must end at samples distributed as N(μ, s²).
/// </summary>
public sealed class GaussianOracle
{
    private readonly double[] _trainSigmas;

    public GaussianOracle(DiffusionScheduler scheduler, float[] mean, double std)
    {
        Scheduler = scheduler;
        Mean = mean;
        Std = std;
        _trainSigmas = SchedulerMath.Sigmas(scheduler.AlphasCumprod);
    }

    public DiffusionScheduler Scheduler { get; }
    public float[] Mean { get; }
    public double Std { get; }

    /// <summary>ᾱ at a (possibly fractional) timestep: exact at integers, through σ-interpolation between them.</summary>
    public double AlphaBar(double timestep)
    {
        if (timestep == Math.Floor(timestep) && timestep >= 0 && timestep < _trainSigmas.Length)
            return Scheduler.AlphasCumprod[(int)timestep];
        double sigma = SchedulerMath.SigmaAtTimestep(timestep, _trainSigmas);
        return 1 / (1 + sigma * sigma);
    }

    /// <summary>The model output for UNet input <paramref name="x"/> (already scaled by ScaleModelInput) at <paramref name="timestep"/>.</summary>
    public void Predict(ReadOnlySpan<float> x, double timestep, Span<float> output)
    {
        double a = AlphaBar(timestep), sa = Math.Sqrt(a), sb = Math.Sqrt(1 - a);
        double denom = a * Std * Std + 1 - a;
        for (int i = 0; i < x.Length; i++)
        {
            double mu = Mean[i % Mean.Length];
            double r = x[i] - sa * mu;
            double eps = sb * r / denom;
            double x0 = mu + sa * Std * Std * r / denom;
            output[i] = Scheduler.PredictionType switch
            {
                PredictionType.Epsilon => (float)eps,
                PredictionType.Sample => (float)x0,
                _ => (float)(sa * eps - sb * x0),
            };
        }
    }

    /// <summary>Runs a whole text-free generation: N(0,1)·InitNoiseSigma, then the scheduler's calls.</summary>
    public float[] Sample(int steps, int length, long seed, int? beginIndex = null)
    {
        var noise = new MLNet.Diffusion.Noise.GaussianNoise(seed);
        Scheduler.SetTimesteps(steps);
        var sample = new float[length];
        noise.Fill(sample);
        for (int i = 0; i < length; i++) sample[i] *= Scheduler.InitNoiseSigma;
        var input = new float[length];
        var output = new float[length];
        if (beginIndex is int b) Scheduler.SetBeginIndex(b);
        while (Scheduler.StepIndex < Scheduler.CallCount)
        {
            double t = Scheduler.Timesteps[Scheduler.StepIndex];
            Scheduler.ScaleModelInput(sample, input);
            Predict(input, t, output);
            Scheduler.Step(output, sample, noise);
        }
        return sample;
    }
}

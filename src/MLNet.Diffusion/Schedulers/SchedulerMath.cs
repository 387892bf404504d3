namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// The noise-schedule arithmetic that the schedulers share: β schedules, ᾱ, timestep spacing and
/// σ tables. Formulas follow diffusers (<c>schedulers/scheduling_ddim.py</c>,
/// <c>scheduling_euler_discrete.py</c>) and k-diffusion (<c>sampling.py</c>).
/// </summary>
internal static class SchedulerMath
{
    /// <summary>
    /// β_t from <c>trained_betas</c>, or <c>beta_schedule</c> (<c>linear</c>, <c>scaled_linear</c>,
    /// <c>squaredcos_cap_v2</c>) with <c>beta_start</c>/<c>beta_end</c> (class defaults 0.0001 / 0.02),
    /// then <c>rescale_betas_zero_snr</c> when set.
    /// </summary>
    public static double[] Betas(SchedulerConfig config, int trainSteps)
    {
        var trained = config.GetDoubleArray("trained_betas");
        double[] betas;
        if (trained is not null)
        {
            if (trained.Length != trainSteps)
                throw new InvalidDataException($"Scheduler configuration '{config.Source ?? "(text)"}': trained_betas has {trained.Length} values but num_train_timesteps is {trainSteps}.");
            betas = trained;
        }
        else
        {
            double start = config.GetDouble("beta_start", 0.0001), end = config.GetDouble("beta_end", 0.02);
            string schedule = config.GetString("beta_schedule", "linear");
            betas = schedule switch
            {
                "linear" => Linspace(start, end, trainSteps),
                // Stable Diffusion's schedule: linear in √β.
                "scaled_linear" => Array.ConvertAll(Linspace(Math.Sqrt(start), Math.Sqrt(end), trainSteps), b => b * b),
                // Nichol and Dhariwal 2021, "Improved DDPM", eq. 17: ᾱ(t) = cos²((t + s)/(1 + s)·π/2), s = 0.008, β ≤ 0.999.
                "squaredcos_cap_v2" => CosineBetas(trainSteps),
                _ => throw new InvalidDataException($"Scheduler configuration '{config.Source ?? "(text)"}': beta_schedule '{schedule}' is not supported; expected linear, scaled_linear or squaredcos_cap_v2."),
            };
            if (!(start > 0 && end > 0 && start < 1 && end < 1) && schedule != "squaredcos_cap_v2")
                throw new InvalidDataException($"Scheduler configuration '{config.Source ?? "(text)"}': beta_start {start} and beta_end {end} must lie in (0, 1).");
        }
        foreach (var b in betas)
            if (!(b > 0 && b < 1) && !(b == 1 && config.GetBool("rescale_betas_zero_snr", false)))
                throw new InvalidDataException($"Scheduler configuration '{config.Source ?? "(text)"}': every β must lie in (0, 1); found {b}.");
        if (config.GetBool("rescale_betas_zero_snr", false)) betas = RescaleZeroTerminalSnr(betas);
        return betas;
    }

    /// <summary>ᾱ_t = Π_{s ≤ t} (1 − β_s).</summary>
    public static double[] AlphasCumprod(double[] betas)
    {
        var result = new double[betas.Length];
        double product = 1;
        for (int i = 0; i < betas.Length; i++)
        {
            product *= 1 - betas[i];
            result[i] = product;
        }
        return result;
    }

    /// <summary>Reads <c>prediction_type</c> (default <c>epsilon</c>).</summary>
    public static PredictionType ParsePredictionType(SchedulerConfig config)
    {
        string value = config.GetString("prediction_type", "epsilon");
        return value switch
        {
            "epsilon" => PredictionType.Epsilon,
            "v_prediction" => PredictionType.VPrediction,
            "sample" => PredictionType.Sample,
            _ => throw new InvalidDataException($"Scheduler configuration '{config.Source ?? "(text)"}': prediction_type '{value}' is not supported; expected epsilon, v_prediction or sample."),
        };
    }

    /// <summary>
    /// The training timesteps used for <paramref name="steps"/> inference steps, in decreasing order,
    /// following diffusers' <c>timestep_spacing</c> (Table 2 of Lin et al. 2023, "Common Diffusion Noise
    /// Schedules and Sample Steps are Flawed"):
    /// <c>linspace</c>: linspace(0, N − 1, steps); <c>leading</c>: i·(N div steps) + steps_offset;
    /// <c>trailing</c>: round(N − i·N/steps) − 1.
    /// </summary>
    /// <param name="spacing">linspace, leading or trailing.</param>
    /// <param name="trainSteps">N, the number of training timesteps.</param>
    /// <param name="steps">The number of inference steps.</param>
    /// <param name="stepsOffset">Added to every timestep for <c>leading</c> spacing.</param>
    /// <param name="roundToInteger">Round linspace values half-to-even as numpy does (DDIM, DDPM, PNDM, LCM)
    /// rather than keeping them fractional (Euler and the other σ schedulers).</param>
    public static double[] SpacedTimesteps(string spacing, int trainSteps, int steps, int stepsOffset, bool roundToInteger)
    {
        var t = new double[steps];
        switch (spacing)
        {
            case "linspace":
                var lin = Linspace(0, trainSteps - 1, steps);
                for (int i = 0; i < steps; i++)
                    t[i] = roundToInteger ? Math.Round(lin[steps - 1 - i], MidpointRounding.ToEven) : lin[steps - 1 - i];
                break;
            case "leading":
                int ratio = trainSteps / steps;
                for (int i = 0; i < steps; i++)
                    t[i] = (double)(steps - 1 - i) * ratio + stepsOffset;
                break;
            case "trailing":
                double r = (double)trainSteps / steps;
                for (int i = 0; i < steps; i++)
                    t[i] = Math.Round(trainSteps - i * r, MidpointRounding.ToEven) - 1;
                break;
            default:
                throw new InvalidDataException($"timestep_spacing '{spacing}' is not supported; expected linspace, leading or trailing.");
        }
        return t;
    }

    /// <summary>σ_t = √((1 − ᾱ_t)/ᾱ_t), the noise-to-signal ratio of the variance-exploding view (Karras et al. 2022).</summary>
    public static double[] Sigmas(double[] alphasCumprod) =>
        Array.ConvertAll(alphasCumprod, a => Math.Sqrt((1 - a) / a));

    /// <summary>
    /// Karras et al. 2022 ("Elucidating the Design Space…", eq. 5) noise levels:
    /// σ_i = (σ_max^(1/ρ) + i/(n − 1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ with ρ = 7, decreasing.
    /// </summary>
    public static double[] KarrasSigmas(double sigmaMin, double sigmaMax, int n, double rho = 7.0)
    {
        var result = new double[n];
        double minInv = Math.Pow(sigmaMin, 1 / rho), maxInv = Math.Pow(sigmaMax, 1 / rho);
        for (int i = 0; i < n; i++)
        {
            double ramp = n == 1 ? 0 : (double)i / (n - 1);
            result[i] = Math.Pow(maxInv + ramp * (minInv - maxInv), rho);
        }
        return result;
    }

    /// <summary>
    /// The (fractional) training timestep whose σ is <paramref name="sigma"/>: linear interpolation in
    /// log σ between neighbouring training timesteps, as diffusers' <c>_sigma_to_t</c>.
    /// </summary>
    /// <param name="sigma">The noise level.</param>
    /// <param name="trainSigmas">σ_t for t = 0 … N − 1 (increasing).</param>
    public static double SigmaToTimestep(double sigma, double[] trainSigmas)
    {
        double logSigma = Math.Log(Math.Max(sigma, 1e-10));
        int n = trainSigmas.Length;
        // Index of the last training σ at or below the target, clamped so that a neighbour exists above it.
        int low = 0;
        for (int i = 0; i < n; i++)
            if (Math.Log(trainSigmas[i]) <= logSigma) low = i;
        low = Math.Min(low, n - 2);
        double lowLog = Math.Log(trainSigmas[low]), highLog = Math.Log(trainSigmas[low + 1]);
        double w = Math.Clamp((lowLog - logSigma) / (lowLog - highLog), 0, 1);
        return (1 - w) * low + w * (low + 1);
    }

    /// <summary>numpy's <c>interp</c>: piecewise-linear interpolation of (xs, ys) at x, clamped at the ends (xs increasing).</summary>
    public static double Interp(double x, ReadOnlySpan<double> xs, ReadOnlySpan<double> ys)
    {
        if (x <= xs[0]) return ys[0];
        if (x >= xs[^1]) return ys[^1];
        int hi = 1;
        while (xs[hi] < x) hi++;
        int lo = hi - 1;
        double w = (x - xs[lo]) / (xs[hi] - xs[lo]);
        return ys[lo] + w * (ys[hi] - ys[lo]);
    }

    /// <summary>σ at a fractional training timestep: numpy.interp over the training σ table, as diffusers does for linspace timesteps.</summary>
    public static double SigmaAtTimestep(double timestep, double[] trainSigmas)
    {
        if (timestep <= 0) return trainSigmas[0];
        if (timestep >= trainSigmas.Length - 1) return trainSigmas[^1];
        int lo = (int)Math.Floor(timestep);
        double w = timestep - lo;
        return trainSigmas[lo] + w * (trainSigmas[Math.Min(lo + 1, trainSigmas.Length - 1)] - trainSigmas[lo]);
    }

    /// <summary>numpy's <c>linspace(start, end, n)</c> (both ends included).</summary>
    public static double[] Linspace(double start, double end, int n)
    {
        var result = new double[n];
        if (n == 1)
        {
            result[0] = start;
            return result;
        }
        double step = (end - start) / (n - 1);
        for (int i = 0; i < n; i++) result[i] = start + i * step;
        result[n - 1] = end;
        return result;
    }

    private static double[] CosineBetas(int n)
    {
        static double AlphaBar(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);
        var betas = new double[n];
        for (int i = 0; i < n; i++)
            betas[i] = Math.Min(1 - AlphaBar((i + 1.0) / n) / AlphaBar((double)i / n), 0.999);
        return betas;
    }

    /// <summary>Lin et al. 2023, Algorithm 1: shift and scale √ᾱ so the last timestep has zero SNR.</summary>
    private static double[] RescaleZeroTerminalSnr(double[] betas)
    {
        var sqrtAbar = Array.ConvertAll(AlphasCumprod(betas), Math.Sqrt);
        double first = sqrtAbar[0], last = sqrtAbar[^1];
        for (int i = 0; i < sqrtAbar.Length; i++)
            sqrtAbar[i] = (sqrtAbar[i] - last) * first / (first - last);
        var result = new double[betas.Length];
        result[0] = 1 - sqrtAbar[0] * sqrtAbar[0];
        for (int i = 1; i < betas.Length; i++)
            result[i] = 1 - (sqrtAbar[i] * sqrtAbar[i]) / (sqrtAbar[i - 1] * sqrtAbar[i - 1]);
        return result;
    }
}

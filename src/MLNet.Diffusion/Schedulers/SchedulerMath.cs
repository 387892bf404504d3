namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// The noise-schedule arithmetic that the schedulers share: β schedules, ᾱ, timestep spacing and
/// σ tables. Formulas follow diffusers (<c>schedulers/scheduling_ddim.py</c>,
/// <c>scheduling_euler_discrete.py</c>) and k-diffusion (<c>sampling.py</c>).
/// </summary>
internal static class SchedulerMath
{
    /// <summary>
    /// The most <c>num_train_timesteps</c> accepted. Every released diffusers configuration uses 1000 (Stable Diffusion
    /// 1.x/2.x/XL, DDPM, LCM, Kandinsky, DeepFloyd IF); ten times that leaves room for research schedules, while the
    /// ᾱ and σ tables and the per-step σ → t searches grow with it. Beyond it no trained model exists, and Stable
    /// Diffusion's β over 100000 steps drive ᾱ below what float32 can hold.
    /// </summary>
    public const int MaxTrainTimesteps = 10_000;

    /// <summary>
    /// The smallest ᾱ accepted at the last training timestep: float32's smallest normal number, 2⁻¹²⁶ ≈ 1.18·10⁻³⁸. The
    /// latents are float32, so ᾱ_T itself, 1/√ᾱ_T (the x̂₀ coefficient of DDIM-type updates) and
    /// σ_max² = (1 − ᾱ_T)/ᾱ_T (at most 8.5·10³⁷) must be finite float32 numbers; a smaller ᾱ_T (β near 1, or too many
    /// steps) underflows to 0 and makes σ_max infinite. Real schedules are far above it: Stable Diffusion's gives
    /// ᾱ_T ≈ 4.7·10⁻³, the capped cosine schedule ≈ 2.4·10⁻⁹; <c>rescale_betas_zero_snr</c> sets ᾱ_T = 0 on purpose and
    /// is checked before rescaling.
    /// </summary>
    public const double MinFinalAlphaBar = 1.1754943508222875e-38;

    /// <summary>Reads <c>num_train_timesteps</c> (default 1000) and checks it lies in 2 … <see cref="MaxTrainTimesteps"/>.</summary>
    /// <exception cref="InvalidDataException">The value is not an integer in range; the message names the key, the value and the range.</exception>
    public static int TrainTimesteps(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        int n = config.GetInt("num_train_timesteps", 1000);
        if (n < 2 || n > MaxTrainTimesteps)
            throw new InvalidDataException($"Scheduler configuration '{config.Source ?? "(text)"}': num_train_timesteps is {n}, expected an integer from 2 to {MaxTrainTimesteps} (released models use 1000).");
        return n;
    }

    /// <summary>
    /// Checks a configuration's noise schedule as a scheduler class would build it with the shared defaults
    /// (<c>beta_start</c> 0.0001, <c>beta_end</c> 0.02, <c>linear</c>): <see cref="TrainTimesteps"/>, then
    /// <see cref="Betas"/>, which checks every number. <see cref="SchedulerConfig.Load"/> runs it; each scheduler runs
    /// the same two with its own class defaults when it is built.
    /// </summary>
    /// <exception cref="InvalidDataException">A number is out of range; the message names the key, the value and the range.</exception>
    public static void ValidateSchedule(SchedulerConfig config) => Betas(config, TrainTimesteps(config));

    /// <summary>
    /// β_t from <c>trained_betas</c>, or <c>beta_schedule</c> (<c>linear</c>, <c>scaled_linear</c>,
    /// <c>squaredcos_cap_v2</c>) with <c>beta_start</c>/<c>beta_end</c> (class defaults 0.0001 / 0.02),
    /// then <c>rescale_betas_zero_snr</c> when set. The numbers are checked: 0 &lt; <c>beta_start</c> ≤ <c>beta_end</c> &lt; 1
    /// (for the schedules that read them), every <c>trained_betas</c> entry in (0, 1), and ᾱ at the last timestep at
    /// least <see cref="MinFinalAlphaBar"/>.
    /// </summary>
    /// <exception cref="InvalidDataException">A number is out of range; the message names the key, the value and the range.</exception>
    public static double[] Betas(SchedulerConfig config, int trainSteps)
    {
        ArgumentNullException.ThrowIfNull(config);
        string source = config.Source ?? "(text)";
        var trained = config.GetDoubleArray("trained_betas");
        bool zeroSnr = config.GetBool("rescale_betas_zero_snr", false);
        double[] betas;
        string origin;
        if (trained is not null)
        {
            if (trained.Length != trainSteps)
                throw new InvalidDataException($"Scheduler configuration '{source}': trained_betas has {trained.Length} values but num_train_timesteps is {trainSteps}.");
            for (int i = 0; i < trained.Length; i++)
                if (!(trained[i] > 0 && trained[i] < 1) && !(trained[i] == 1 && zeroSnr && i == trained.Length - 1))
                    throw new InvalidDataException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                        $"Scheduler configuration '{source}': trained_betas[{i}] is {trained[i]:R}, expected a number in (0, 1) (each β is the noise variance added at one training step)."));
            betas = trained;
            origin = "trained_betas";
        }
        else
        {
            string schedule = config.GetString("beta_schedule", "linear");
            double start = config.GetDouble("beta_start", 0.0001), end = config.GetDouble("beta_end", 0.02);
            if (schedule is "linear" or "scaled_linear")
            {
                CheckBeta(config, "beta_start", start);
                CheckBeta(config, "beta_end", end);
                if (start > end)
                    throw new InvalidDataException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                        $"Scheduler configuration '{source}': beta_start is {start:R} but beta_end is {end:R}; expected 0 < beta_start ≤ beta_end < 1 (noise is added faster at later steps). The two values may be swapped."));
            }
            betas = schedule switch
            {
                "linear" => Linspace(start, end, trainSteps),
                // Stable Diffusion's schedule: linear in √β.
                "scaled_linear" => Array.ConvertAll(Linspace(Math.Sqrt(start), Math.Sqrt(end), trainSteps), b => b * b),
                // Nichol and Dhariwal 2021, "Improved DDPM", eq. 17: ᾱ(t) = cos²((t + s)/(1 + s)·π/2), s = 0.008, β ≤ 0.999.
                "squaredcos_cap_v2" => CosineBetas(trainSteps),
                _ => throw new InvalidDataException($"Scheduler configuration '{source}': beta_schedule '{schedule}' is not supported; expected linear, scaled_linear or squaredcos_cap_v2."),
            };
            origin = schedule == "squaredcos_cap_v2"
                ? "beta_schedule squaredcos_cap_v2"
                : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"beta_schedule {schedule} from beta_start {start:R} to beta_end {end:R}");
        }
        double finalAlphaBar = 1;
        foreach (var b in betas) finalAlphaBar *= 1 - b;
        if (!(finalAlphaBar >= MinFinalAlphaBar) && !(zeroSnr && trained is not null && betas[^1] == 1))
            throw new InvalidDataException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"Scheduler configuration '{source}': {origin} over num_train_timesteps {trainSteps} gives ᾱ = {finalAlphaBar:G3} at the last timestep (σ_max = {Math.Sqrt((1 - finalAlphaBar) / finalAlphaBar):G3}); " +
                $"it must be at least {MinFinalAlphaBar:G3} (float32's smallest normal number) for the noise levels to be finite in float32. Lower beta_end (β near 1 destroys the signal at once) or num_train_timesteps."));
        if (zeroSnr) betas = RescaleZeroTerminalSnr(betas);
        return betas;
    }

    private static void CheckBeta(SchedulerConfig config, string key, double value)
    {
        if (!(value > 0 && value < 1))
            throw new InvalidDataException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"Scheduler configuration '{config.Source ?? "(text)"}': {key} is {value:R}{(config.Contains(key) ? "" : " (the class default)")}, expected 0 < beta_start ≤ beta_end < 1."));
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

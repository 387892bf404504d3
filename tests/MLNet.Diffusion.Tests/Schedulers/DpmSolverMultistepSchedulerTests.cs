using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Oracles;

namespace MLNet.Diffusion.Tests.Schedulers;

public class DpmSolverMultistepSchedulerTests
{
    private static DpmSolverMultistepScheduler Sd15(params (string, object?)[] overrides) => new(SigmaTestKit.Sd15(overrides));

    private const double Sd = 0.5;

    private static double K(double sigma) => Sd * Sd / (Sd * Sd + sigma * sigma);

    /// <summary>G²·(s² + σ₀²)/s²: the transfer ratio a scalar gain G on x − μ (VE coordinates) implies.</summary>
    private static double Ratio(double gain, double sigma0) => gain * gain * (Sd * Sd + sigma0 * sigma0) / (Sd * Sd);

    [Fact]
    public void Sd15Linspace20MatchesDiffusersIntegerTimesteps()
    {
        var s = Sd15();
        Assert.Equal("DPMSolverMultistepScheduler", s.Name);
        s.SetTimesteps(20);
        // round(linspace(0, 999, 21))[::-1][:-1], numpy rounding half to even (499.5 → 500).
        float[] expected = [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50];
        Assert.Equal(expected, s.Timesteps.ToArray());
        Assert.Equal(SigmaTestKit.SigmaMax, s.Sigmas[0], 1e-6);
        Assert.Equal(0.22558194, s.Sigmas[19], 1e-6); // σ at t = 50
        Assert.Equal(0, s.Sigmas[20]);                  // final_sigmas_type "zero"
        // The solver works on the unscaled VP sample: N(0, 1) start and no input scaling.
        Assert.Equal(1f, s.InitNoiseSigma);
        var x = new float[] { 3f, -1f };
        var y = new float[2];
        s.ScaleModelInput(x, y);
        Assert.Equal(x, y);
    }

    [Fact]
    public void KarrasSigmasAreRoundedToIntegerTimesteps()
    {
        var s = Sd15(("use_karras_sigmas", true));
        s.SetTimesteps(20);
        // "DPM++ 2M Karras": ρ = 7 from σ_max = 14.6146 to σ_min = 0.029167, timesteps round(_sigma_to_t(σ)).
        float[] expected = [999, 962, 921, 876, 827, 772, 710, 640, 561, 474, 380, 285, 197, 123, 69, 35, 15, 6, 2, 0];
        Assert.Equal(expected, s.Timesteps.ToArray());
        Assert.Equal(11.725365, s.Sigmas[1], 1e-5);
        Assert.Equal(SigmaTestKit.SigmaMin, s.Sigmas[19], 1e-8);
        Assert.Equal(0, s.Sigmas[20]);
    }

    [Fact]
    public void LeadingAndTrailingSpacingFollowDiffusers()
    {
        var leading = Sd15(("timestep_spacing", "leading"));
        leading.SetTimesteps(20);
        // ratio = 1000 div 21 = 47: 20·47 + 1, …, 1·47 + 1.
        Assert.Equal(941f, leading.Timesteps[0]);
        Assert.Equal(48f, leading.Timesteps[19]);
        var trailing = Sd15(("timestep_spacing", "trailing"));
        trailing.SetTimesteps(20);
        Assert.Equal(999f, trailing.Timesteps[0]);
        Assert.Equal(949f, trailing.Timesteps[1]);
        Assert.Equal(49f, trailing.Timesteps[19]);
    }

    [Fact]
    public void LambdaMinClippedDropsTheTimestepsWithLowerLogSnr()
    {
        // λ = −log σ < −2 ⇔ σ > e²: those training timesteps are cut from the top of the linspace.
        var s = Sd15(("lambda_min_clipped", -2.0));
        var trainSigmas = SchedulerMath.Sigmas(s.AlphasCumprod);
        int clipped = trainSigmas.Count(x => x > Math.Exp(2));
        Assert.InRange(clipped, 1, 999);
        s.SetTimesteps(10);
        Assert.Equal(1000 - clipped - 1, s.Timesteps[0]);
        Assert.True(s.Sigmas[0] <= Math.Exp(2));
    }

    [Theory]
    [InlineData("epsilon", false)]
    [InlineData("v_prediction", false)]
    [InlineData("sample", false)]
    [InlineData("epsilon", true)]
    [InlineData("v_prediction", true)]
    public void FixedTargetIsReachedWithin1e5(string prediction, bool karras)
    {
        // Measured max |x − μ| ≈ 1.2e-7.
        Assert.True(SigmaTestKit.FixedTargetError(Sd15(("prediction_type", prediction), ("use_karras_sigmas", karras)), 20) < 1e-5);
    }

    [Theory]
    [InlineData("epsilon")]
    [InlineData("v_prediction")]
    public void GaussianDataTransferMatchesKDiffusionDpmpp2M(string prediction)
    {
        const int steps = 25;
        var s = Sd15(("prediction_type", prediction));
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, Sd, steps, 16384, 11, out var start);
        SigmaTestKit.AssertMeanWithinFourStandardErrors(end, 0.3, Sd);

        // k-diffusion sample_dpmpp_2m in VE coordinates, t = −log σ, on g = (x − μ)/(x_T − μ) with D − μ = k(σ)·g:
        // g ← (σ'/σ)·g − expm1(−h)·D̃, D̃ = (1 + 1/(2r))·D − 1/(2r)·D_prev (first and last steps D̃ = D; σ' = 0 → g = D).
        double gain = 1, previous = 0, hLast = 0;
        for (int i = 0; i < steps; i++)
        {
            double sig = s.Sigmas[i], next = s.Sigmas[i + 1], denoised = K(sig) * gain;
            if (next == 0) { gain = denoised; break; }
            double h = Math.Log(sig / next);
            double blended = i == 0 ? denoised : (1 + 1 / (2 * hLast / h)) * denoised - 1 / (2 * hLast / h) * previous;
            gain = next / sig * gain - (Math.Exp(-h) - 1) * blended;
            previous = denoised;
            hLast = h;
        }
        double ratio = SigmaTestKit.TransferRatio(s, start, end, Sd);
        Assert.Equal(Ratio(gain, s.Sigmas[0]), ratio, 1e-5); // measured agreement ≈ 2e-7
        // diffusers' linspace schedule for DPM-Solver ends at t = 40 (σ = 0.19) and jumps to 0 with a first-order
        // step, so at 25 steps the variance is 13% short (measured 0.8703) …
        Assert.InRange(ratio, 0.86, 0.88);
    }

    [Theory]
    [InlineData(2, "heun", 25)]
    [InlineData(3, "midpoint", 25)]
    [InlineData(3, "midpoint", 10)] // below 15 steps: lower_order_final also lowers the second-to-last step to order 2
    public void GaussianDataTransferMatchesTheDpmSolverPlusPlusFormulasWithDifferences(int order, string solverType, int steps)
    {
        // DPM-Solver++ (2211.01095) in VE coordinates, written with the divided differences rather than the
        // expanded per-output coefficients the scheduler uses: with D_k = k(σ_k)·g_k, h = log(σ/σ'), r_j = h_j/h,
        // D1₀ = (D0 − D_{-1})/r0, D1₁ = (D_{-1} − D_{-2})/r1,
        // order 2 (heun): g' = (σ'/σ)g + (1 − e^{−h})D0 + ((e^{−h} − 1)/h + 1)·D1₀;
        // order 3: D1 = D1₀ + r0/(r0 + r1)(D1₀ − D1₁), D2 = (D1₀ − D1₁)/(r0 + r1),
        //          g' = (σ'/σ)g + (1 − e^{−h})D0 + ((e^{−h} − 1)/h + 1)·D1 − ((e^{−h} − 1 + h)/h² − ½)·D2.
        var s = Sd15(("solver_order", order), ("solver_type", solverType));
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, Sd, steps, 16384, 11, out var start);
        var d = new List<double>();
        var lambda = new List<double>();
        double gain = 1;
        for (int i = 0; i < steps; i++)
        {
            double sig = s.Sigmas[i], next = s.Sigmas[i + 1];
            d.Add(K(sig) * gain);
            lambda.Add(-Math.Log(sig));
            if (next == 0) { gain = d[i]; break; } // final_sigmas_type zero: the last step returns D
            int use = Math.Min(order, i + 1);
            if (steps < 15 && i == steps - 2) use = Math.Min(use, 2);
            double h = -Math.Log(next) - lambda[i], em = Math.Exp(-h);
            double update = next / sig * gain + (1 - em) * d[i];
            if (use == 2)
            {
                double r0 = (lambda[i] - lambda[i - 1]) / h, d1 = (d[i] - d[i - 1]) / r0;
                update += solverType == "midpoint" ? 0.5 * (1 - em) * d1 : ((em - 1) / h + 1) * d1;
            }
            else if (use == 3)
            {
                double r0 = (lambda[i] - lambda[i - 1]) / h, r1 = (lambda[i - 1] - lambda[i - 2]) / h;
                double d10 = (d[i] - d[i - 1]) / r0, d11 = (d[i - 1] - d[i - 2]) / r1;
                double d1 = d10 + r0 / (r0 + r1) * (d10 - d11), d2 = (d10 - d11) / (r0 + r1);
                update += ((em - 1) / h + 1) * d1 - ((em - 1 + h) / (h * h) - 0.5) * d2;
            }
            gain = update;
        }
        Assert.Equal(Ratio(gain, s.Sigmas[0]), SigmaTestKit.TransferRatio(s, start, end, Sd), 1e-5);
    }

    [Theory]
    [InlineData(2, 0.99, 1.02)]  // DPM++ 2M Karras, measured 1.0138
    [InlineData(3, 0.995, 1.005)] // DPM++ 3M Karras, measured 0.9990
    public void GaussianDataWithKarrasSigmasPreservesTheMarginal(int order, double low, double high)
    {
        // … while Karras σ go down to σ_min = 0.029 first, and the variance is preserved to ≈ 1%.
        var s = Sd15(("use_karras_sigmas", true), ("solver_order", order));
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, Sd, 25, 16384, 11, out var start);
        Assert.InRange(SigmaTestKit.TransferRatio(s, start, end, Sd), low, high);
        SigmaTestKit.AssertMeanWithinFourStandardErrors(end, 0.3, Sd);
    }

    [Fact]
    public void FirstOrderIsEulerInVeCoordinates()
    {
        // DPM-Solver(++)-1 is DDIM, which is an Euler step of dx/dσ = (x − D)/σ for x/α (Lu et al. 2022, Song et al.
        // 2021): g ← g + (σ' − σ)(1 − k(σ))·g/σ.
        var s = Sd15(("solver_order", 1));
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, Sd, 20, 16384, 11, out var start);
        double gain = 1;
        for (int i = 0; i < 20; i++)
            gain *= 1 + (s.Sigmas[i + 1] - s.Sigmas[i]) * (1 - K(s.Sigmas[i])) / s.Sigmas[i];
        Assert.Equal(Ratio(gain, s.Sigmas[0]), SigmaTestKit.TransferRatio(s, start, end, Sd), 1e-5);
    }

    [Fact]
    public void DpmSolverNoisePredictionMatchesTheVeFormOfItsSecondOrderUpdate()
    {
        // algorithm_type "dpmsolver" (needs final_sigmas_type "sigma_min"): with ε̂ = (1 − k(σ))·g/σ the multistep
        // midpoint update, divided by α_t, is g ← g + (σ' − σ)·(ε̂₀ + (ε̂₀ − ε̂₁)/(2r)), r = h_prev/h, h = log(σ/σ').
        Assert.Contains("final_sigmas_type", Assert.Throws<InvalidDataException>(() => Sd15(("algorithm_type", "dpmsolver"))).Message);
        var s = Sd15(("algorithm_type", "dpmsolver"), ("final_sigmas_type", "sigma_min"));
        const int steps = 25;
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, Sd, steps, 16384, 11, out var start);
        double gain = 1, previousEps = 0, hLast = 0;
        for (int i = 0; i < steps; i++)
        {
            double sig = s.Sigmas[i], next = s.Sigmas[i + 1], eps = (1 - K(sig)) * gain / sig;
            double h = Math.Log(sig / next);
            bool firstOrder = i == 0; // lower_order_final only lowers the last steps below 15 steps or with a zero final σ
            double slope = firstOrder ? eps : eps + (eps - previousEps) / (2 * hLast / h);
            gain += (next - sig) * slope;
            previousEps = eps;
            hLast = h;
        }
        // The run ends at σ_min, in VP coordinates: the final x is α_min·(μ + g·(x_T,VE − μ)); TransferRatio compares
        // Var(end)/Var(start) to s²/Var(start), so the VE gain maps through α_min² (≈ 0.99915).
        double alphaMin2 = 1 / (1 + s.Sigmas[steps] * s.Sigmas[steps]);
        Assert.Equal(alphaMin2 * Ratio(gain, s.Sigmas[0]), SigmaTestKit.TransferRatio(s, start, end, Sd), 1e-5);
    }

    [Fact]
    public void AddNoiseIsTheVpMixtureAtTheCall()
    {
        var s = Sd15();
        s.SetTimesteps(20);
        var dest = new float[1];
        s.AddNoise([2f], [1f], 7, dest);
        double sigma = s.Sigmas[7], alpha = 1 / Math.Sqrt(sigma * sigma + 1);
        Assert.Equal(alpha * 2 + alpha * sigma, dest[0], 1e-5);
        // That is √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε at the call's integer timestep.
        double abar = s.AlphasCumprod[(int)s.Timesteps[7]];
        Assert.Equal(Math.Sqrt(abar) * 2 + Math.Sqrt(1 - abar), dest[0], 1e-5);
    }

    [Fact]
    public void RerunRestartsAtFirstOrderAndStepsAllocateNothing()
    {
        var s = Sd15(("solver_order", 3), ("use_karras_sigmas", true));
        var oracle = new GaussianOracle(s, SigmaTestKit.Pattern(256), 0.5);
        Assert.Equal(oracle.Sample(12, 256, 5), oracle.Sample(12, 256, 5));
        Assert.Equal(0, SigmaTestKit.AllocationsAfterFirstStep(s, 12, 4096));
    }

    /// <summary>
    /// The SDE solvers (2211.01095 § 5; diffusers sde-dpmsolver++ / sde-dpmsolver) in VE coordinates u = x/α_t − μ with
    /// the exact denoiser D − μ = k(σ)·u, ε̂ = (1 − k)·u/σ, r = σ'/σ = e^{−h}, z ~ N(0, 1):
    ///   ++: u' = r²·u + (1 − r²)·D0 + c·D1 + σ'·√(1 − r²)·z, c = ½(1 − r²) (midpoint) or (1 − r²)/(−2h) + 1 (heun),
    ///       D1 = (D0 − D₋₁)/r0;
    ///   ε:  u' = u − 2(σ − σ')·ε̂0 − c·E1 + √(σ² − σ'²)·z, c = σ − σ' (midpoint) or 2((σ − σ')/h − σ') (heun),
    ///       E1 = (ε̂0 − ε̂₋₁)/r0;
    /// first order at the first step, and at the last when it ends at σ = 0. Returns, per step, u' = a·u + b·u₋₁ + √v·z.
    /// </summary>
    private static List<(double A, double B, double NoiseVariance)> SdeRecursion(DpmSolverMultistepScheduler s, bool plus, string solverType, int steps)
    {
        var result = new List<(double, double, double)>();
        double hPrev = 0;
        for (int i = 0; i < steps; i++)
        {
            double sig = s.Sigmas[i], next = s.Sigmas[i + 1], k = K(sig), r = next / sig, h = Math.Log(sig / next);
            bool second = i > 0 && next != 0;
            double a, b = 0, noise;
            if (plus)
            {
                a = r * r + (1 - r * r) * k;
                noise = next * next * (1 - r * r);
                if (second)
                {
                    double c = solverType == "midpoint" ? 0.5 * (1 - r * r) : (1 - r * r) / (-2 * h) + 1, r0 = hPrev / h;
                    a += c * k / r0;
                    b = -c * K(s.Sigmas[i - 1]) / r0;
                }
            }
            else
            {
                a = 1 - 2 * (sig - next) * (1 - k) / sig;
                noise = sig * sig - next * next;
                if (second)
                {
                    double c = solverType == "midpoint" ? sig - next : 2 * ((sig - next) / h - next), r0 = hPrev / h;
                    double sigPrev = s.Sigmas[i - 1];
                    a -= c * (1 - k) / sig / r0;
                    b = c * (1 - K(sigPrev)) / sigPrev / r0;
                }
            }
            result.Add((a, b, noise));
            hPrev = h;
        }
        return result;
    }

    private static DpmSolverMultistepScheduler Sde(string algorithm, string solverType) =>
        Sd15(("algorithm_type", algorithm), ("solver_type", solverType), ("final_sigmas_type", algorithm == "sde-dpmsolver++" ? "zero" : "sigma_min"));

    /// <summary>Draws ones: a known "noise" that keeps the update deterministic but still exercises its noise term.</summary>
    private sealed class UnitNoise : MLNet.Diffusion.Schedulers.INoiseSource
    {
        public void Fill(Span<float> destination) => destination.Fill(1f);
    }

    [Theory]
    [InlineData("sde-dpmsolver++", "midpoint")]
    [InlineData("sde-dpmsolver++", "heun")]
    [InlineData("sde-dpmsolver", "midpoint")]
    [InlineData("sde-dpmsolver", "heun")]
    public void SdeVariantsWithKnownNoiseFollowTheirUpdateExactly(string algorithm, string solverType)
    {
        // With z = 1 at every step each element follows the affine map u' = a·u + b·u₋₁ + √v, so u_end = G·u₀ + H. The
        // measured slope and intercept of (end/α_end − μ) against (start/α₀ − μ) must be G and H. (With z = 0 the ++
        // solver's D1 term vanishes for Gaussian data — the posterior mean is then constant along the path — so a known
        // non-zero z is what makes the two solver types, and the noise scale, visible.)
        const int steps = 25;
        var s = Sde(algorithm, solverType);
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, Sd, steps, 4096, 11, out var start, new UnitNoise());
        (double G, double H) Affine(string type)
        {
            double g = 1, gPrev = 0, c = 0, cPrev = 0;
            foreach (var (a, b, v) in SdeRecursion(s, algorithm == "sde-dpmsolver++", type, steps))
                (g, gPrev, c, cPrev) = (a * g + b * gPrev, g, a * c + b * cPrev + Math.Sqrt(v), c);
            return (g, c);
        }
        var expected = Affine(solverType);
        var other = Affine(solverType == "midpoint" ? "heun" : "midpoint");
        double alpha0 = 1 / Math.Sqrt(1 + s.Sigmas[0] * s.Sigmas[0]), alphaEnd = 1 / Math.Sqrt(1 + s.Sigmas[steps] * s.Sigmas[steps]);
        double n = end.Length, sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (int i = 0; i < end.Length; i++)
        {
            double u0 = start[i] / alpha0 - 0.3, u1 = end[i] / alphaEnd - 0.3;
            sx += u0; sy += u1; sxx += u0 * u0; sxy += u0 * u1;
        }
        double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx), intercept = (sy - slope * sx) / n;
        Assert.True(Math.Abs(slope - expected.G) < 1e-4 * Math.Abs(expected.G) + 1e-7, $"slope {slope:G8}, the recursion gives {expected.G:G8}");
        Assert.True(Math.Abs(intercept - expected.H) < 1e-4, $"intercept {intercept:G8}, the recursion gives {expected.H:G8}");
        // The other solver type lands measurably elsewhere, so this tells the two apart.
        Assert.True(Math.Abs(other.H - expected.H) > 1e-2, $"{expected.H:G8} vs {other.H:G8}");
    }

    [Theory]
    [InlineData("sde-dpmsolver++", "midpoint", 25)]
    [InlineData("sde-dpmsolver++", "heun", 25)]
    [InlineData("sde-dpmsolver++", "midpoint", 50)]
    [InlineData("sde-dpmsolver", "midpoint", 25)]
    [InlineData("sde-dpmsolver", "heun", 25)]
    public void SdeVariantsGaussianDataVarianceMatchesTheExactRecursion(string algorithm, string solverType, int steps)
    {
        // Linear with independent noise: the recursion carries (Var u_i, Var u_{i−1}, Cov) exactly, and the sampled
        // variance must match it (this checks the noise terms; the test above checks the rest exactly).
        var s = Sde(algorithm, solverType);
        Assert.True(s.IsStochastic);
        var end = SigmaTestKit.RunFromMarginal(s, 0.3f, Sd, steps, 16384, 11, out _);
        var (mean, variance) = SigmaTestKit.Moments(end);
        double p = Sd * Sd + s.Sigmas[0] * s.Sigmas[0], q = 0, cov = 0;
        foreach (var (a, b, noise) in SdeRecursion(s, algorithm == "sde-dpmsolver++", solverType, steps))
            (p, q, cov) = (a * a * p + b * b * q + 2 * a * b * cov + noise, p, a * p + b * cov);
        double alphaEnd = 1 / Math.Sqrt(1 + s.Sigmas[steps] * s.Sigmas[steps]); // the sample is VP: x = α·(μ + u)
        double predicted = alphaEnd * alphaEnd * p, se = predicted * Math.Sqrt(2.0 / end.Length);
        Assert.True(Math.Abs(variance - predicted) < 5 * se, $"variance {variance:F5}, the recursion gives {predicted:F5} (±{se:F5})");
        Assert.True(Math.Abs(mean - alphaEnd * 0.3) < 4 * Math.Sqrt(predicted / end.Length), $"mean {mean}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SdeDpmSolverPlusPlusReachesAFixedTargetAndAllocatesNothingPerStep(bool karras)
    {
        var s = Sd15(("algorithm_type", "sde-dpmsolver++"), ("use_karras_sigmas", karras));
        // A point target: the data term of each step carries μ, and the last step (σ' = 0) returns D = μ itself.
        Assert.True(SigmaTestKit.FixedTargetError(s, 20) < 1e-5);
        Assert.Equal(0, SigmaTestKit.AllocationsAfterFirstStep(s, 12, 4096));
    }

    [Fact]
    public void SdeVariantsNeedANoiseSourceAndRefuseThirdOrder()
    {
        var s = Sd15(("algorithm_type", "sde-dpmsolver++"));
        s.SetTimesteps(10);
        Assert.Throws<ArgumentNullException>(() => s.Step(new float[4], new float[4]));
        var e = Assert.Throws<NotSupportedException>(() => Sd15(("algorithm_type", "sde-dpmsolver++"), ("solver_order", 3)));
        Assert.Contains("solver_order", e.Message);
        Assert.Throws<InvalidDataException>(() => Sd15(("algorithm_type", "sde-dpmsolver")));          // needs final σ_min
        Assert.Throws<InvalidDataException>(() => Sd15(("algorithm_type", "sde-dpm-solver-unknown")));

        var karras = (DpmSolverMultistepScheduler)SchedulerFactory.Create("dpm++2m-sde-karras", SigmaTestKit.Sd15());
        Assert.True(karras.IsStochastic);
        karras.SetTimesteps(20);
        Assert.Equal(SigmaTestKit.SigmaMin, karras.Sigmas[19], 1e-8);                                // Karras σ
        Assert.True(SchedulerFactory.Create("dpm++2m-sde", SigmaTestKit.Sd15()).IsStochastic);
        Assert.False(SchedulerFactory.Create("dpm++2m", SigmaTestKit.Sd15()).IsStochastic);
    }

    [Theory]
    [InlineData("thresholding", true)]
    [InlineData("use_lu_lambdas", true)]
    [InlineData("variance_type", "learned_range")]
    public void UnsupportedOptionsThrowNamingTheKey(string key, object value)
    {
        var e = Assert.Throws<NotSupportedException>(() => Sd15((key, value)));
        Assert.Contains(key, e.Message);
    }
}

using System.Numerics.Tensors;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// What the multistep solvers on the variance-preserving sample x = α_t·x₀ + σ_t·ε share (DPM-Solver, UniPC): the
/// table they keep is the VE noise level σ, from which α_t = 1/√(σ² + 1), σ_t = σ·α_t and λ = log α_t − log σ_t = −log σ
/// (diffusers <c>_sigma_to_alpha_sigma_t</c>).
/// </summary>
internal static class VpSolverMath
{
    /// <summary>α_t = 1/√(σ² + 1), σ_t = σ·α_t.</summary>
    public static (double Alpha, double Sigma) AlphaSigma(double sigma)
    {
        double alpha = 1 / Math.Sqrt(sigma * sigma + 1);
        return (alpha, sigma * alpha);
    }

    /// <summary>λ = −log σ; +∞ at σ = 0.</summary>
    public static double Lambda(double sigma) => -Math.Log(sigma);

    /// <summary>
    /// <c>convert_model_output</c> as m = P·F + Q·x for model output F at (α_t, σ_t): the data prediction x₀ when
    /// <paramref name="toData"/> (ε: (x − σ_t·F)/α_t; v: α_t·x − σ_t·F; sample: F), else the noise ε (ε: F; v: α_t·F + σ_t·x;
    /// sample: (x − α_t·F)/σ_t).
    /// </summary>
    public static (float P, float Q) Conversion(PredictionType prediction, bool toData, double alpha, double sigma) => (prediction, toData) switch
    {
        (PredictionType.Epsilon, true) => ((float)(-sigma / alpha), (float)(1 / alpha)),
        (PredictionType.VPrediction, true) => ((float)-sigma, (float)alpha),
        (PredictionType.Sample, true) or (PredictionType.Epsilon, false) => (1f, 0f),
        (PredictionType.VPrediction, false) => ((float)alpha, (float)sigma),
        _ => ((float)(-alpha / sigma), (float)(1 / sigma)),
    };

    /// <summary>α_t·x₀ + σ_t·ε at VE noise level <paramref name="sigma"/> (diffusers <c>add_noise</c> of these solvers).</summary>
    public static void AddNoise(ReadOnlySpan<float> original, ReadOnlySpan<float> noise, double sigma, Span<float> destination)
    {
        var (alpha, sigmaT) = AlphaSigma(sigma);
        TensorPrimitives.Multiply(original, (float)alpha, destination);
        TensorPrimitives.MultiplyAdd(noise, (float)sigmaT, destination, destination);
    }
}

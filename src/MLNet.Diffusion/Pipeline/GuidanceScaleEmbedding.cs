namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// The guidance-scale embedding that guidance-distilled UNets (Latent Consistency Models; Luo et al. 2023,
/// arXiv:2310.04378, § 4.2 "w-conditioned" model) take as their extra <c>timestep_cond</c> input: a sinusoidal
/// embedding of w = 1000·(g − 1), after VDM's <c>get_timestep_embedding</c> (Kingma et al. 2021), as diffusers'
/// <c>get_guidance_scale_embedding</c> (<c>pipelines/latent_consistency_models/pipeline_latent_consistency_text2img.py</c>;
/// the pipeline passes g − 1 and the function multiplies by 1000):
/// with h = dim/2 and f_k = exp(−ln(10000)·k/(h − 1)) for k = 0 … h − 1, the embedding is
/// [sin(w·f_0) … sin(w·f_{h−1}), cos(w·f_0) … cos(w·f_{h−1})], padded with one 0 when dim is odd.
/// </summary>
/// <remarks>
/// Every step is computed in float32 as diffusers does (its tensors are float32 by default): ln(10000) and the frequency
/// step rounded to float, k·step and the product w·f_k rounded to float. The arguments reach 7500 rad (g = 8.5), where one
/// float ulp is 4.9·10⁻⁴, so doing the same roundings matters more than computing any one of them more exactly. exp, sin and
/// cos are evaluated in double on the float arguments and rounded once (correctly rounded in practice); torch's vectorised
/// float32 exp is sometimes one ulp away from that, so at large w individual values differ from diffusers' by up to about
/// one ulp of the argument (4·10⁻⁴ at g = 8.5), as they differ between torch builds and devices.
/// </remarks>
internal static class GuidanceScaleEmbedding
{
    /// <summary>The width that released LCM UNets use (<c>time_cond_proj_dim</c> in their <c>unet/config.json</c>).</summary>
    public const int DefaultDimension = 256;

    /// <summary>
    /// Writes the embedding of guidance scale <paramref name="guidanceScale"/> (w = 1000·(g − 1)) into
    /// <paramref name="destination"/>, whose length is the embedding width (<c>time_cond_proj_dim</c>, 256 for released
    /// LCM models). Allocates nothing.
    /// </summary>
    /// <exception cref="ArgumentException">The destination is shorter than 4 values (the frequency spacing needs h ≥ 2).</exception>
    /// <exception cref="ArgumentOutOfRangeException">The guidance scale is not finite.</exception>
    public static void Write(float guidanceScale, Span<float> destination)
    {
        if (!float.IsFinite(guidanceScale))
            throw new ArgumentOutOfRangeException(nameof(guidanceScale), guidanceScale, "The guidance scale must be a finite number.");
        int half = destination.Length / 2;
        if (half < 2)
            throw new ArgumentException($"The guidance embedding needs at least 4 values (time_cond_proj_dim); the destination has {destination.Length}.", nameof(destination));

        // diffusers: w = tensor(g − 1) (float32, from a Python float), then w·1000.0 in float32.
        float w = (float)((double)guidanceScale - 1.0) * 1000f;
        // emb = log(tensor(10000.0)) / (half − 1), both float32.
        float step = (float)Math.Log(10000.0) / (half - 1);
        for (int k = 0; k < half; k++)
        {
            float frequency = (float)Math.Exp(k * -step); // exp(arange(half) · −emb), the product rounded to float first
            float argument = w * frequency;
            destination[k] = (float)Math.Sin(argument);
            destination[half + k] = (float)Math.Cos(argument);
        }
        if (destination.Length % 2 == 1) destination[^1] = 0f;
    }
}

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// A latent consistency model's guidance-scale embedding (the UNet's <c>timestep_cond</c>): diffusers'
/// <c>get_guidance_scale_embedding</c> of w = (guidance − 1)·1000, sinusoidal features [sin(w·f_k), cos(w·f_k)] with
/// f_k = exp(−ln(10000)·k/(half − 1)), k = 0 … half − 1.
/// </summary>
internal static class GuidanceScaleEmbedding
{
    /// <summary>Writes the embedding of <paramref name="guidanceScale"/> into <paramref name="destination"/> (its length is the width).</summary>
    public static void Write(float guidanceScale, Span<float> destination)
    {
        int half = destination.Length / 2;
        float w = (guidanceScale - 1f) * 1000f;
        for (int k = 0; k < half; k++)
        {
            float angle = w * MathF.Exp(-MathF.Log(10000f) * k / (half - 1));
            destination[k] = MathF.Sin(angle);
            destination[half + k] = MathF.Cos(angle);
        }
    }
}

using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The demo flow model's VAE, <c>vae_encoder/</c> and <c>vae_decoder/</c>, with Stable Diffusion 3's 16 latent channels and a
/// shift factor: <see cref="DemoVae"/> with its 4-channel latent spread over 16 channels by a fixed map with orthonormal
/// columns.
/// </summary>
/// <remarks>
/// <para>The map E ([16, 4], <see cref="ChannelMap"/>) takes columns 1, 2, 4 and 8 of the 16 × 16 Sylvester–Hadamard matrix,
/// divided by 4: every one of the 16 channels carries a signed quarter of each demo channel, and EᵀE = I. The encoder writes
/// E·z₄ + <see cref="ShiftFactor"/>; the decoder reads z₄ = Eᵀ(z₁₆ − <see cref="ShiftFactor"/>), so it uses every channel and
/// the part of a latent outside E's span (12 dimensions) does not show. The pipeline's scaled latent, (z₁₆ − shift) ·
/// scaling, is then E times the demo model's scaled latent, and distances between latents in E's span are the demo's.</para>
/// <para>The scaling factor stays the demo's (<see cref="DemoVae.ScalingFactor"/>): the flow-matching data are the demo
/// dataset's latents, whose size the demo's schedule was set for.</para>
/// </remarks>
public static class DemoFlowVae
{
    /// <summary>The latent channels (<c>latent_channels</c>), as Stable Diffusion 3's VAE.</summary>
    public const int LatentChannels = 16;

    /// <summary>The VAE's <c>shift_factor</c>: Stable Diffusion 3's value.</summary>
    public const float ShiftFactor = 0.0609f;

    /// <summary>The Hadamard columns that make E.</summary>
    private static readonly int[] Columns = [1, 2, 4, 8];

    /// <summary>E ([16, 4] row-major): E[c, j] = H₁₆[c, column j] / 4, H₁₆[r, c] = (−1)^popcount(r AND c).</summary>
    public static float[] ChannelMap()
    {
        var e = new float[LatentChannels * DemoVae.LatentChannels];
        for (int c = 0; c < LatentChannels; c++)
            for (int j = 0; j < DemoVae.LatentChannels; j++)
                e[c * DemoVae.LatentChannels + j] = (System.Numerics.BitOperations.PopCount((uint)(c & Columns[j])) & 1) == 0 ? 0.25f : -0.25f;
        return e;
    }

    /// <summary>E·z per latent position: [B, 4, h, w] flattened (<paramref name="plane"/> = h·w) → [B, 16, h, w].</summary>
    public static float[] Widen(ReadOnlySpan<float> latents4, int plane)
    {
        var e = ChannelMap();
        int c4 = DemoVae.LatentChannels, batch = latents4.Length / (c4 * plane);
        var result = new float[batch * LatentChannels * plane];
        for (int b = 0; b < batch; b++)
            for (int c = 0; c < LatentChannels; c++)
                for (int j = 0; j < c4; j++)
                {
                    float w = e[c * c4 + j];
                    for (int i = 0; i < plane; i++) result[(b * LatentChannels + c) * plane + i] += w * latents4[(b * c4 + j) * plane + i];
                }
        return result;
    }

    /// <summary>Eᵀ·z per latent position: [B, 16, h, w] flattened → [B, 4, h, w] (the demo latent a 16-channel one stands for).</summary>
    public static float[] Narrow(ReadOnlySpan<float> latents16, int plane)
    {
        var e = ChannelMap();
        int c4 = DemoVae.LatentChannels, batch = latents16.Length / (LatentChannels * plane);
        var result = new float[batch * c4 * plane];
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < c4; j++)
                for (int c = 0; c < LatentChannels; c++)
                {
                    float w = e[c * c4 + j];
                    for (int i = 0; i < plane; i++) result[(b * c4 + j) * plane + i] += w * latents16[(b * LatentChannels + c) * plane + i];
                }
        return result;
    }

    /// <summary>Adds z₁₆ → Eᵀ(z₁₆ − <paramref name="offset"/>) (a 1×1 convolution) to <paramref name="g"/>.</summary>
    internal static string AddNarrow(OnnxGraphBuilder g, string latent16, string name, float offset = 0)
    {
        var e = ChannelMap();
        int c4 = DemoVae.LatentChannels;
        var weight = new float[c4 * LatentChannels];
        var bias = new float[c4];
        for (int j = 0; j < c4; j++)
            for (int c = 0; c < LatentChannels; c++)
            {
                weight[j * LatentChannels + c] = e[c * c4 + j];
                bias[j] -= offset * e[c * c4 + j];
            }
        return g.Conv(latent16, g.Initializer(name + "_weight", weight, c4, LatentChannels, 1, 1), g.Initializer(name + "_bias", bias, c4));
    }

    /// <summary>Adds z₄ → E·z₄ + <paramref name="offset"/> (a 1×1 convolution) to <paramref name="g"/>.</summary>
    internal static string AddWiden(OnnxGraphBuilder g, string latent4, string name, float offset = 0)
    {
        var bias = new float[LatentChannels];
        Array.Fill(bias, offset);
        return g.Conv(latent4, g.Initializer(name + "_weight", ChannelMap(), LatentChannels, DemoVae.LatentChannels, 1, 1),
            g.Initializer(name + "_bias", bias, LatentChannels));
    }

    /// <summary>Builds <c>vae_encoder/model.onnx</c>: <c>sample</c> [B, 3, H, W] → <c>latent_sample</c> [B, 16, H/8, W/8] = E·(demo latent) + shift.</summary>
    public static OnnxGraphBuilder BuildEncoderGraph() =>
        DemoVae.BuildEncoderGraph("demo_flow_vae_encoder", LatentChannels, (g, z4) => AddWiden(g, z4, "channel_spread", ShiftFactor));

    /// <summary>Builds <c>vae_decoder/model.onnx</c>: <c>latent_sample</c> [B, 16, h, w] → <c>sample</c> [B, 3, 8h, 8w], decoding Eᵀ(z − shift).</summary>
    public static OnnxGraphBuilder BuildDecoderGraph() =>
        DemoVae.BuildDecoderGraph("demo_flow_vae_decoder", LatentChannels, (g, z16) => AddNarrow(g, z16, "channel_gather", ShiftFactor));
}

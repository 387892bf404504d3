namespace MLNet.Diffusion.Denoising;

/// <summary>
/// FLUX's latent layout: a transformer token per 2×2 latent patch. [B, C, h, w] latents become [B, (h/2)(w/2), 4C]
/// tokens, token (i, j) holding channel c's patch values in the order (c, row in patch, column in patch), and each
/// image token has the position id (0, i, j). Source: diffusers' <c>FluxPipeline._pack_latents</c>,
/// <c>_unpack_latents</c> and <c>_prepare_latent_image_ids</c>; checked against those torch operations
/// (<c>Data/reference/make_flux_packing_reference.py</c>).
/// </summary>
/// <remarks>Noise is drawn in the unpacked layout and packed, as diffusers' <c>prepare_latents</c> does, so a seed gives
/// the same starting latents as there. Both directions write into a caller's buffer and allocate nothing.</remarks>
internal static class LatentPacking
{
    /// <summary>The side of a patch.</summary>
    public const int Patch = 2;

    /// <summary>Packs <paramref name="latents"/> ([B, C, h, w]) into <paramref name="packed"/> ([B, (h/2)(w/2), 4C]).</summary>
    /// <exception cref="ArgumentException">A side is odd or a span does not hold the batch.</exception>
    public static void Pack(ReadOnlySpan<float> latents, Span<float> packed, int batch, int channels, int height, int width)
    {
        Check(latents.Length, packed.Length, batch, channels, height, width);
        int rows = height / Patch, columns = width / Patch, tokenWidth = channels * Patch * Patch, plane = height * width;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < columns; j++)
                {
                    var token = packed.Slice(((b * rows + i) * columns + j) * tokenWidth, tokenWidth);
                    for (int c = 0; c < channels; c++)
                    {
                        int source = (b * channels + c) * plane + (Patch * i) * width + Patch * j;
                        token[4 * c] = latents[source];
                        token[4 * c + 1] = latents[source + 1];
                        token[4 * c + 2] = latents[source + width];
                        token[4 * c + 3] = latents[source + width + 1];
                    }
                }
    }

    /// <summary>Unpacks <paramref name="packed"/> ([B, (h/2)(w/2), 4C]) into <paramref name="latents"/> ([B, C, h, w]).</summary>
    /// <exception cref="ArgumentException">A side is odd or a span does not hold the batch.</exception>
    public static void Unpack(ReadOnlySpan<float> packed, Span<float> latents, int batch, int channels, int height, int width)
    {
        Check(latents.Length, packed.Length, batch, channels, height, width);
        int rows = height / Patch, columns = width / Patch, tokenWidth = channels * Patch * Patch, plane = height * width;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < columns; j++)
                {
                    var token = packed.Slice(((b * rows + i) * columns + j) * tokenWidth, tokenWidth);
                    for (int c = 0; c < channels; c++)
                    {
                        int target = (b * channels + c) * plane + (Patch * i) * width + Patch * j;
                        latents[target] = token[4 * c];
                        latents[target + 1] = token[4 * c + 1];
                        latents[target + width] = token[4 * c + 2];
                        latents[target + width + 1] = token[4 * c + 3];
                    }
                }
    }

    /// <summary>The image tokens' position ids for [h, w] latents: [(h/2)(w/2), 3] rows (0, patch row, patch column).</summary>
    public static float[] ImageIds(int height, int width)
    {
        CheckSides(height, width);
        int rows = height / Patch, columns = width / Patch;
        var ids = new float[rows * columns * 3];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < columns; j++)
            {
                ids[(i * columns + j) * 3 + 1] = i;
                ids[(i * columns + j) * 3 + 2] = j;
            }
        return ids;
    }

    private static void Check(int latentLength, int packedLength, int batch, int channels, int height, int width)
    {
        CheckSides(height, width);
        long expected = (long)batch * channels * height * width;
        if (batch < 1 || channels < 1 || latentLength != expected || packedLength != expected)
            throw new ArgumentException($"Packing {batch}×{channels}×{height}×{width} latents needs {expected} values on both sides; got {latentLength} latents and {packedLength} packed.");
    }

    private static void CheckSides(int height, int width)
    {
        if (height < Patch || width < Patch || height % Patch != 0 || width % Patch != 0)
            throw new ArgumentException($"FLUX packs 2×2 latent patches: the latent size {height}×{width} must be even (the image size a multiple of 16).");
    }
}

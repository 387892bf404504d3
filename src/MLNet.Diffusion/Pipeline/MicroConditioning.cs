namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// SDXL's micro-conditioning, the UNet's <c>time_ids</c> (Podell et al. 2023, "SDXL: Improving Latent Diffusion Models for
/// High-Resolution Image Synthesis", §2.2): the base model takes (original height, original width, crop top, crop left,
/// target height, target width), the refiner (original height, original width, crop top, crop left, aesthetic score), each
/// size in (height, width) order as diffusers' <c>_get_add_time_ids</c> concatenates the <c>(height, width)</c> tuples.
/// Defaults, as diffusers': original and target size = the image's size, crop (0, 0), aesthetic scores 6 and 2.5; each
/// negative value defaults to its positive twin (diffusers uses the positive time ids for the negative half unless both
/// negative sizes are given; the two agree whenever the negative values are all left out or all given).
/// </summary>
internal static class MicroConditioning
{
    /// <summary>Writes one row of time ids for an image of <paramref name="width"/>×<paramref name="height"/>.</summary>
    /// <param name="options">The call's settings.</param>
    /// <param name="width">The image width in pixels.</param>
    /// <param name="height">The image height in pixels.</param>
    /// <param name="negative">The unconditional half of guidance.</param>
    /// <param name="destination">6 values (base) or 5 (refiner).</param>
    public static void Write(GenerationOptions options, int width, int height, bool negative, Span<float> destination)
    {
        int originalHeight = options.OriginalHeight ?? height, originalWidth = options.OriginalWidth ?? width;
        int cropTop = options.CropTop, cropLeft = options.CropLeft;
        int targetHeight = options.TargetHeight ?? height, targetWidth = options.TargetWidth ?? width;
        float aesthetic = options.AestheticScore;
        if (negative)
        {
            originalHeight = options.NegativeOriginalHeight ?? originalHeight;
            originalWidth = options.NegativeOriginalWidth ?? originalWidth;
            cropTop = options.NegativeCropTop ?? cropTop;
            cropLeft = options.NegativeCropLeft ?? cropLeft;
            targetHeight = options.NegativeTargetHeight ?? targetHeight;
            targetWidth = options.NegativeTargetWidth ?? targetWidth;
            aesthetic = options.NegativeAestheticScore;
        }
        destination[0] = originalHeight;
        destination[1] = originalWidth;
        destination[2] = cropTop;
        destination[3] = cropLeft;
        switch (destination.Length)
        {
            case 6:
                destination[4] = targetHeight;
                destination[5] = targetWidth;
                break;
            case 5:
                destination[4] = aesthetic;
                break;
            default:
                throw new ArgumentException($"SDXL time ids have 6 values (base) or 5 (refiner), not {destination.Length}.", nameof(destination));
        }
    }
}

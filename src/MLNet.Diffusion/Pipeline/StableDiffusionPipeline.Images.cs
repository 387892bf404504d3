using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Imaging;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion;

// Image-to-image and inpainting: checking image requests, encoding init images and masks, and the blend that
// keeps the init image outside the mask on a 4-channel UNet.
public sealed partial class StableDiffusionPipeline
{
    /// <summary>
    /// The number of inference steps image-to-image skips at <paramref name="strength"/> (diffusers'
    /// <c>t_start</c>): <c>steps − min(⌊steps·strength⌋, steps)</c>, with the strength read as the shortest
    /// decimal that gives the float (so 0.7f with 10 steps keeps 7 steps, as <c>strength=0.7</c> does in Python).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Steps below 1, or the strength is not in [0, 1].</exception>
    public static int SkippedSteps(int steps, float strength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        SettingLimits.ThrowIf(SettingLimits.Strength("Strength", strength), nameof(strength));
        double s = double.Parse(strength.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        int kept = Math.Min((int)(steps * s), steps);
        return steps - kept;
    }

    /// <summary>
    /// Encodes an image of any size into scaled latents [4, <paramref name="height"/>/8, <paramref name="width"/>/8]:
    /// the image is stretched to <paramref name="width"/>×<paramref name="height"/> (bilinear), mapped to [−1, 1],
    /// encoded and multiplied by the VAE scaling factor (the latents the UNet works on).
    /// </summary>
    /// <param name="image">The image; alpha is ignored.</param>
    /// <param name="width">The generation width (multiple of 8).</param>
    /// <param name="height">The generation height (multiple of 8).</param>
    /// <param name="noise">Samples Optimum's <c>latent_parameters</c> distribution; null takes its mean (diffusers' <c>argmax</c> mode). Not used by a <c>latent_sample</c> encoder.</param>
    /// <param name="cancellationToken">Cancels the encoder run.</param>
    /// <exception cref="InvalidOperationException">The folder has no VAE encoder.</exception>
    public float[] EncodeImage(MLImage image, int width, int height, INoiseSource? noise = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(image);
        using var lease = Enter();
        ValidateSizeLimits(width, height); // encoding alone does not need a size the UNet makes
        CheckImage(image, null, "image");
        RequireEncoder(null);
        try
        {
            return EncodePixels(ImageTensor.FromImageResized(image, width, height), width, height, noise ?? ZeroNoise.Instance, 0, 1, 0, VaeTiling.Auto, cancellationToken);
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("Encoding was cancelled during a VAE encoder call.", cancellationToken);
        }
    }

    private void RequireEncoder(int? image)
    {
        if (VaeEncoder is null)
            throw new InvalidOperationException($"{(image is int i ? $"Image {i} has an InitImage, but m" : "M")}odel folder '{Folder.Directory}' has no VAE encoder " +
                $"({Path.Combine("vae_encoder", "model.onnx")}), which image-to-image and inpainting need to encode the init image. Use an export that includes the VAE encoder.");
    }

    /// <summary>Encodes one image (item <paramref name="item"/> of <paramref name="items"/>, the caller's image <paramref name="imageIndex"/>).</summary>
    private float[] EncodePixels(float[] pixels, int width, int height, INoiseSource noise, int item, int items, int imageIndex, VaeTiling tiling, CancellationToken cancellationToken)
    {
        using var hold = _model.Model.VaeEncoders!.Acquire();
        var encoder = hold.Value;
        var latents = encoder.Encode(pixels, height, width, noise, out int lh, out int lw, cancellationToken, tiling);
        if (lh != height / 8 || lw != width / 8)
            throw new InvalidDataException($"The vae_encoder model '{encoder.ModelPath}' encoded a {width}×{height} image into {lw}×{lh} latents; expected {width / 8}×{height / 8}.");
        NonFiniteLatentsException.ThrowIfNonFinite(latents, DiffusionStage.EncodingImages, "VAE encoder output", item + 1, items, null, latents.Length, imageOffset: imageIndex,
            source: new NonFiniteSource(encoder, pixels));
        return latents;
    }

    /// <summary>
    /// Refuses an init image or mask that cannot be read (disposed), has an unsupported pixel format, or has more
    /// than <see cref="ImageLoader.MaxPixels"/> pixels, before anything proportional to its size is allocated.
    /// </summary>
    private static void CheckImage(MLImage image, int? index, string role)
    {
        string who = index is int i ? $"Image {i}: the {role}" : $"The {role}";
        string parameter = index is null ? "image" : "images";
        int width, height;
        MLPixelFormat format;
        try
        {
            width = image.Width;
            height = image.Height;
            format = image.PixelFormat;
        }
        catch (InvalidOperationException e)
        {
            throw new ArgumentException($"{who} cannot be read ({e.Message.TrimEnd('.')}); was it disposed before the call?", parameter, e);
        }
        if (width < 1 || height < 1)
            throw new ArgumentException($"{who} is {width}×{height}, which has no pixels.", parameter);
        if ((long)width * height > ImageLoader.MaxPixels)
            throw new ArgumentException($"{who} is {width}×{height} ({(long)width * height} pixels); at most {ImageLoader.MaxPixels} (8192×8192) are accepted. Downscale it first: it is stretched to the generation size anyway.", parameter);
        if (format is not (MLPixelFormat.Rgba32 or MLPixelFormat.Bgra32))
            throw new ArgumentException($"{who} has pixel format {format}; RGBA32 or BGRA32 is expected.", parameter);
    }

    /// <summary>Whether a request's init image is encoded: for the noised start, for the blend, or for the inpainting UNet's masked image.</summary>
    private bool NeedsEncoding(ImagePrompt p, int startStep) =>
        p.InitImage is not null && (startStep > 0 || p.Mask is not null || InpaintingUNet);

    /// <summary>The encoded images of one UNet batch (rows in the batch's order).</summary>
    private sealed class ImageConditioning(int count)
    {
        /// <summary>Init-image latents [N, 4, h, w] (scaled), where needed.</summary>
        public float[]? Latents;
        /// <summary>Latent-size masks [N, h, w], 1 = repaint.</summary>
        public float[]? LatentMasks;
        /// <summary>Latents of image·(mask &lt; ½) [N, 4, h, w] for the inpainting UNet.</summary>
        public float[]? MaskedLatents;
        /// <summary>Rows blended with their init latents outside the mask (4-channel UNet with a mask).</summary>
        public readonly bool[] BlendRows = new bool[count];
        public bool Blend => Array.IndexOf(BlendRows, true) >= 0;
    }

    /// <summary>
    /// Encodes what a batch needs. Each image's generator has drawn its initial noise already; here it draws the init
    /// image's sample, then the masked image's (Optimum's <c>latent_parameters</c> form only).
    /// </summary>
    private ImageConditioning PrepareImages(int[] rows, ImagePrompt[] items, int startStep, BatchShape shape, INoiseSource[] generators, ProgressCounter counter,
        VaeTiling tiling, CancellationToken cancellationToken)
    {
        int n = shape.Images, width = shape.Width, height = shape.Height, hw = shape.PlaneLength, per = shape.ImageLength, plane = width * height;
        var c = new ImageConditioning(n);
        for (int i = 0; i < n; i++)
        {
            var item = items[i];
            if (!NeedsEncoding(item, startStep)) continue;
            cancellationToken.ThrowIfCancellationRequested();
            var pixels = ImageTensor.FromImageResized(item.InitImage!, width, height);
            var pixelMask = item.Mask is null ? null : ImageTensor.MaskFromImage(item.Mask, width, height);
            if (startStep > 0 || (!InpaintingUNet && pixelMask is not null))
            {
                c.Latents ??= new float[n * per];
                EncodePixels(pixels, width, height, generators[i], i, n, rows[i], tiling, cancellationToken).CopyTo(c.Latents, i * per);
            }
            if (pixelMask is not null || InpaintingUNet)
            {
                c.LatentMasks ??= new float[n * hw];
                var m = c.LatentMasks.AsSpan(i * hw, hw);
                if (pixelMask is null) m.Fill(1f); // no mask: repaint everything
                else DownsampleMask(pixelMask, width, height, m);
            }
            if (InpaintingUNet)
            {
                // diffusers: masked_image = image · (mask < 0.5), i.e. 0 (mid grey) where the mask repaints.
                for (int p = 0; p < plane; p++)
                    if (pixelMask is null || pixelMask[p] >= 0.5f)
                        pixels[p] = pixels[plane + p] = pixels[2 * plane + p] = 0;
                c.MaskedLatents ??= new float[n * per];
                EncodePixels(pixels, width, height, generators[i], i, n, rows[i], tiling, cancellationToken).CopyTo(c.MaskedLatents, i * per);
            }
            else if (pixelMask is not null)
            {
                c.BlendRows[i] = true;
            }
            counter.Encoded();
        }
        return c;
    }

    /// <summary>
    /// A pixel mask [H × W] to latent size [H/8 × W/8] as diffusers does (<c>F.interpolate</c>, mode nearest:
    /// the top-left pixel of each 8×8 block).
    /// </summary>
    private static void DownsampleMask(ReadOnlySpan<float> pixelMask, int width, int height, Span<float> destination)
    {
        int w = width / 8, h = height / 8;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                destination[y * w + x] = pixelMask[8 * y * width + 8 * x];
    }

    /// <summary>
    /// diffusers' 4-channel inpainting, after each scheduler step: outside the mask, the init latents noised (with the
    /// initial noise) to the level of the next call, or after the last call the init latents themselves. No allocation.
    /// </summary>
    private static void KeepInitImageOutsideMasks(DiffusionScheduler scheduler, int calls, ImageConditioning images, float[] initialNoise, float[] known, Span<float> latents, BatchShape shape)
    {
        if (scheduler.StepIndex < calls) scheduler.AddNoise(images.Latents!, initialNoise, scheduler.StepIndex, known);
        else images.Latents!.CopyTo(known, 0);
        BlendOutsideMasks(latents, known, images, shape.PlaneLength);
    }

    /// <summary>latents = known + m·(latents − known) per masked row: the known latents where the mask is 0.</summary>
    private static void BlendOutsideMasks(Span<float> latents, ReadOnlySpan<float> known, ImageConditioning images, int hw)
    {
        int per = MaskedLatentChannels * hw;
        var masks = images.LatentMasks!;
        for (int i = 0; i < images.BlendRows.Length; i++)
        {
            if (!images.BlendRows[i]) continue;
            var m = masks.AsSpan(i * hw, hw);
            for (int ch = 0; ch < MaskedLatentChannels; ch++)
            {
                int o = i * per + ch * hw;
                for (int p = 0; p < hw; p++)
                    latents[o + p] = m[p] == 0 ? known[o + p] : m[p] == 1 ? latents[o + p] : known[o + p] + m[p] * (latents[o + p] - known[o + p]);
            }
        }
    }

    /// <summary>Reports encoded images and UNet calls across the groups of one call.</summary>
    private sealed class ProgressCounter(IProgress<DiffusionProgress>? progress, int calls, int encodes)
    {
        private int _calls, _encodes;

        public void Step() => progress?.Report(new DiffusionProgress(DiffusionStage.Denoising, ++_calls, calls));

        public void Encoded() => progress?.Report(new DiffusionProgress(DiffusionStage.EncodingImages, ++_encodes, encodes));
    }

    /// <summary>Zero "noise": sampling a VAE distribution with it gives its mean.</summary>
    private sealed class ZeroNoise : INoiseSource
    {
        public static readonly ZeroNoise Instance = new();

        public void Fill(Span<float> destination) => destination.Clear();
    }
}

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The scaled latents of the demo dataset in factored form, as the UNet stores them: per geometry (shape, size and
/// position: 40 of them) the distance channel and the colour channels' weight, per shape colour its code, per background
/// its channel. <see cref="Compose"/> gives every image's latent ([600, 4, 32, 32]).
/// </summary>
/// <remarks>
/// The factoring is exact for the VAE encoder (<see cref="DemoVae"/>) on dataset images: the distance channel depends on
/// the coverage α only; the colour channels are ColourGain · opponent(colour) · Σα / (Σα + ε) over the window (a grey
/// has no opponent components, and the chroma of α · colour + (1 − α) · grey is α · chroma); the background channel is the
/// code of the image's grey. So the table is built by encoding the 40 geometries once (in red on white) instead of all
/// 600 images, and the UNet file holds 40 + 40 + 3 channel planes instead of 600 latents.
/// </remarks>
public sealed class DemoLatentTable
{
    /// <summary>Distinct geometries: 4 shapes × 2 sizes × 5 positions.</summary>
    public const int GeometryCount = 40;

    /// <summary>Values in one latent channel plane (32 × 32).</summary>
    public const int PlaneLength = DemoUnet.LatentSize * DemoUnet.LatentSize;

    private DemoLatentTable(float[] distance, float[] colourWeight, float[] background, float[] colourCodes)
    {
        Distance = distance;
        ColourWeight = colourWeight;
        Background = background;
        ColourCodes = colourCodes;
    }

    /// <summary>The distance channel of each geometry ([40, 32·32], scaled units).</summary>
    public float[] Distance { get; }

    /// <summary>The colour channels' weight Σα / (Σα + ε) of each geometry ([40, 32·32]).</summary>
    public float[] ColourWeight { get; }

    /// <summary>The background channel of each background ([3, 32·32], scaled units).</summary>
    public float[] Background { get; }

    /// <summary>The scaled colour codes ([5, 2]: ColourGain · (R − G, (R + G)/2 − B) of each shape colour).</summary>
    public float[] ColourCodes { get; }

    /// <summary>The geometry index of an image: shape-major, then size, then position (as <see cref="DemoDataset.Items"/> orders them).</summary>
    public static int GeometryIndex(DemoItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        return ((int)item.Shape * 2 + (int)item.Size) * 5 + (int)item.Position;
    }

    /// <summary>Encodes the 40 geometries with the reference encoder and writes down the colour and background codes.</summary>
    public static DemoLatentTable Create()
    {
        int n = DemoDataset.ImageSize, p = PlaneLength;
        var distance = new float[GeometryCount * p];
        var weight = new float[GeometryCount * p];
        var (redA, _) = DemoVae.Opponent(DemoDataset.ShapeColours[0].R, DemoDataset.ShapeColours[0].G, DemoDataset.ShapeColours[0].B);
        var probes = DemoDataset.Items.Where(i => i.Colour == 0 && i.Background == 0).ToArray();
        Parallel.ForEach(probes, item =>
        {
            int geometry = GeometryIndex(item);
            var latent = new float[DemoVae.LatentChannels * p];
            DemoVae.EncodeOne(DemoDataset.Render(item), n, n, latent);
            for (int i = 0; i < p; i++)
            {
                distance[geometry * p + i] = latent[i] * DemoVae.ScalingFactor;
                weight[geometry * p + i] = latent[2 * p + i] * DemoVae.ScalingFactor / (DemoVae.ColourGain * redA);
            }
        });
        var background = new float[DemoDataset.BackgroundColours.Count * p];
        for (int b = 0; b < DemoDataset.BackgroundColours.Count; b++)
        {
            var (mean, checker) = DemoVae.BackgroundCode(DemoDataset.BackgroundColours[b].R);
            for (int y = 0; y < DemoUnet.LatentSize; y++)
                for (int x = 0; x < DemoUnet.LatentSize; x++)
                    background[b * p + y * DemoUnet.LatentSize + x] = DemoVae.GreyGain * (mean + DemoVae.Checker(y, x) * checker);
        }
        var codes = new float[DemoDataset.ShapeColours.Count * 2];
        for (int c = 0; c < DemoDataset.ShapeColours.Count; c++)
        {
            var colour = DemoDataset.ShapeColours[c];
            var (a, b) = DemoVae.Opponent(colour.R, colour.G, colour.B);
            codes[2 * c] = DemoVae.ColourGain * a;
            codes[2 * c + 1] = DemoVae.ColourGain * b;
        }
        return new DemoLatentTable(distance, weight, background, codes);
    }

    /// <summary>
    /// The scaled latent of every dataset image ([600, 4 · 32·32] row-major, in <see cref="DemoDataset.Items"/> order):
    /// distance, background, then the colour weight times each colour code. Each value is one single-precision product
    /// of table entries, exactly what the UNet graph computes from the same tables.
    /// </summary>
    public float[] Compose()
    {
        var items = DemoDataset.Items;
        int p = PlaneLength, length = DemoVae.LatentChannels * p;
        var latents = new float[items.Count * length];
        foreach (var item in items)
        {
            var z = latents.AsSpan(item.Index * length, length);
            int geometry = GeometryIndex(item);
            Distance.AsSpan(geometry * p, p).CopyTo(z);
            Background.AsSpan(item.Background * p, p).CopyTo(z[p..]);
            float a = ColourCodes[2 * item.Colour], b = ColourCodes[2 * item.Colour + 1];
            var w = ColourWeight.AsSpan(geometry * p, p);
            for (int i = 0; i < p; i++)
            {
                z[2 * p + i] = w[i] * a;
                z[3 * p + i] = w[i] * b;
            }
        }
        return latents;
    }
}

using MLNet.Diffusion.ModelBuilder.Demo;

namespace MLNet.Diffusion.Tests.Demo;

/// <summary>Small image helpers for the demo tests (planar RGB in [−1, 1]).</summary>
public static class DemoImages
{
    public const int Size = DemoDataset.ImageSize;
    public const int Plane = Size * Size;

    /// <summary>The pixel (r, g, b) in [0, 1].</summary>
    public static (float R, float G, float B) Pixel(ReadOnlySpan<float> image, int i) =>
        ((image[i] + 1) / 2, (image[Plane + i] + 1) / 2, (image[2 * Plane + i] + 1) / 2);

    /// <summary>Pixels within <paramref name="tolerance"/> (max channel difference) of a colour.</summary>
    public static bool[] Mask(ReadOnlySpan<float> image, DemoColour colour, float tolerance = 0.2f)
    {
        var mask = new bool[Plane];
        for (int i = 0; i < Plane; i++)
        {
            var (r, g, b) = Pixel(image, i);
            mask[i] = MathF.Max(MathF.Abs(r - colour.R), MathF.Max(MathF.Abs(g - colour.G), MathF.Abs(b - colour.B))) < tolerance;
        }
        return mask;
    }

    /// <summary>Where a dataset item's shape covers more than half a pixel.</summary>
    public static bool[] ShapeMask(DemoItem item)
    {
        var (cx, cy) = DemoDataset.Centre(item.Position);
        var mask = new bool[Plane];
        for (int y = 0; y < Size; y++)
            for (int x = 0; x < Size; x++)
                mask[y * Size + x] = DemoDataset.SignedDistance(item.Shape, cx, cy, DemoDataset.Radius(item.Size), x + 0.5, y + 0.5) > 0;
        return mask;
    }

    public static double IoU(bool[] a, bool[] b)
    {
        int inter = 0, union = 0;
        for (int i = 0; i < a.Length; i++)
        {
            if (a[i] && b[i]) inter++;
            if (a[i] || b[i]) union++;
        }
        return union == 0 ? 1 : (double)inter / union;
    }

    /// <summary>Mask area over its bounding-box area: π/4 ≈ 0.785 for a disc, 1 for a square, 0.5 for a triangle.</summary>
    public static double BoxFill(bool[] mask)
    {
        int minX = Size, minY = Size, maxX = -1, maxY = -1, area = 0;
        for (int y = 0; y < Size; y++)
            for (int x = 0; x < Size; x++)
            {
                if (!mask[y * Size + x]) continue;
                area++;
                minX = Math.Min(minX, x); maxX = Math.Max(maxX, x);
                minY = Math.Min(minY, y); maxY = Math.Max(maxY, y);
            }
        return area == 0 ? 0 : area / (double)((maxX - minX + 1) * (maxY - minY + 1));
    }

    /// <summary>The dataset image whose scaled latent is nearest to <paramref name="latent"/>, and the relative distance.</summary>
    public static (DemoItem Item, double RelativeDistance) Nearest(ReadOnlySpan<float> latent, ReadOnlySpan<float> datasetLatents)
    {
        int n = DemoUnet.LatentLength, best = -1;
        double bestDist = double.MaxValue, bestNorm = 1;
        for (int k = 0; k < datasetLatents.Length / n; k++)
        {
            double dist = 0, norm = 0;
            for (int i = 0; i < n; i++)
            {
                double z = datasetLatents[k * n + i], r = latent[i] - z;
                dist += r * r;
                norm += z * z;
            }
            if (dist < bestDist) (best, bestDist, bestNorm) = (k, dist, norm);
        }
        return (DemoDataset.Items[best], Math.Sqrt(bestDist / bestNorm));
    }
}

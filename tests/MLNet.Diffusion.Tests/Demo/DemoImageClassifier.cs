using Microsoft.ML.Data;
using MLNet.Diffusion.ModelBuilder.Demo;

namespace MLNet.Diffusion.Tests.Demo;

/// <summary>What a demo picture shows, read from its pixels by <see cref="DemoImageClassifier"/>.</summary>
/// <param name="Shape">The shape whose template matches the coloured region best.</param>
/// <param name="Colour">Index into <see cref="DemoDataset.ShapeColours"/> nearest to the shape's mean colour.</param>
/// <param name="Background">Index into <see cref="DemoDataset.BackgroundColours"/> nearest to the mean grey of the uncoloured pixels.</param>
/// <param name="Size">The size of the best template.</param>
/// <param name="Position">The position of the best template.</param>
/// <param name="Match">The intersection over union of the coloured region with the best template.</param>
public readonly record struct DemoAttributes(DemoShape Shape, int Colour, int Background, DemoSize Size, DemoPosition Position, double Match)
{
    /// <summary>The dataset image with these attributes (null when no shape colour was found).</summary>
    public DemoItem? Item => Colour < 0 ? null : Find(Colour);

    /// <summary>Whether every attribute <paramref name="prompt"/> names (a demo word's slot) is one this picture has.</summary>
    public bool HasEveryAttributeOf(string prompt) => WrongAttributes(prompt).Count == 0;

    /// <summary>The attribute groups ("shape", "colour", "background", "size", "vertical", "horizontal") that
    /// <paramref name="prompt"/> names and this picture does not have.</summary>
    public IReadOnlyList<string> WrongAttributes(string prompt)
    {
        var asked = DemoVocabulary.Pool(prompt);
        var has = DemoVocabulary.AttributeVector(Find(Math.Max(Colour, 0)));
        if (Colour < 0)
            for (int i = 0; i < has.Length; i++)
                if (DemoVocabulary.Slots[i].StartsWith("colour:", StringComparison.Ordinal)) has[i] = 0;
        var wrong = new List<string>();
        for (int i = 0; i < asked.Length; i++)
            if (asked[i] > 0 && has[i] == 0) wrong.Add(DemoVocabulary.Slots[i].Split(':')[0]);
        return wrong;
    }

    /// <summary>The dataset image of these attributes with another colour (items are ordered shape, colour, background, size, position).</summary>
    private DemoItem Find(int colour) =>
        DemoDataset.Items[(((((int)Shape * DemoDataset.ShapeColours.Count) + colour) * DemoDataset.BackgroundColours.Count + Background) * 2 + (int)Size) * 5 + (int)Position];
}

/// <summary>
/// Reads a demo picture's attributes from its pixels, with no use of the latents: the shape region is where the chroma
/// (max − min channel) exceeds half of the palette's <see cref="DemoDataset.ShapeChroma"/>; its colour is the palette
/// colour nearest to the mean of the clearly coloured pixels; the background is the dataset grey nearest to the mean of
/// the grey pixels; shape, size and position are those of the template (the dataset outline drawn at a
/// pixel-centre threshold) with the highest intersection over union with the shape region.
/// </summary>
public sealed class DemoImageClassifier
{
    private const int N = DemoDataset.ImageSize;
    private readonly (DemoShape Shape, DemoSize Size, DemoPosition Position, bool[] Mask)[] _templates;

    public DemoImageClassifier()
    {
        _templates = DemoDataset.Items
            .Where(i => i.Colour == 0 && i.Background == 0)
            .Select(i => (i.Shape, i.Size, i.Position, Template(i.Shape, i.Size, i.Position)))
            .ToArray();
    }

    /// <summary>Where the outline of a shape of that size at that position covers a pixel centre.</summary>
    public static bool[] Template(DemoShape shape, DemoSize size, DemoPosition position)
    {
        var (cx, cy) = DemoDataset.Centre(position);
        var mask = new bool[N * N];
        for (int y = 0; y < N; y++)
            for (int x = 0; x < N; x++)
                mask[y * N + x] = DemoDataset.SignedDistance(shape, cx, cy, DemoDataset.Radius(size), x + 0.5, y + 0.5) > 0;
        return mask;
    }

    /// <summary>Classifies an RGBA or BGRA picture of the demo model's size.</summary>
    public DemoAttributes Classify(MLImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.Width != N || image.Height != N) throw new ArgumentException($"The picture is {image.Width}×{image.Height}; the demo model draws {N}×{N}.", nameof(image));
        var pixels = image.Pixels;
        bool rgba = image.PixelFormat == MLPixelFormat.Rgba32;
        var rgb = new float[3 * N * N];
        for (int i = 0; i < N * N; i++)
        {
            rgb[i] = (rgba ? pixels[4 * i] : pixels[4 * i + 2]) / 255f;
            rgb[N * N + i] = pixels[4 * i + 1] / 255f;
            rgb[2 * N * N + i] = (rgba ? pixels[4 * i + 2] : pixels[4 * i]) / 255f;
        }
        return Classify01(rgb);
    }

    /// <summary>Classifies planar RGB ([3, N, N]) with values in [−1, 1], as the VAE decoder outputs it.</summary>
    public DemoAttributes ClassifyPlanar(ReadOnlySpan<float> planar)
    {
        var rgb = new float[3 * N * N];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = planar[i] * 0.5f + 0.5f;
        return Classify01(rgb);
    }

    /// <summary>The shape region of planar RGB in [−1, 1]: chroma above half the palette's.</summary>
    public static bool[] ShapeRegion(ReadOnlySpan<float> planar)
    {
        var mask = new bool[N * N];
        for (int i = 0; i < mask.Length; i++)
        {
            float r = planar[i], g = planar[N * N + i], b = planar[2 * N * N + i];
            mask[i] = 0.5f * (MathF.Max(r, MathF.Max(g, b)) - MathF.Min(r, MathF.Min(g, b))) > 0.5f * DemoDataset.ShapeChroma;
        }
        return mask;
    }

    private DemoAttributes Classify01(float[] rgb)
    {
        const int plane = N * N;
        var region = new bool[plane];
        double sr = 0, sg = 0, sb = 0, grey = 0;
        int coloured = 0, greys = 0;
        for (int i = 0; i < plane; i++)
        {
            float r = rgb[i], g = rgb[plane + i], b = rgb[2 * plane + i];
            float chroma = MathF.Max(r, MathF.Max(g, b)) - MathF.Min(r, MathF.Min(g, b));
            region[i] = chroma > 0.5f * DemoDataset.ShapeChroma;
            if (chroma > 0.75f * DemoDataset.ShapeChroma) { sr += r; sg += g; sb += b; coloured++; }
            else if (chroma < 0.1f * DemoDataset.ShapeChroma) { grey += (r + g + b) / 3; greys++; }
        }
        int colour = coloured == 0 ? -1 : Nearest(DemoDataset.ShapeColours, sr / coloured, sg / coloured, sb / coloured);
        double level = greys == 0 ? 0.5 : grey / greys;
        int background = Nearest(DemoDataset.BackgroundColours, level, level, level);
        int best = 0;
        double bestIoU = -1;
        for (int t = 0; t < _templates.Length; t++)
        {
            double iou = DemoImages.IoU(region, _templates[t].Mask);
            if (iou > bestIoU) (best, bestIoU) = (t, iou);
        }
        var (shape, size, position, _) = _templates[best];
        return new DemoAttributes(shape, colour, background, size, position, bestIoU);
    }

    private static int Nearest(IReadOnlyList<DemoColour> colours, double r, double g, double b)
    {
        int best = 0;
        double bestDistance = double.MaxValue;
        for (int j = 0; j < colours.Count; j++)
        {
            double d = (r - colours[j].R) * (r - colours[j].R) + (g - colours[j].G) * (g - colours[j].G) + (b - colours[j].B) * (b - colours[j].B);
            if (d < bestDistance) (best, bestDistance) = (j, d);
        }
        return best;
    }
}

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>A shape drawn in the demo images.</summary>
public enum DemoShape
{
    /// <summary>A disc.</summary>
    Circle,
    /// <summary>An axis-aligned square.</summary>
    Square,
    /// <summary>An equilateral triangle pointing up.</summary>
    Triangle,
    /// <summary>A five-pointed star pointing up.</summary>
    Star,
}

/// <summary>How large a demo shape is drawn.</summary>
public enum DemoSize
{
    /// <summary>About a fifth of the image across.</summary>
    Small,
    /// <summary>About three eighths of the image across.</summary>
    Large,
}

/// <summary>Where a demo shape sits in the image.</summary>
public enum DemoPosition
{
    /// <summary>The top left quadrant.</summary>
    TopLeft,
    /// <summary>The top right quadrant.</summary>
    TopRight,
    /// <summary>The bottom left quadrant.</summary>
    BottomLeft,
    /// <summary>The bottom right quadrant.</summary>
    BottomRight,
    /// <summary>The middle of the image.</summary>
    Center,
}

/// <summary>A named sRGB colour with channels in [0, 1].</summary>
/// <param name="Name">The caption word for the colour.</param>
/// <param name="R">Red.</param>
/// <param name="G">Green.</param>
/// <param name="B">Blue.</param>
public sealed record DemoColour(string Name, float R, float G, float B);

/// <summary>One image of the demo dataset: what is drawn and its caption.</summary>
/// <param name="Index">The position in <see cref="DemoDataset.Items"/>.</param>
/// <param name="Shape">The shape.</param>
/// <param name="Colour">Index into <see cref="DemoDataset.ShapeColours"/>.</param>
/// <param name="Background">Index into <see cref="DemoDataset.BackgroundColours"/>.</param>
/// <param name="Size">The size.</param>
/// <param name="Position">The position.</param>
public sealed record DemoItem(int Index, DemoShape Shape, int Colour, int Background, DemoSize Size, DemoPosition Position)
{
    /// <summary>The full caption, naming every attribute, e.g.
    /// "a small red circle in the top left corner on a white background".</summary>
    public string Caption =>
        $"a {DemoDataset.SizeWord(Size)} {DemoDataset.ShapeColours[Colour].Name} {DemoDataset.ShapeWord(Shape)} {DemoDataset.PositionPhrase(Position)} on a {DemoDataset.BackgroundColours[Background].Name} background";

    /// <summary>A short caption naming colour, shape and background, e.g. "a red circle on a white background".</summary>
    public string ShortCaption =>
        $"a {DemoDataset.ShapeColours[Colour].Name} {DemoDataset.ShapeWord(Shape)} on a {DemoDataset.BackgroundColours[Background].Name} background";
}

/// <summary>
/// The demo model's training set, drawn procedurally: every combination of 4 shapes, 5 colours,
/// 3 backgrounds, 2 sizes and 5 positions (600 images of <see cref="ImageSize"/>² pixels), each with a caption.
/// </summary>
/// <remarks>
/// A shape is drawn as coverage α = sigmoid(<see cref="EdgeSharpness"/> · d), d being the exact signed distance
/// (pixels, positive inside) from the pixel centre to the shape's outline; the pixel is
/// α · colour + (1 − α) · background. The VAE decoder draws with the same rule, which is why it can give a
/// dataset image back almost exactly. Corners are slightly rounded (<see cref="CornerRadius"/>; the star's concave
/// corners by a smooth union, <see cref="StarFillet"/>) because the latent's distance field, sampled every 8 pixels,
/// cannot carry sharper ones; at <see cref="ImageSize"/> = 256 even a small shape spans seven latent cells, so a small
/// star keeps five distinct tips and a small square its corners. Shape colours all have channel minimum 0.1 and maximum 0.9 (chroma
/// 0.8) and backgrounds are grey levels (chroma 0): the VAE encoder finds the shape by its chroma.
/// </remarks>
public static class DemoDataset
{
    /// <summary>Image width and height in pixels.</summary>
    public const int ImageSize = 256;

    /// <summary>Steepness of the drawn edges: coverage = sigmoid(EdgeSharpness · signed distance in pixels).</summary>
    public const float EdgeSharpness = 4f;

    /// <summary>The smallest channel value of every shape colour.</summary>
    public const float ShapeColourMin = 0.1f;

    /// <summary>Channel maximum minus minimum of every shape colour.</summary>
    public const float ShapeChroma = 0.8f;

    /// <summary>The shape colours (all of chroma <see cref="ShapeChroma"/>, minimum <see cref="ShapeColourMin"/>).</summary>
    public static IReadOnlyList<DemoColour> ShapeColours { get; } =
    [
        new("red", 0.9f, 0.1f, 0.1f),
        new("yellow", 0.9f, 0.8f, 0.1f),
        new("green", 0.15f, 0.9f, 0.1f),
        new("blue", 0.1f, 0.3f, 0.9f),
        new("purple", 0.6f, 0.1f, 0.9f),
    ];

    /// <summary>The background colours (grey levels).</summary>
    public static IReadOnlyList<DemoColour> BackgroundColours { get; } =
    [
        new("white", 1f, 1f, 1f),
        new("gray", 0.5f, 0.5f, 0.5f),
        new("black", 0f, 0f, 0f),
    ];

    /// <summary>Every image of the dataset, in a fixed order (shape, colour, background, size, position).</summary>
    public static IReadOnlyList<DemoItem> Items { get; } = CreateItems();

    /// <summary>The caption word for a shape.</summary>
    public static string ShapeWord(DemoShape shape) => shape switch
    {
        DemoShape.Circle => "circle",
        DemoShape.Square => "square",
        DemoShape.Triangle => "triangle",
        DemoShape.Star => "star",
        _ => throw new ArgumentOutOfRangeException(nameof(shape)),
    };

    /// <summary>The caption word for a size.</summary>
    public static string SizeWord(DemoSize size) => size == DemoSize.Small ? "small" : "large";

    /// <summary>The caption phrase for a position, e.g. "in the top left corner".</summary>
    public static string PositionPhrase(DemoPosition position) => position switch
    {
        DemoPosition.TopLeft => "in the top left corner",
        DemoPosition.TopRight => "in the top right corner",
        DemoPosition.BottomLeft => "in the bottom left corner",
        DemoPosition.BottomRight => "in the bottom right corner",
        DemoPosition.Center => "in the center",
        _ => throw new ArgumentOutOfRangeException(nameof(position)),
    };

    /// <summary>The centre of a shape at <paramref name="position"/>, in pixel coordinates (x right, y down; pixel i spans [i, i + 1]).</summary>
    public static (float X, float Y) Centre(DemoPosition position) => position switch
    {
        DemoPosition.TopLeft => (68f, 68f),
        DemoPosition.TopRight => (188f, 68f),
        DemoPosition.BottomLeft => (68f, 188f),
        DemoPosition.BottomRight => (188f, 188f),
        DemoPosition.Center => (128f, 128f),
        _ => throw new ArgumentOutOfRangeException(nameof(position)),
    };

    /// <summary>The nominal radius of a shape of <paramref name="size"/> in pixels (a circle's radius; other shapes are scaled to look as large).</summary>
    public static float Radius(DemoSize size) => size == DemoSize.Small ? 28f : 48f;

    /// <summary>
    /// The signed distance in pixels from point (<paramref name="x"/>, <paramref name="y"/>) to the outline of
    /// <paramref name="shape"/> centred at (<paramref name="cx"/>, <paramref name="cy"/>) with nominal radius
    /// <paramref name="radius"/>; positive inside.
    /// </summary>
    public static double SignedDistance(DemoShape shape, double cx, double cy, double radius, double x, double y)
    {
        double dx = x - cx, dy = y - cy;
        switch (shape)
        {
            case DemoShape.Circle:
                return radius - Math.Sqrt(dx * dx + dy * dy);
            case DemoShape.Square:
            {
                // Exact rounded-box distance (Quilez): half-side 0.86 r so the square looks as large as the disc.
                double h = 0.86 * radius - CornerRadius;
                double qx = Math.Abs(dx) - h, qy = Math.Abs(dy) - h;
                double outside = Math.Sqrt(Math.Max(qx, 0) * Math.Max(qx, 0) + Math.Max(qy, 0) * Math.Max(qy, 0));
                double inside = Math.Min(Math.Max(qx, qy), 0);
                return CornerRadius - (outside + inside);
            }
            case DemoShape.Triangle:
                return PolygonDistance(TriangleVertices(radius), dx, dy - 0.2 * radius) + CornerRadius;
            case DemoShape.Star:
                return StarDistance(radius, dx, dy - 0.08 * radius) + CornerRadius;
            default:
                throw new ArgumentOutOfRangeException(nameof(shape));
        }
    }

    /// <summary>Where the drawn distance is clamped (pixels outside the shape): coverage there is sigmoid(−32) ≈ 1e−14.</summary>
    public const double FarDistance = -8;

    /// <summary>
    /// Draws <paramref name="item"/>: planar RGB ([3, H, W], channel after channel) with values in [−1, 1], as the VAE
    /// encoder takes it. Coverage is sigmoid(<see cref="EdgeSharpness"/> · max(d, <see cref="FarDistance"/>)).
    /// </summary>
    public static float[] Render(DemoItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        const int n = ImageSize;
        var image = new float[3 * n * n];
        var (cx, cy) = Centre(item.Position);
        double radius = Radius(item.Size);
        var fg = ShapeColours[item.Colour];
        var bg = BackgroundColours[item.Background];
        // Every shape lies within 1.35 r of its centre, so beyond that plus 8 pixels d < FarDistance.
        double reach = 1.35 * radius - FarDistance;
        for (int y = 0; y < n; y++)
        {
            for (int x = 0; x < n; x++)
            {
                double px = x + 0.5, py = y + 0.5;
                bool far = Math.Abs(px - cx) > reach || Math.Abs(py - cy) > reach;
                double d = far ? FarDistance : Math.Max(SignedDistance(item.Shape, cx, cy, radius, px, py), FarDistance);
                float a = Sigmoid((float)(EdgeSharpness * d));
                int i = y * n + x;
                image[i] = 2 * (bg.R + a * (fg.R - bg.R)) - 1;
                image[n * n + i] = 2 * (bg.G + a * (fg.G - bg.G)) - 1;
                image[2 * n * n + i] = 2 * (bg.B + a * (fg.B - bg.B)) - 1;
            }
        }
        return image;
    }

    /// <summary>The logistic function 1 / (1 + e^−x), in single precision.</summary>
    public static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    private static List<DemoItem> CreateItems()
    {
        var items = new List<DemoItem>();
        foreach (var shape in Enum.GetValues<DemoShape>())
            for (int colour = 0; colour < ShapeColours.Count; colour++)
                for (int background = 0; background < BackgroundColours.Count; background++)
                    foreach (var size in Enum.GetValues<DemoSize>())
                        foreach (var position in Enum.GetValues<DemoPosition>())
                            items.Add(new DemoItem(items.Count, shape, colour, background, size, position));
        return items;
    }

    /// <summary>The radius, in pixels, to which shape corners are rounded: the polygon is drawn shrunk and then
    /// grown by this much, so the outline has no feature finer than the latent grid can carry.</summary>
    public const double CornerRadius = 3;

    /// <summary>A star's inner (concave) vertices lie at this fraction of the outer radius before rounding.</summary>
    public const double StarInnerRatio = 0.6;

    [ThreadStatic] private static (double Radius, (double X, double Y)[] Vertices)? _triangleCache;

    private static (double X, double Y)[] TriangleVertices(double radius)
    {
        if (_triangleCache is { } cached && cached.Radius == radius) return cached.Vertices;
        // Shrunk so that rounding by CornerRadius keeps the size: the inradius drops by CornerRadius.
        double r = 1.3 * radius - 2 * CornerRadius;
        var v = new (double, double)[3];
        for (int i = 0; i < 3; i++)
        {
            double angle = -Math.PI / 2 + i * 2 * Math.PI / 3;
            v[i] = (r * Math.Cos(angle), r * Math.Sin(angle));
        }
        _triangleCache = (radius, v);
        return v;
    }

    /// <summary>The size of the fillets rounding a star's concave corners (the k of the polynomial smooth maximum).</summary>
    public const double StarFillet = 4;

    /// <summary>
    /// A star as the union of its inner pentagon and five arm triangles (each arm's sides extended past the inner
    /// corners into the pentagon so the pieces overlap), joined by a polynomial smooth maximum that rounds the concave
    /// corners; outside the fillets this is the star's exact signed distance.
    /// </summary>
    private static double StarDistance(double radius, double px, double py)
    {
        var pieces = StarPieces(radius);
        double d = PolygonDistance(pieces[0], px, py);
        for (int i = 1; i < pieces.Length; i++) d = SmoothMax(d, PolygonDistance(pieces[i], px, py), StarFillet);
        return d;
    }

    // The pieces of the last star drawn on this thread (rendering asks for the same radius for every pixel).
    [ThreadStatic] private static (double Radius, (double X, double Y)[][] Pieces)? _starCache;

    /// <summary>The star's inner pentagon, then its five arms.</summary>
    private static (double X, double Y)[][] StarPieces(double radius)
    {
        if (_starCache is { } cached && cached.Radius == radius) return cached.Pieces;
        var v = StarVertices(radius);
        var pieces = new (double X, double Y)[6][];
        pieces[0] = [v[1], v[3], v[5], v[7], v[9]];
        for (int i = 0; i < 5; i++)
        {
            var tip = v[2 * i];
            var left = v[(2 * i + 9) % 10];
            var right = v[2 * i + 1];
            pieces[i + 1] =
            [
                tip,
                (tip.X + 1.6 * (right.X - tip.X), tip.Y + 1.6 * (right.Y - tip.Y)),
                (tip.X + 1.6 * (left.X - tip.X), tip.Y + 1.6 * (left.Y - tip.Y)),
            ];
        }
        _starCache = (radius, pieces);
        return pieces;
    }

    /// <summary>Polynomial smooth maximum (Quilez): max(a, b) plus a bump of at most k/4 where a and b are within k.</summary>
    private static double SmoothMax(double a, double b, double k)
    {
        double h = Math.Max(k - Math.Abs(a - b), 0) / k;
        return Math.Max(a, b) + h * h * k * 0.25;
    }

    private static (double X, double Y)[] StarVertices(double radius)
    {
        double outer = 1.3 * radius - CornerRadius, inner = StarInnerRatio * 1.3 * radius - CornerRadius;
        var v = new (double, double)[10];
        for (int i = 0; i < 10; i++)
        {
            double angle = -Math.PI / 2 + i * Math.PI / 5;
            double r = i % 2 == 0 ? outer : inner;
            v[i] = (r * Math.Cos(angle), r * Math.Sin(angle));
        }
        return v;
    }

    /// <summary>Exact signed distance to a simple polygon (positive inside): distance to the nearest edge, sign by crossings.</summary>
    private static double PolygonDistance((double X, double Y)[] v, double px, double py)
    {
        double best = double.MaxValue;
        bool inside = false;
        for (int i = 0, j = v.Length - 1; i < v.Length; j = i++)
        {
            double ex = v[i].X - v[j].X, ey = v[i].Y - v[j].Y;
            double wx = px - v[j].X, wy = py - v[j].Y;
            double t = Math.Clamp((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1);
            double qx = wx - ex * t, qy = wy - ey * t;
            best = Math.Min(best, qx * qx + qy * qy);
            if ((v[i].Y > py) != (v[j].Y > py) && px < v[j].X + (py - v[j].Y) * ex / ey) inside = !inside;
        }
        double d = Math.Sqrt(best);
        return inside ? d : -d;
    }
}

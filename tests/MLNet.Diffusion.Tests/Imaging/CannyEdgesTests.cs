using MLNet.Diffusion.Imaging;
using Xunit;

namespace MLNet.Diffusion.Tests.Imaging;

/// <summary>
/// Canny on drawings whose true outline is known analytically: the edges must lie on that outline, cover it,
/// and be one pixel wide across it; the thresholds must act as documented (OpenCV's units).
/// </summary>
public sealed class CannyEdgesTests
{
    private const int Size = 64;

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(1.4)]
    public void FilledSquareGivesItsOutlineOnePixelWide(double sigma)
    {
        // White square covering pixels 16..47 in both axes: the outline runs along x, y = 15.5 and 47.5.
        var edges = Detect((x, y) => x is >= 16 and <= 47 && y is >= 16 and <= 47, sigma: sigma);

        double DistanceToOutline(double x, double y)
        {
            double dx = Math.Max(Math.Max(15.5 - x, x - 47.5), 0), dy = Math.Max(Math.Max(15.5 - y, y - 47.5), 0);
            double outside = Math.Sqrt(dx * dx + dy * dy);
            double inside = Math.Min(Math.Min(x - 15.5, 47.5 - x), Math.Min(y - 15.5, 47.5 - y));
            return outside > 0 ? outside : Math.Max(inside, 0);
        }
        AssertOnOutline(edges, DistanceToOutline, tolerance: 1.5);
        AssertThin(edges);

        // Covered: every sampled point of the outline has an edge pixel within one pixel.
        for (double t = 15.5; t <= 47.5; t += 0.5)
            foreach (var (x, y) in new[] { (15.5, t), (47.5, t), (t, 15.5), (t, 47.5) })
                Assert.True(NearestEdge(edges, x, y) <= 1.0, $"no edge near the outline point ({x}, {y})");

        // One pixel wide across each side, away from the corners.
        for (int r = 20; r <= 43; r++)
        {
            Assert.Equal(1, CountInRow(edges, r, 0, 31));
            Assert.Equal(1, CountInRow(edges, r, 32, Size - 1));
            Assert.Equal(1, CountInColumn(edges, r, 0, 31));
            Assert.Equal(1, CountInColumn(edges, r, 32, Size - 1));
        }
    }

    [Fact]
    public void CircleGivesItsOutlineOnePixelWide()
    {
        const double cx = 31.5, cy = 31.5, radius = 20;
        var edges = Detect((x, y) => Math.Sqrt((x - cx) * (x - cx) + (y - cy) * (y - cy)) <= radius);
        double Distance(double x, double y) => Math.Abs(Math.Sqrt((x - cx) * (x - cx) + (y - cy) * (y - cy)) - radius);
        AssertOnOutline(edges, Distance, tolerance: 1.0);

        // Along every ray from the centre, the edge is crossed in exactly one pixel and lies near the circle.
        for (int a = 0; a < 720; a++)
        {
            double angle = a * Math.PI / 360, ux = Math.Cos(angle), uy = Math.Sin(angle);
            var crossed = new HashSet<(int, int)>();
            for (double s = radius - 4; s <= radius + 4; s += 0.05)
            {
                int x = (int)Math.Round(cx + s * ux), y = (int)Math.Round(cy + s * uy);
                if (edges[y, x]) crossed.Add((x, y));
            }
            Assert.True(crossed.Count is 1 or 2, $"ray at {a / 2.0}° crosses {crossed.Count} edge pixels");
            if (crossed.Count == 2)
            {
                // Two pixels on one ray are allowed only where they are diagonal steps of one thin curve.
                var p = crossed.ToArray();
                Assert.True(Math.Abs(p[0].Item1 - p[1].Item1) <= 1 && Math.Abs(p[0].Item2 - p[1].Item2) <= 1,
                    $"ray at {a / 2.0}° crosses two separate edges");
            }
        }
        AssertThin(edges);
        // A thin digital circle has between 4√2·r (8-connected) and 8·r (4-connected) pixels; a two-pixel-wide one twice as many.
        Assert.InRange(Count(edges), (int)(4 * Math.Sqrt(2) * radius * 0.95), (int)(8 * radius * 1.05));
    }

    [Fact]
    public void DiagonalLineGivesAThinStaircase()
    {
        // The half-plane x > y: the outline is the diagonal x = y. At 45° the two pixels either side of a stair both
        // peak along the gradient, so Canny (OpenCV's too) draws a 4-connected staircase: one or two adjacent pixels
        // per row, never a 2×2 block.
        var edges = Detect((x, y) => x > y);
        AssertOnOutline(edges, (x, y) => Math.Abs(x - y) / Math.Sqrt(2), tolerance: 1.0);
        AssertThin(edges);
        for (int y = 4; y < Size - 4; y++)
        {
            Assert.InRange(CountInRow(edges, y, 0, Size - 1), 1, 2);
            Assert.True(edges[y, y] || edges[y, y + 1], $"row {y} has no edge on the diagonal");
        }
    }

    [Fact]
    public void ThresholdsActAsDocumented()
    {
        // Without blur, a vertical step of contrast c (0–1) has Sobel magnitude 4·255·c on both sides of the step.
        var strong = Detect((x, y) => x >= 32, contrast: 0.1, sigma: 0, low: 50, high: 101); // magnitude 102 > 101
        Assert.Equal(1, CountInRow(strong, 30, 0, Size - 1));
        var belowHigh = Detect((x, y) => x >= 32, contrast: 0.1, sigma: 0, low: 50, high: 103);
        Assert.Equal(0, Count(belowHigh));

        // Hysteresis: a weak stretch (magnitude 153, between the thresholds) is kept when it continues a strong one,
        // dropped when alone or when it falls below the low threshold. The step's contrast fades from 1 (rows < 20)
        // to 0.15 (rows > 44) slowly enough that the fade itself stays below the low threshold (vertical magnitude 72).
        float[] Fading(double upper, double lower)
        {
            var planes = new float[3 * Size * Size];
            for (int y = 0; y < Size; y++)
            {
                double contrast = upper + (lower - upper) * Math.Clamp((y - 20) / 24.0, 0, 1);
                for (int x = 32; x < Size; x++)
                    for (int c = 0; c < 3; c++) planes[c * Size * Size + y * Size + x] = (float)contrast;
            }
            return planes;
        }
        var connected = ToGrid(CannyEdges.Detect(Fading(1.0, 0.15), Size, Size, 100, 200, blurSigma: 0));
        for (int y = 0; y < Size; y++) Assert.Equal(1, CountInRow(connected, y, 0, Size - 1));
        var alone = ToGrid(CannyEdges.Detect(Fading(0.15, 0.15), Size, Size, 100, 200, blurSigma: 0));
        Assert.Equal(0, Count(alone));
        var lowAbove = ToGrid(CannyEdges.Detect(Fading(1.0, 0.15), Size, Size, 160, 200, blurSigma: 0));
        Assert.Equal(1, CountInRow(lowAbove, 10, 0, Size - 1));
        Assert.Equal(0, CountInRow(lowAbove, 50, 0, Size - 1));
    }

    [Theory]
    [InlineData(200f, 100f, "got 200, 100")]
    [InlineData(-1f, 100f, "got -1, 100")]
    [InlineData(float.NaN, 100f, "got NaN, 100")]
    public void BadThresholdsAreRefusedWithTheValues(float low, float high, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => CannyEdges.Detect(new float[3 * 4 * 4], 4, 4, low, high));
        Assert.Contains("0 ≤ low ≤ high", error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void OutputIsWhiteOnBlackInAllThreeChannels()
    {
        var planes = Render((x, y) => x >= 32, 1.0);
        var output = CannyEdges.Detect(planes, Size, Size);
        int n = Size * Size;
        Assert.All(output, v => Assert.True(v is 0f or 1f));
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(output[i], output[n + i]);
            Assert.Equal(output[i], output[2 * n + i]);
        }
        Assert.Contains(1f, output);
    }

    private static bool[,] Detect(Func<int, int, bool> inside, double contrast = 1.0, double sigma = CannyEdges.DefaultBlurSigma,
        float low = CannyEdges.DefaultLow, float high = CannyEdges.DefaultHigh) =>
        ToGrid(CannyEdges.Detect(Render(inside, contrast), Size, Size, low, high, sigma));

    private static float[] Render(Func<int, int, bool> inside, double contrast)
    {
        var planes = new float[3 * Size * Size];
        for (int y = 0; y < Size; y++)
            for (int x = 0; x < Size; x++)
                if (inside(x, y))
                    for (int c = 0; c < 3; c++) planes[c * Size * Size + y * Size + x] = (float)contrast;
        return planes;
    }

    private static bool[,] ToGrid(float[] planes)
    {
        var grid = new bool[Size, Size];
        for (int y = 0; y < Size; y++)
            for (int x = 0; x < Size; x++) grid[y, x] = planes[y * Size + x] > 0.5f;
        return grid;
    }

    private static void AssertOnOutline(bool[,] edges, Func<double, double, double> distance, double tolerance)
    {
        for (int y = 0; y < Size; y++)
            for (int x = 0; x < Size; x++)
                if (edges[y, x])
                    Assert.True(distance(x, y) <= tolerance, $"edge pixel ({x}, {y}) is {distance(x, y):F2} px from the outline");
    }

    /// <summary>A line one pixel wide never fills a 2×2 block.</summary>
    private static void AssertThin(bool[,] edges)
    {
        for (int y = 0; y + 1 < Size; y++)
            for (int x = 0; x + 1 < Size; x++)
                Assert.False(edges[y, x] && edges[y, x + 1] && edges[y + 1, x] && edges[y + 1, x + 1], $"a 2×2 block of edges at ({x}, {y})");
    }

    private static double NearestEdge(bool[,] edges, double px, double py)
    {
        double best = double.MaxValue;
        for (int y = 0; y < Size; y++)
            for (int x = 0; x < Size; x++)
                if (edges[y, x]) best = Math.Min(best, Math.Sqrt((x - px) * (x - px) + (y - py) * (y - py)));
        return best;
    }

    private static int CountInRow(bool[,] edges, int y, int from, int to)
    {
        int n = 0;
        for (int x = from; x <= to; x++) if (edges[y, x]) n++;
        return n;
    }

    private static int CountInColumn(bool[,] edges, int x, int from, int to)
    {
        int n = 0;
        for (int y = from; y <= to; y++) if (edges[y, x]) n++;
        return n;
    }

    private static int Count(bool[,] edges)
    {
        int n = 0;
        foreach (var e in edges) if (e) n++;
        return n;
    }
}

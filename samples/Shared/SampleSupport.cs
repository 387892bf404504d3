// Shared by the samples (linked into each project, not copied): the repository root, the demo model, the output
// folder, and the hand-drawn-style inputs the image-to-image samples draw for themselves.
using Microsoft.ML.Data;
using MLNet.Diffusion.ModelBuilder.Demo;

namespace MLNet.Diffusion.Samples;

internal static class SampleSupport
{
    /// <summary>The repository root (the folder holding MLNet.Diffusion.sln), else the current folder.</summary>
    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MLNet.Diffusion.sln"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }

    /// <summary>The model folder: the first argument, else the demo model (built on first use into .demo-model/).</summary>
    public static string ModelFolder(string[] args)
    {
        if (args.Length > 0) return args[0];
        string dir = Path.Combine(RepoRoot(), ".demo-model");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        if (DemoModelBuilder.EnsureBuilt(dir))
            Console.WriteLine($"Built the demo model in {dir} ({clock.Elapsed.TotalSeconds:F1} s).");
        return dir;
    }

    /// <summary>out/<paramref name="name"/> under the repository root, created.</summary>
    public static string OutputFolder(string name)
    {
        string dir = Path.Combine(RepoRoot(), "out", name);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>
    /// A rough, hand-drawn-looking blob on a white <paramref name="size"/>² canvas: a filled closed outline around
    /// (<paramref name="cx"/>, <paramref name="cy"/>) whose radius wobbles by a few pixels (a sum of sines whose
    /// phases come from <paramref name="seed"/>), in a slightly uneven <paramref name="colour"/>.
    /// </summary>
    public static MLImage WobblyBlob(int size, float cx, float cy, float radius, (byte R, byte G, byte B) colour, int seed = 1)
    {
        var random = new Random(seed);
        double p1 = random.NextDouble() * 2 * Math.PI, p2 = random.NextDouble() * 2 * Math.PI, p3 = random.NextDouble() * 2 * Math.PI;
        var rgba = new byte[size * size * 4];
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
            {
                double dx = x + 0.5 - cx, dy = y + 0.5 - cy, angle = Math.Atan2(dy, dx);
                double edge = radius * (1 + 0.10 * Math.Sin(2 * angle + p1) + 0.06 * Math.Sin(3 * angle + p2) + 0.04 * Math.Sin(5 * angle + p3));
                bool inside = Math.Sqrt(dx * dx + dy * dy) <= edge;
                int o = 4 * (y * size + x);
                if (inside)
                {
                    int jitter = random.Next(-12, 13); // a marker's uneven ink
                    rgba[o] = (byte)Math.Clamp(colour.R + jitter, 0, 255);
                    rgba[o + 1] = (byte)Math.Clamp(colour.G + jitter / 2, 0, 255);
                    rgba[o + 2] = (byte)Math.Clamp(colour.B + jitter / 2, 0, 255);
                }
                else
                {
                    rgba[o] = rgba[o + 1] = rgba[o + 2] = 255;
                }
                rgba[o + 3] = 255;
            }
        return MLImage.CreateFromPixels(size, size, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>
    /// A rough five-pointed star on a white <paramref name="size"/>² canvas: outer points at <paramref name="radius"/> from
    /// (<paramref name="cx"/>, <paramref name="cy"/>), the first pointing up, inner corners at 0.6 of it, each corner moved by
    /// a pixel or two as a hand would (<paramref name="seed"/>).
    /// </summary>
    public static MLImage WobblyStar(int size, float cx, float cy, float radius, (byte R, byte G, byte B) colour, int seed = 1)
    {
        var random = new Random(seed);
        var corners = new (double X, double Y)[10];
        for (int i = 0; i < 10; i++)
        {
            double r = radius * (i % 2 == 0 ? 1 : 0.6) + random.NextDouble() * 3 - 1.5;
            double angle = -Math.PI / 2 + i * Math.PI / 5;
            corners[i] = (cx + r * Math.Cos(angle), cy + r * Math.Sin(angle));
        }
        var rgba = new byte[size * size * 4];
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
            {
                bool inside = false; // even-odd rule
                for (int i = 0, j = corners.Length - 1; i < corners.Length; j = i++)
                {
                    var (xi, yi) = corners[i];
                    var (xj, yj) = corners[j];
                    if ((yi > y + 0.5) != (yj > y + 0.5) && x + 0.5 < (xj - xi) * (y + 0.5 - yi) / (yj - yi) + xi) inside = !inside;
                }
                int o = 4 * (y * size + x);
                (rgba[o], rgba[o + 1], rgba[o + 2]) = inside ? colour : ((byte)255, (byte)255, (byte)255);
                rgba[o + 3] = 255;
            }
        return MLImage.CreateFromPixels(size, size, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>Images of the same height side by side, 4 grey pixels apart.</summary>
    public static MLImage SideBySide(params MLImage[] images)
    {
        int height = images[0].Height, gap = 4, width = images.Sum(i => i.Width) + gap * (images.Length - 1);
        var rgba = new byte[width * height * 4];
        Array.Fill(rgba, (byte)128);
        int left = 0;
        foreach (var image in images)
        {
            if (image.Height != height) throw new ArgumentException("The images must have the same height.", nameof(images));
            var pixels = image.Pixels; // BGRA or RGBA as the image holds them
            bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
            for (int y = 0; y < height; y++)
                for (int x = 0; x < image.Width; x++)
                {
                    int s = 4 * (y * image.Width + x), d = 4 * (y * width + left + x);
                    rgba[d] = pixels[bgra ? s + 2 : s];
                    rgba[d + 1] = pixels[s + 1];
                    rgba[d + 2] = pixels[bgra ? s : s + 2];
                    rgba[d + 3] = 255;
                }
            left += image.Width + gap;
        }
        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>A black mask with a white (repaint) rectangle [x0, x1) × [y0, y1).</summary>
    public static MLImage RectangleMask(int width, int height, int x0, int y0, int x1, int y1)
    {
        var rgba = new byte[width * height * 4];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                byte v = x >= x0 && x < x1 && y >= y0 && y < y1 ? (byte)255 : (byte)0;
                int o = 4 * (y * width + x);
                rgba[o] = rgba[o + 1] = rgba[o + 2] = v;
                rgba[o + 3] = 255;
            }
        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Rgba32, rgba);
    }
}

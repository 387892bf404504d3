using MLNet.Diffusion.ModelBuilder.Demo;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.Demo;

[Collection(DemoCollection.Name)]
public class DemoVaeTests(DemoModelFixture model, ITestOutputHelper output)
{
    private const int N = DemoDataset.ImageSize, H = N / 8;

    private static float[] Concat(IEnumerable<float[]> parts) => parts.SelectMany(p => p).ToArray();

    /// <summary>A rough "hand-drawn" sketch: a wobbly red disc and a wobbly blue triangle-ish blob, hard-edged, on white.</summary>
    private static (float[] Image, bool[] Red, bool[] Blue) Sketch()
    {
        var image = new float[3 * DemoImages.Plane];
        var red = new bool[DemoImages.Plane];
        var blue = new bool[DemoImages.Plane];
        var rng = new Random(7);
        for (int y = 0; y < N; y++)
            for (int x = 0; x < N; x++)
            {
                int i = y * N + x;
                double dx = x + 0.5 - 40, dy = y + 0.5 - 44, angle = Math.Atan2(dy, dx);
                double wobble = 22 * (1 + 0.07 * Math.Sin(3 * angle + 1) + 0.04 * Math.Sin(7 * angle));
                red[i] = Math.Sqrt(dx * dx + dy * dy) < wobble;
                double tx = x + 0.5 - 90, ty = y + 0.5 - 88;
                blue[i] = !red[i] && ty < 20 + 1.5 * Math.Sin(x / 3.0) && ty > -24 + 1.8 * Math.Abs(tx) && Math.Abs(tx) < 30;
                var (r, g, b) = red[i] ? (0.95f, 0.05f, 0.05f) : blue[i] ? (0.05f, 0.2f, 0.95f) : (1f, 1f, 1f);
                float noise = (float)(rng.NextDouble() * 0.04 - 0.02);
                image[i] = 2 * Math.Clamp(r + noise, 0, 1) - 1;
                image[DemoImages.Plane + i] = 2 * Math.Clamp(g + noise, 0, 1) - 1;
                image[2 * DemoImages.Plane + i] = 2 * Math.Clamp(b + noise, 0, 1) - 1;
            }
        return (image, red, blue);
    }

    [Fact]
    public void EncoderGraphMatchesReference()
    {
        var images = Concat(new[] { 0, 37, 151, 333, 455, 599 }.Select(k => DemoDataset.Render(DemoDataset.Items[k])).Append(Sketch().Image));
        var onnx = model.RunEncoder(images, N, N);
        var reference = DemoVae.Encode(images, N, N);
        Assert.Equal(reference.Length, onnx.Length);
        double max = 0;
        for (int i = 0; i < onnx.Length; i++) max = Math.Max(max, Math.Abs(onnx[i] - reference[i]));
        output.WriteLine($"encoder ONNX vs C#: max abs difference {max:E2} (unscaled latent units)");
        Assert.True(max < 2e-3, $"max difference {max}");
    }

    [Fact]
    public void DecoderGraphMatchesReference()
    {
        var rng = new Random(3);
        var random = Enumerable.Range(0, 4 * H * H).Select(_ => (float)(rng.NextDouble() * 8 - 4) / DemoVae.ScalingFactor).ToArray();
        var dataset = model.DatasetLatents.AsSpan(17 * DemoUnet.LatentLength, 2 * DemoUnet.LatentLength).ToArray().Select(v => v / DemoVae.ScalingFactor);
        var latents = random.Concat(dataset).ToArray();
        var onnx = model.RunDecoder(latents, H, H);
        var reference = DemoVae.Decode(latents, H, H);
        double max = 0;
        for (int i = 0; i < onnx.Length; i++) max = Math.Max(max, Math.Abs(onnx[i] - reference[i]));
        output.WriteLine($"decoder ONNX vs C#: max abs difference {max:E2}");
        Assert.True(max < 2e-3, $"max difference {max}");
        Assert.All(onnx, v => Assert.InRange(v, -1f, 1f));
    }

    [Fact]
    public void DatasetImagesComeBackCrisp()
    {
        // Dataset images decoded by the ONNX decoder from their latents (the reference encoder's, which the ONNX
        // encoder matches: see EncoderGraphMatchesReference and, for a sample of images, the round trip below): every
        // geometry (shape, size, position) in three of the fifteen colour and background pairs, every pair used.
        var items = DemoDataset.Items.Where(i => (i.Colour * 3 + i.Background) % 5 == (int)i.Position).ToList();
        var latents = model.DatasetLatents.Select(v => v / DemoVae.ScalingFactor).ToArray();
        double sumSq = 0, sumAbs = 0, maxAbs = 0, worstImage = double.MaxValue;
        long count = 0, off = 0;
        var perShape = new double[4];
        const int chunk = 40, plane3 = 3 * DemoImages.Plane;
        for (int start = 0; start < items.Count; start += chunk)
        {
            var decoded = model.RunDecoder(items.Skip(start).Take(chunk)
                .SelectMany(i => latents.AsSpan(i.Index * DemoUnet.LatentLength, DemoUnet.LatentLength).ToArray()).ToArray(), H, H);
            for (int k = 0; k < chunk; k++)
            {
                var image = DemoDataset.Render(items[start + k]);
                double se = 0;
                for (int i = 0; i < plane3; i++)
                {
                    double e = Math.Abs(decoded[k * plane3 + i] - image[i]);
                    se += e * e;
                    sumAbs += e;
                    maxAbs = Math.Max(maxAbs, e);
                    if (e > 0.2) off++;
                }
                sumSq += se;
                count += plane3;
                worstImage = Math.Min(worstImage, 10 * Math.Log10(4 / (se / plane3)));
                perShape[(int)items[start + k].Shape] += se / plane3 / (items.Count / 4);
            }
        }
        double mse = sumSq / count, psnr = 10 * Math.Log10(4 / mse); // peak-to-peak 2 on [−1, 1]
        output.WriteLine($"VAE reconstruction of {items.Count} dataset images (values in [−1, 1]): mean abs {sumAbs / count:E2}, max abs {maxAbs:F2}, " +
                         $"PSNR {psnr:F1} dB (worst image {worstImage:F1} dB), values off by > 0.2: {100.0 * off / count:F2} %");
        for (int s = 0; s < 4; s++) output.WriteLine($"  {(DemoShape)s}: PSNR {10 * Math.Log10(4 / perShape[s]):F1} dB");
        Assert.True(psnr > 34, $"PSNR {psnr}");
        Assert.True(worstImage > 25, $"worst image PSNR {worstImage}");
        Assert.True((double)off / count < 0.005, "too many wrong values: edges are not where they should be");

        // The full ONNX round trip (encoder then decoder) on every 25th image.
        var sample = Concat(items.Where(i => i.Index % 25 == 0).Select(DemoDataset.Render));
        var roundTrip = model.RunDecoder(model.RunEncoder(sample, N, N), H, H);
        double se2 = 0;
        for (int i = 0; i < sample.Length; i++) se2 += (roundTrip[i] - sample[i]) * (double)(roundTrip[i] - sample[i]);
        double psnr2 = 10 * Math.Log10(4 / (se2 / sample.Length));
        output.WriteLine($"ONNX encoder + decoder on {sample.Length / plane3} images: PSNR {psnr2:F1} dB");
        Assert.True(psnr2 > 33, $"round-trip PSNR {psnr2}");
    }

    [Fact]
    public void ScaledDatasetLatentsHaveAboutUnitVariance()
    {
        var z = model.DatasetLatents;
        double mean = z.Average(v => (double)v), std = Math.Sqrt(z.Average(v => (v - mean) * (v - mean)));
        output.WriteLine($"scaled dataset latents (scaling_factor {DemoVae.ScalingFactor}): mean {mean:F3}, std {std:F3}");
        Assert.InRange(std, 0.8, 1.25);
        Assert.InRange(mean, -0.2, 0.2);
    }

    [Fact]
    public void SketchDecodesToSomethingRecognisable()
    {
        var (image, red, blue) = Sketch();
        var decoded = model.RunDecoder(model.RunEncoder(image, N, N), H, H);
        var redBack = DemoImages.Mask(decoded, DemoDataset.ShapeColours[0], 0.25f);
        var blueBack = DemoImages.Mask(decoded, DemoDataset.ShapeColours[3], 0.25f);
        var whiteBack = DemoImages.Mask(decoded, DemoDataset.BackgroundColours[0], 0.1f);
        double redIoU = DemoImages.IoU(red, redBack), blueIoU = DemoImages.IoU(blue, blueBack);
        int background = 0, whiteBackground = 0;
        for (int i = 0; i < red.Length; i++)
            if (!red[i] && !blue[i]) { background++; if (whiteBack[i]) whiteBackground++; }
        output.WriteLine($"sketch: red IoU {redIoU:F3}, blue IoU {blueIoU:F3}, background still white {100.0 * whiteBackground / background:F1} %");
        Assert.True(redIoU > 0.9, $"red IoU {redIoU}");
        Assert.True(blueIoU > 0.8, $"blue IoU {blueIoU}");
        Assert.True(whiteBackground > 0.97 * background);
    }

    /// <summary>
    /// Small shapes keep their form through the latent: decoded from its dataset latent, a small star shows five tips,
    /// a small square four corners, a small triangle three, and a small circle none. A corner or tip is a local maximum
    /// of the outline's distance from the centroid (over ±18°) standing at least <see cref="CornerProminence"/> of the
    /// largest distance above the lowest point within ±36° of it.
    /// </summary>
    [Theory]
    [InlineData(DemoShape.Circle, 0)]
    [InlineData(DemoShape.Square, 4)]
    [InlineData(DemoShape.Triangle, 3)]
    [InlineData(DemoShape.Star, 5)]
    public void SmallShapesKeepTheirCorners(DemoShape shape, int corners)
    {
        foreach (var position in new[] { DemoPosition.Center, DemoPosition.TopRight })
        {
            var item = DemoDataset.Items.First(i => i.Shape == shape && i.Size == DemoSize.Small && i.Position == position && i.Colour == 3 && i.Background == 1);
            var latent = model.DatasetLatents.AsSpan(item.Index * DemoUnet.LatentLength, DemoUnet.LatentLength).ToArray().Select(v => v / DemoVae.ScalingFactor).ToArray();
            var region = DemoImageClassifier.ShapeRegion(model.RunDecoder(latent, H, H));
            var (found, prominence) = Corners(region);
            output.WriteLine($"{item.Caption}: {found.Count} corners at {string.Join(", ", found.Select(a => $"{a}°"))}; prominence of each: {string.Join(", ", prominence.Select(p => p.ToString("P0")))}");
            Assert.Equal(corners, found.Count);
        }
    }

    /// <summary>The least height of a corner above its surroundings, as a fraction of the largest centroid distance.</summary>
    public const double CornerProminence = 0.12;

    /// <summary>The outline's corners: (angles in degrees, their prominences) seen from the region's centroid.</summary>
    private static (List<int> Angles, List<double> Prominence) Corners(bool[] region)
    {
        double cx = 0, cy = 0;
        int area = 0;
        for (int y = 0; y < N; y++)
            for (int x = 0; x < N; x++)
                if (region[y * N + x]) { cx += x + 0.5; cy += y + 0.5; area++; }
        cx /= area;
        cy /= area;
        var radius = new double[360];
        for (int a = 0; a < 360; a++)
        {
            double dx = Math.Cos(a * Math.PI / 180), dy = Math.Sin(a * Math.PI / 180), r = 0;
            while (true)
            {
                int x = (int)Math.Floor(cx + (r + 0.25) * dx), y = (int)Math.Floor(cy + (r + 0.25) * dy);
                if (x < 0 || y < 0 || x >= N || y >= N || !region[y * N + x]) break;
                r += 0.25;
            }
            radius[a] = r;
        }
        var smooth = Enumerable.Range(0, 360).Select(a => Enumerable.Range(-2, 5).Average(d => radius[(a + d + 360) % 360])).ToArray();
        double max = smooth.Max();
        var angles = new List<int>();
        var prominence = new List<double>();
        for (int a = 0; a < 360; a++)
        {
            bool peak = Enumerable.Range(-18, 37).All(d => d == 0 || smooth[(a + d + 360) % 360] < smooth[a] || (smooth[(a + d + 360) % 360] == smooth[a] && d > 0));
            if (!peak) continue;
            double low = Enumerable.Range(-36, 73).Min(d => smooth[(a + d + 360) % 360]);
            if ((smooth[a] - low) / max < CornerProminence) continue;
            angles.Add(a);
            prominence.Add((smooth[a] - low) / max);
        }
        return (angles, prominence);
    }

    [Fact]
    public void AnyLatentDecodesToAPicture()
    {
        // Noise, overshoot and blends of two dataset latents: every pixel is a mix of a palette colour and a grey.
        var rng = new Random(11);
        var noise = Enumerable.Range(0, 4 * H * H).Select(_ => (float)(rng.NextDouble() * 6 - 3) / DemoVae.ScalingFactor);
        var a = model.DatasetLatents.AsSpan(5 * DemoUnet.LatentLength, DemoUnet.LatentLength).ToArray();
        var b = model.DatasetLatents.AsSpan(400 * DemoUnet.LatentLength, DemoUnet.LatentLength).ToArray();
        var blend = a.Zip(b, (x, y) => (0.5f * x + 0.5f * y) / DemoVae.ScalingFactor);
        var overshoot = a.Zip(b, (x, y) => (x + 3 * (x - y)) / DemoVae.ScalingFactor);
        var decoded = model.RunDecoder(noise.Concat(blend).Concat(overshoot).ToArray(), H, H);
        Assert.All(decoded, v => Assert.True(float.IsFinite(v) && v >= -1 && v <= 1));
    }
}

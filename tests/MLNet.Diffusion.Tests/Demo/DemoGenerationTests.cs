using System.Diagnostics;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.Demo;

/// <summary>Text to image with the demo model through a plain DDIM loop written here (η = 0, 25 steps, CFG 7.5).</summary>
[Collection(DemoCollection.Name)]
public class DemoGenerationTests(DemoModelFixture model, ITestOutputHelper output)
{
    private const int Steps = 25;
    private const float Guidance = 7.5f;

    /// <summary>Generates one image; returns the final latent (scaled) and the decoded image.</summary>
    private (float[] Latent, float[] Image) Generate(string prompt, long seed)
    {
        var alphas = SchedulerMath.AlphasCumprod(SchedulerMath.Betas(
            SchedulerConfig.Load(Path.Combine(model.Folder, "scheduler", "scheduler_config.json")), DemoUnet.TrainTimesteps));
        var timesteps = SchedulerMath.SpacedTimesteps("leading", DemoUnet.TrainTimesteps, Steps, 1, roundToInteger: true);
        var (hidden, _) = model.EncodeText("", prompt);
        int n = DemoUnet.LatentLength;
        var x = new float[n];
        new GaussianNoise(seed).Fill(x);
        var pair = new float[2 * n];
        for (int s = 0; s < Steps; s++)
        {
            int t = (int)timesteps[s];
            double a = alphas[t], aPrev = s + 1 < Steps ? alphas[(int)timesteps[s + 1]] : alphas[0];
            x.CopyTo(pair, 0);
            x.CopyTo(pair, n);
            var eps = model.RunUnet(pair, [t, t], hidden);
            for (int i = 0; i < n; i++)
            {
                double e = eps[i] + Guidance * (eps[n + i] - eps[i]);
                double x0 = (x[i] - Math.Sqrt(1 - a) * e) / Math.Sqrt(a);
                x[i] = (float)(Math.Sqrt(aPrev) * x0 + Math.Sqrt(1 - aPrev) * e);
            }
        }
        var image = model.RunDecoder(x.Select(v => v / DemoVae.ScalingFactor).ToArray(), DemoUnet.LatentSize, DemoUnet.LatentSize);
        return (x, image);
    }

    [Fact]
    public void RedCirclePromptDrawsARedCircle()
    {
        var clock = Stopwatch.StartNew();
        var (latent, image) = Generate("a red circle", 1);
        double seconds = clock.Elapsed.TotalSeconds;
        var (item, distance) = DemoImages.Nearest(latent, model.DatasetLatents);
        output.WriteLine($"\"a red circle\", seed 1: {Steps}-step DDIM with CFG {Guidance} took {seconds:F2} s; nearest dataset image \"{item.Caption}\" (relative latent distance {distance:F3})");
        Assert.Equal(DemoShape.Circle, item.Shape);
        Assert.Equal("red", DemoDataset.ShapeColours[item.Colour].Name);

        var red = DemoImages.Mask(image, DemoDataset.ShapeColours[0]);
        var disc = DemoImages.ShapeMask(item);
        double iou = DemoImages.IoU(red, disc), fill = DemoImages.BoxFill(red);
        var bg = DemoDataset.BackgroundColours[item.Background];
        var background = DemoImages.Mask(image, bg, 0.05f);
        int outside = 0, backgroundOutside = 0;
        for (int i = 0; i < red.Length; i++)
            if (!disc[i]) { outside++; if (background[i]) backgroundOutside++; }
        output.WriteLine($"red pixels vs the disc: IoU {iou:F3}; red area / bounding box {fill:F3} (disc π/4 = 0.785); {100.0 * backgroundOutside / outside:F1} % of the rest is {bg.Name}");
        Assert.True(iou > 0.9, $"IoU {iou}");
        Assert.InRange(fill, 0.72, 0.85);
        Assert.True(backgroundOutside > 0.97 * outside);
    }

    [Fact]
    public void DifferentSeedsGiveDifferentMatchingImages()
    {
        var found = new HashSet<int>();
        foreach (long seed in new long[] { 2, 3, 4, 5 })
        {
            var (latent, _) = Generate("a red circle", seed);
            var (item, distance) = DemoImages.Nearest(latent, model.DatasetLatents);
            Assert.Equal(DemoShape.Circle, item.Shape);
            Assert.Equal(0, item.Colour);
            Assert.True(distance < 0.05, $"seed {seed}: relative distance {distance}");
            found.Add(item.Index);
        }
        Assert.True(found.Count >= 2, "every seed gave the same image");
        // Same seed, same image.
        Assert.Equal(Generate("a red circle", 2).Image, Generate("a red circle", 2).Image);
    }

    [Fact]
    public void UnknownWordsStillGiveAValidImage()
    {
        var (latent, image) = Generate("an astronaut riding a horse on mars", 9);
        Assert.All(image, v => Assert.True(float.IsFinite(v) && v >= -1 && v <= 1));
        var (item, distance) = DemoImages.Nearest(latent, model.DatasetLatents);
        output.WriteLine($"out-of-vocabulary prompt gave \"{item.Caption}\" (relative latent distance {distance:F3})");
        Assert.True(distance < 0.05);
    }
}

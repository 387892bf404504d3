using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Demo;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.ModelBuilder;

/// <summary>
/// Text to image with the demo XL model's graphs through a DDIM loop written here (η = 0, 12 steps, CFG 7.5), with SDXL's
/// conditioning: the two penultimate hidden states concatenated, text_embeds as the pooled embedding, default time ids,
/// and zeros for the negative (force_zeros_for_empty_prompt).
/// </summary>
[Collection(DemoXlCollection.Name)]
public class DemoXlGenerationTests(DemoXlModelFixture model, ITestOutputHelper output)
{
    private const int Steps = 12;
    private const float Guidance = 7.5f;

    private float[] Generate(string prompt, long seed, float[] timeIdsRow) => ReferenceLoop(model, prompt, seed, timeIdsRow, Steps, Guidance);

    /// <summary>DDIM (η = 0, leading spacing, steps_offset 1, ᾱ_prev of the last step = ᾱ_0) written out over the graphs.</summary>
    internal static float[] ReferenceLoop(DemoXlModelFixture model, string prompt, long seed, float[] timeIdsRow, int steps, float guidance)
    {
        var alphas = DemoUnet.AlphasCumprod();
        var timesteps = SchedulerMath.SpacedTimesteps("leading", DemoUnet.TrainTimesteps, steps, 1, roundToInteger: true);
        var (positive, pooled) = model.Condition(prompt);
        var context = new float[2 * positive.Length];
        positive.CopyTo(context, positive.Length);       // row 0: zeros (negative), row 1: the prompt
        var pooledPair = new float[2 * pooled.Length];
        pooled.CopyTo(pooledPair, pooled.Length);
        var timeIds = timeIdsRow.Concat(timeIdsRow).ToArray();
        int n = DemoUnet.LatentLength;
        var x = new float[n];
        new GaussianNoise(seed).Fill(x);
        var pair = new float[2 * n];
        for (int s = 0; s < steps; s++)
        {
            int t = (int)timesteps[s];
            double a = alphas[t], aPrev = s + 1 < steps ? alphas[(int)timesteps[s + 1]] : alphas[0];
            x.CopyTo(pair, 0);
            x.CopyTo(pair, n);
            var eps = model.RunUnet(pair, [t, t], context, pooledPair, timeIds);
            for (int i = 0; i < n; i++)
            {
                double e = eps[i] + guidance * (eps[n + i] - eps[i]);
                double x0 = (x[i] - Math.Sqrt(1 - a) * e) / Math.Sqrt(a);
                x[i] = (float)(Math.Sqrt(aPrev) * x0 + Math.Sqrt(1 - aPrev) * e);
            }
        }
        return x;
    }

    [Theory]
    [InlineData("a red circle", "red", DemoShape.Circle, 1)]
    [InlineData("a green square on a black background", "green", DemoShape.Square, 2)]
    [InlineData("a large blue star", "blue", DemoShape.Star, 3)]
    public void DrawsWhatThePromptAsks(string prompt, string colour, DemoShape shape, long seed)
    {
        var latent = Generate(prompt, seed, [256, 256, 0, 0, 256, 256]);
        var (item, distance) = DemoImages.Nearest(latent, model.DatasetLatents);
        output.WriteLine($"\"{prompt}\", seed {seed}: nearest dataset image \"{item.Caption}\" (relative latent distance {distance:F3})");
        Assert.Equal(shape, item.Shape);
        Assert.Equal(colour, DemoDataset.ShapeColours[item.Colour].Name);
        Assert.True(distance < 0.05, $"relative distance {distance}");

        // The decoded picture through the demo's colour classifier.
        int side = DemoDataset.ImageSize;
        var image = model.RunDecoder(latent.Select(v => v / DemoVae.ScalingFactor).ToArray(), DemoUnet.LatentSize, DemoUnet.LatentSize);
        var path = model.Scratch($"classifier-{side}.onnx");
        lock (model) if (!File.Exists(path)) DemoColorClassifier.Write(path, side);
        using var classifier = new InferenceSession(path);
        var pixels = image.Select(v => Math.Clamp(v / 2 + 0.5f, 0f, 1f)).ToArray();
        using var input = OrtValue.CreateTensorValueFromMemory(pixels, [1, pixels.Length]);
        using var scores = classifier.Run(new RunOptions(), [DemoColorClassifier.InputName], [input], [DemoColorClassifier.OutputName]);
        var s = scores[0].GetTensorDataAsSpan<float>().ToArray();
        output.WriteLine($"colour scores (red, green, blue): {string.Join(", ", s.Select(v => v.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)))}");
        Assert.Equal(colour, DemoColorClassifier.Labels[Array.IndexOf(s, s.Max())]);
    }

    [Fact]
    public void TheFullCaptionIsDrawnExactlyAndATinyOriginalSizeLetsItGo()
    {
        const string prompt = "a small yellow triangle in the bottom right corner on a gray background";
        var target = DemoDataset.Items.Single(i => i.Caption == prompt);
        int exact = 0, loose = 0;
        for (long seed = 1; seed <= 4; seed++)
        {
            if (DemoImages.Nearest(Generate(prompt, seed, [256, 256, 0, 0, 256, 256]), model.DatasetLatents).Item == target) exact++;
            // Original size 8×8 for a 256×256 target: r = 1/1024, the prompt barely matters.
            if (DemoImages.Nearest(Generate(prompt, seed, [8, 8, 0, 0, 256, 256]), model.DatasetLatents).Item == target) loose++;
        }
        output.WriteLine($"full caption drawn exactly: {exact}/4 at the default time ids, {loose}/4 at original size 8×8");
        Assert.Equal(4, exact);
        Assert.True(loose <= 1, $"{loose} of 4 still drew the captioned image");
    }
}

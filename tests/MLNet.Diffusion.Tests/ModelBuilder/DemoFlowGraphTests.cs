using System.Security.Cryptography;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Tests.Demo;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.ModelBuilder;

/// <summary>
/// The demo flow model's graphs: the folder is a Stable Diffusion 3 model to the library, the transformer is the closed-form
/// flow-matching velocity of the demo dataset under the demo's prior, the T5 tokenizer.json reads as written, the 16-channel
/// VAE is the demo's, and building is deterministic.
/// </summary>
[Collection(DemoFlowCollection.Name)]
public class DemoFlowGraphTests(DemoFlowModelFixture model, ITestOutputHelper output)
{
    [Fact]
    public void TheFolderLoadsAsStableDiffusion3()
    {
        var pipeline = model.Pipeline;
        Assert.Equal(ModelFamily.StableDiffusion3, pipeline.Family);
        Assert.Equal(DemoDataset.ImageSize, pipeline.DefaultSize);
        Assert.True(DemoFlowModelBuilder.IsCurrent(model.Folder));
        Assert.False(DemoModelBuilder.IsCurrent(model.Folder));
    }

    /// <summary>
    /// The velocity written out here in 16 channels, independently of the builder's reference: v = (x − Σ w_k x₀ₖ)/σ with
    /// x₀ₖ = E·z_k and w_k ∝ exp(8 · prompt · a_k − ‖x − (1 − σ) x₀ₖ‖² / (2σ²)), the prompt's attributes pooled from its words
    /// (the demo model's prior); the conditioning comes from the folder's three encoders in SD3's layout.
    /// </summary>
    [Theory]
    [InlineData("a small yellow triangle in the bottom right corner on a gray background", 0.93f)]
    [InlineData("a red circle", 0.4f)]
    [InlineData("a large blue star at the top left", 0.05f)]
    public void TheTransformerGivesTheMixturesVelocity(string prompt, float sigma)
    {
        const int t5Length = 16;
        int n = DemoFlowTransformer.LatentLength, plane = DemoUnet.LatentSize * DemoUnet.LatentSize;
        var (context, pooled) = model.Condition(prompt, t5Length);
        var (empty, emptyPooled) = (new float[context.Length], new float[pooled.Length]);
        var wide = DemoFlowVae.Widen(model.DatasetLatents, plane);
        int count = DemoDataset.Items.Count;

        // x: a noised dataset image (plus noise outside E's span) for the prompt's row, pure noise for the empty row.
        var noise = new float[2 * n];
        new GaussianNoise(7).Fill(noise);
        var x = new float[2 * n];
        int target = DemoDataset.Items.ToList().FindIndex(i => DemoVocabulary.Pool(prompt).Select((v, s) => v > 0 ? DemoVocabulary.AttributeVector(i)[s] > 0 : true).All(b => b));
        for (int i = 0; i < n; i++)
        {
            x[i] = (1 - sigma) * wide[target * n + i] + sigma * noise[i];
            x[n + i] = noise[n + i];
        }
        float[] timesteps = [1000 * sigma, 1000 * 0.7f];
        var actual = model.RunTransformer(x, timesteps, [.. context, .. empty], [.. pooled, .. emptyPooled]);

        var promptVector = DemoVocabulary.Pool(prompt);
        double maxError = 0, maxValue = 0;
        for (int b = 0; b < 2; b++)
        {
            double s = timesteps[b] / 1000.0;
            var logits = new double[count];
            for (int k = 0; k < count; k++)
            {
                double prior = 0, dist = 0;
                if (b == 0) for (int i = 0; i < promptVector.Length; i++) prior += 8 * promptVector[i] * model.CaptionEmbeddings[k * promptVector.Length + i];
                for (int i = 0; i < n; i++)
                {
                    double r = x[b * n + i] - (1 - s) * wide[k * n + i];
                    dist += r * r;
                }
                logits[k] = prior - dist / (2 * s * s);
            }
            double max = logits.Max();
            var w = logits.Select(l => Math.Exp(l - max)).ToArray();
            double total = w.Sum();
            for (int i = 0; i < n; i++)
            {
                double x0 = 0;
                for (int k = 0; k < count; k++) x0 += w[k] / total * wide[k * n + i];
                double expected = (x[b * n + i] - x0) / s;
                maxError = Math.Max(maxError, Math.Abs(actual[b * n + i] - expected));
                maxValue = Math.Max(maxValue, Math.Abs(expected));
            }
        }
        output.WriteLine($"σ = {sigma}: max |v − v_closed| = {maxError:E2} (max |v| {maxValue:F2})");
        Assert.True(maxError < 2e-3 * Math.Max(1, maxValue), $"max error {maxError} for max |v| {maxValue}");

        // The builder's double-precision reference agrees too.
        var reference = DemoFlowTransformer.Predict(x, timesteps, [.. context, .. empty], [.. pooled, .. emptyPooled], model.DatasetLatents, model.CaptionEmbeddings);
        double referenceError = actual.Zip(reference, (a, r) => Math.Abs(a - r)).Max();
        Assert.True(referenceError < 2e-3 * Math.Max(1, maxValue), $"reference error {referenceError}");
    }

    [Fact]
    public void EachConditioningInputCarriesItsOwnAttributes()
    {
        // The prior over the images from the folder's encoders is the demo model's, and each input alone carries only its part.
        const string prompt = "a small yellow triangle in the bottom right corner on a gray background";
        var (context, pooled) = model.Condition(prompt, 32);
        var demo = DemoUnet.PriorWeights(DemoVocabulary.Pool(prompt), model.CaptionEmbeddings);
        var flow = Softmax(DemoFlowTransformer.LogPriors(context, pooled, 1, model.CaptionEmbeddings)[0]);
        double priorError = demo.Zip(flow, (a, b) => Math.Abs(a - b)).Max();
        output.WriteLine($"max prior difference {priorError:E2}");
        Assert.True(priorError < 1e-6, $"prior difference {priorError}");

        var (withoutT5, _) = model.Condition(prompt, 32, withT5: false);
        var noPlace = Softmax(DemoFlowTransformer.LogPriors(withoutT5, pooled, 1, model.CaptionEmbeddings)[0]);
        var best = DemoDataset.Items.Select((item, k) => (item, w: noPlace[k])).Where(p => p.w > 0.1).Select(p => p.item).ToList();
        Assert.Equal(5, best.Count);   // the five places of the captioned shape, colour, size and background
        Assert.All(best, i => Assert.Equal(DemoShape.Triangle, i.Shape));
        Assert.Equal(5, best.Select(i => i.Position).Distinct().Count());
    }

    [Fact]
    public void TheT5TokenizerJsonReadsAsWritten()
    {
        int Id(string piece) => DemoT5TextEncoder.Pieces().Select(p => p.Piece).ToList().IndexOf(piece);
        var ids = model.T5.Encode("a red  Circle at the top-left, zebra!", 24, out bool truncated);
        int[] expected =
        [
            Id("▁a"), Id("▁red"), Id("▁Circle"), Id("▁at"), Id("▁the"), Id("▁top"), Id("-"), Id("l"), Id("e"), Id("f"), Id("t"), Id(","),
            Id("▁"), Id("z"), Id("e"), Id("b"), Id("r"), Id("a"), Id("!"), DemoT5TextEncoder.EosId, 0, 0, 0, 0,
        ];
        Assert.False(truncated);
        Assert.DoesNotContain(-1, expected);
        Assert.Equal(expected, ids);
        var whole = model.T5.Encode("left  ±", 8, out _);
        Assert.Equal([Id("▁left"), Id("▁"), DemoT5TextEncoder.UnknownId, DemoT5TextEncoder.EosId, 0, 0, 0, 0], whole);
    }

    [Fact]
    public void TheVaeIsTheDemosSpreadOverSixteenChannels()
    {
        var e = DemoFlowVae.ChannelMap();
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                Assert.Equal(a == b ? 1f : 0f, Enumerable.Range(0, 16).Sum(c => e[c * 4 + a] * e[c * 4 + b]), 6);

        var item = DemoDataset.Items.First(i => i.Caption.Contains("purple", StringComparison.Ordinal));
        var image = DemoDataset.Render(item);
        var options = new SessionOptions { IntraOpNumThreads = 2 };
        using var encoder = new InferenceSession(Path.Combine(model.Folder, "vae_encoder", "model.onnx"), options);
        using var decoder = new InferenceSession(Path.Combine(model.Folder, "vae_decoder", "model.onnx"), options);
        int size = DemoDataset.ImageSize, plane = DemoUnet.LatentSize * DemoUnet.LatentSize;
        using var pixels = OrtValue.CreateTensorValueFromMemory(image, [1, 3, size, size]);
        using var encoded = encoder.Run(new RunOptions(), ["sample"], [pixels], ["latent_sample"]);
        var latent16 = encoded[0].GetTensorDataAsSpan<float>().ToArray();
        Assert.Equal(16 * plane, latent16.Length);

        // (z − shift) · scale = E · (the demo's scaled latent).
        var demoScaled = DemoVae.Encode(image, size, size).Select(v => v * DemoVae.ScalingFactor).ToArray();
        var expected = DemoFlowVae.Widen(demoScaled, plane);
        double error = latent16.Select((v, i) => Math.Abs((v - DemoFlowVae.ShiftFactor) * DemoVae.ScalingFactor - expected[i])).Max();
        Assert.True(error < 1e-4, $"encoder error {error}");

        // The 16-channel latent decodes to the demo decoder's picture.
        using var latentValue = OrtValue.CreateTensorValueFromMemory(latent16, [1, 16, DemoUnet.LatentSize, DemoUnet.LatentSize]);
        using var decoded = decoder.Run(new RunOptions(), ["latent_sample"], [latentValue], ["sample"]);
        var picture = decoded[0].GetTensorDataAsSpan<float>().ToArray();
        var demoPicture = DemoVae.Decode(demoScaled.Select(v => v / DemoVae.ScalingFactor).ToArray(), DemoUnet.LatentSize, DemoUnet.LatentSize);
        double pictureError = picture.Zip(demoPicture, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(pictureError < 2e-3, $"decoder error {pictureError}");
    }

    [Fact]
    public void BuildingIsDeterministic()
    {
        var second = model.Scratch("again");
        DemoFlowModelBuilder.Build(second);
        var files = Directory.GetFiles(model.Folder, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(model.Folder, f)).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(files, Directory.GetFiles(second, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(second, f)).Order(StringComparer.Ordinal));
        foreach (var file in files)
            Assert.True(SHA256.HashData(File.ReadAllBytes(Path.Combine(model.Folder, file))).AsSpan()
                .SequenceEqual(SHA256.HashData(File.ReadAllBytes(Path.Combine(second, file)))), $"{file} differs between two builds");
        Assert.Contains(DemoFlowModelBuilder.Version, File.ReadAllText(Path.Combine(second, DemoModelBuilder.StampFile)));
        Assert.Contains("tokenizer_3", files.Select(f => Path.GetDirectoryName(f)));
        output.WriteLine($"{files.Count} files, {DemoModelBuilder.FolderSize(second):N0} bytes");
    }

    [Fact]
    public void DemoModelBuildsTheFlowSiblingIntoItsOwnFolderOnce()
    {
        Assert.EndsWith("demo-flow-model", DemoModel.FlowDirectory);
        Assert.DoesNotContain(DemoModel.FlowDirectory, new[] { DemoModel.Directory, DemoModel.XlDirectory });
        var folder = model.Scratch("cache/demo-flow-model");
        var lines = new List<string>();
        Assert.Equal(folder, DemoModel.EnsureBuiltFlow(folder, lines.Add));
        Assert.Equal(2, lines.Count);
        Assert.Contains("demo flow model", lines[0]);
        Assert.True(DemoFlowModelBuilder.IsCurrent(folder));
        DemoModel.EnsureBuiltFlow(folder, lines.Add);
        Assert.Equal(2, lines.Count);
    }

    private static double[] Softmax(double[] logits)
    {
        double max = logits.Max();
        var w = logits.Select(l => Math.Exp(l - max)).ToArray();
        double total = w.Sum();
        return w.Select(v => v / total).ToArray();
    }

    [Fact]
    public void CommandLineBuildsTheFlowModel()
    {
        using var dir = new Cli.TempDir();
        var previous = Console.Out;
        var text = new StringWriter();
        Console.SetOut(text);
        try
        {
            Assert.Equal(0, MLNet.Diffusion.ModelBuilder.Program.Main(["demo-flow", "--out", dir["flow"]]));
        }
        finally
        {
            Console.SetOut(previous);
        }
        Assert.Contains(DemoFlowModelBuilder.Version, text.ToString());
        Assert.True(DemoFlowModelBuilder.IsCurrent(dir["flow"]));
    }
}

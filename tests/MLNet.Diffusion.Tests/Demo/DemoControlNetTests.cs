using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Tests.Demo;

/// <summary>
/// The demo's outline ControlNet and ControlNet-ready UNet: zero residuals leave the demo UNet's answer unchanged, and
/// an outline traced in the control image gives its own geometry the highest score.
/// </summary>
[Collection(DemoCollection.Name)]
public sealed class DemoControlNetTests(DemoModelFixture model)
{
    private static readonly Lazy<InferenceSession> ControlNet = new(() => new InferenceSession(DemoControlNet.BuildControlNet().ToBytes()));
    private static readonly Lazy<InferenceSession> ReadyUNet = new(() =>
        new InferenceSession(DemoControlNet.BuildReadyUNet(DemoLatentTable.Create(), DemoUnet.CaptionEmbeddings()).ToBytes()));

    [Fact]
    public void ZeroResidualsGiveThePlainUNetsAnswer()
    {
        var sample = new float[2 * DemoUnet.LatentLength];
        new GaussianNoise(3).Fill(sample);
        var (hidden, _) = model.EncodeText("a red circle", "");
        float[] timesteps = [600f, 600f];
        var residuals = Enumerable.Range(0, DemoControlNet.DownCount + 1).Select(i => new float[2 * Length(i)]).ToArray();
        Assert.Equal(model.RunUnet(sample, timesteps, hidden), RunReady(sample, timesteps, hidden, residuals));
    }

    [Fact]
    public void ScoresRaiseTheGeometryWhoseOutlineIsTraced()
    {
        var firstOfGeometry = DemoDataset.Items.GroupBy(DemoLatentTable.GeometryIndex).Select(g => g.First()).ToArray();
        var misses = new List<string>();
        foreach (var item in firstOfGeometry)
        {
            var scores = Scores(Outline(item));
            int traced = DemoLatentTable.GeometryIndex(item);
            int runnerUp = Enumerable.Range(0, scores.Length).Where(g => g != traced).MaxBy(g => scores[g]);
            if (!(scores[traced] > scores[runnerUp] + 3))
                misses.Add($"{item.Shape} {item.Size} {item.Position}: its outline scores {scores[traced]:F2}, geometry {runnerUp} {scores[runnerUp]:F2}");
        }
        Assert.True(misses.Count == 0, string.Join("\n", misses));
        Assert.All(Scores(new float[3 * DemoDataset.ImageSize * DemoDataset.ImageSize]), s => Assert.Equal(0f, s));
    }

    [Fact]
    public void TheMidResidualCarriesTheScoresIntoTheUNetsPrior()
    {
        // With the mid residual (and the last down residual) set to a score for one geometry, the UNet's answer equals the
        // posterior mean whose log prior gains that score for the images of that geometry.
        var sample = new float[DemoUnet.LatentLength];
        new GaussianNoise(11).Fill(sample);
        var (hidden, _) = model.EncodeText("a blue shape");
        int geometry = 17;
        var residuals = Enumerable.Range(0, DemoControlNet.DownCount + 1).Select(i => new float[Length(i)]).ToArray();
        foreach (int i in new[] { DemoControlNet.DownCount - 1, DemoControlNet.DownCount })
        {
            int side = DemoControlNet.ResidualSide(i);
            for (int p = 0; p < side * side; p++) residuals[i][geometry * side * side + p] = 6f;
        }
        var onnx = RunReady(sample, [950f], hidden, residuals);

        var bonus = new float[DemoLatentTable.GeometryCount];
        bonus[geometry] = 6f;
        var reference = DemoControlNet.Predict(sample, [950f], hidden, bonus, model.DatasetLatents, model.CaptionEmbeddings);
        double scale = reference.Max(v => Math.Abs(v)), max = 0;
        for (int i = 0; i < onnx.Length; i++) max = Math.Max(max, Math.Abs(onnx[i] - reference[i]));
        Assert.True(max < 1e-3 * scale + 1e-4, $"max difference {max} (output scale {scale})");
        Assert.NotEqual(model.RunUnet(sample, [950f], hidden), onnx);
    }

    [Theory]
    [InlineData(DemoShape.Star, DemoSize.Large, DemoPosition.Center, 1)]
    [InlineData(DemoShape.Triangle, DemoSize.Small, DemoPosition.TopLeft, 2)]
    [InlineData(DemoShape.Square, DemoSize.Large, DemoPosition.BottomRight, 3)]
    public void TheEngineDrawsTheShapeWhoseOutlineIsGiven(DemoShape shape, DemoSize size, DemoPosition position, long seed)
    {
        // The prompt names a colour and background but no shape: the outline alone decides shape, size and place.
        var traced = DemoDataset.Items.First(i => i.Shape == shape && i.Size == size && i.Position == position);
        using var control = ToImage(Outline(traced));
        var options = new GenerationOptions { Steps = 20, GuidanceScale = 7.5f };
        options.ControlNets.Add(new ControlNetInput(Path.Combine(model.Folder, DemoModelBuilder.OutlineControlNetFolder), control));
        using var steered = model.Pipeline.Generate("a red thing on a white background", seed, options);
        var (item, distance) = DemoImages.Nearest(steered.Latents, model.DatasetLatents);
        Assert.True(DemoLatentTable.GeometryIndex(item) == DemoLatentTable.GeometryIndex(traced),
            $"outline of a {size} {shape} at {position}: drew \"{item.Caption}\" (relative latent distance {distance:F3})");
        Assert.Equal("red", DemoDataset.ShapeColours[item.Colour].Name);

        // Scale 0 turns the ControlNet off: the plain UNet's image for the same seed.
        options.ControlNets[0].Scale = 0;
        using var off = model.Pipeline.Generate("a red thing on a white background", seed, options);
        using var plain = model.Pipeline.Generate("a red thing on a white background", seed, new GenerationOptions { Steps = 20, GuidanceScale = 7.5f });
        Assert.Equal(plain.Latents, off.Latents);
    }

    /// <summary>Planes [3, 256, 256] from 0 to 1 as an RGBA image.</summary>
    private static MLImage ToImage(float[] planes)
    {
        int n = DemoDataset.ImageSize, plane = n * n;
        var rgba = new byte[4 * plane];
        for (int i = 0; i < plane; i++)
        {
            for (int c = 0; c < 3; c++) rgba[4 * i + c] = (byte)Math.Round(255 * planes[c * plane + i]);
            rgba[4 * i + 3] = 255;
        }
        return MLImage.CreateFromPixels(n, n, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>The ControlNet's per-geometry scores for a control image ([3, 256, 256], 0–1).</summary>
    internal static float[] Scores(float[] control)
    {
        int n = DemoDataset.ImageSize, count = DemoLatentTable.GeometryCount;
        var inputs = new Dictionary<string, OrtValue>
        {
            ["sample"] = OrtValue.CreateTensorValueFromMemory(new float[DemoUnet.LatentLength], [1, 4, DemoUnet.LatentSize, DemoUnet.LatentSize]),
            ["timestep"] = OrtValue.CreateTensorValueFromMemory(new[] { 500f }, [1]),
            ["encoder_hidden_states"] = OrtValue.CreateTensorValueFromMemory(new float[77 * DemoVocabulary.Dimension], [1, 77, DemoVocabulary.Dimension]),
            ["controlnet_cond"] = OrtValue.CreateTensorValueFromMemory(control, [1, 3, n, n]),
        };
        try
        {
            using var outputs = ControlNet.Value.Run(new RunOptions(), inputs, ["mid_block_additional_residual"]);
            var mid = outputs[0].GetTensorDataAsSpan<float>();
            int side = DemoControlNet.ResidualSide(DemoControlNet.DownCount);
            var scores = new float[count];
            for (int g = 0; g < count; g++) scores[g] = mid[g * side * side];
            return scores;
        }
        finally
        {
            foreach (var v in inputs.Values) v.Dispose();
        }
    }

    /// <summary>A white outline (1.5 px either side of the shape's edge) on black, as a user might sketch it.</summary>
    internal static float[] Outline(DemoItem item)
    {
        int n = DemoDataset.ImageSize;
        var (cx, cy) = DemoDataset.Centre(item.Position);
        var image = new float[3 * n * n];
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++)
                if (Math.Abs(DemoDataset.SignedDistance(item.Shape, cx, cy, DemoDataset.Radius(item.Size), x + 0.5, y + 0.5)) < 1.5)
                    image[y * n + x] = image[n * n + y * n + x] = image[2 * n * n + y * n + x] = 1f;
        return image;
    }

    private static int Length(int index) => DemoControlNet.ResidualChannels(index) * DemoControlNet.ResidualSide(index) * DemoControlNet.ResidualSide(index);

    private static float[] RunReady(float[] sample, float[] timesteps, float[] hidden, float[][] residuals)
    {
        int batch = sample.Length / DemoUnet.LatentLength, d = DemoVocabulary.Dimension;
        var inputs = new Dictionary<string, OrtValue>
        {
            ["sample"] = OrtValue.CreateTensorValueFromMemory(sample, [batch, 4, DemoUnet.LatentSize, DemoUnet.LatentSize]),
            ["timestep"] = OrtValue.CreateTensorValueFromMemory(timesteps, [timesteps.Length]),
            ["encoder_hidden_states"] = OrtValue.CreateTensorValueFromMemory(hidden, [batch, hidden.Length / (batch * d), d]),
        };
        for (int i = 0; i <= DemoControlNet.DownCount; i++)
        {
            int side = DemoControlNet.ResidualSide(i);
            inputs[DemoControlNet.ResidualName(i)] = OrtValue.CreateTensorValueFromMemory(residuals[i], [batch, DemoControlNet.ResidualChannels(i), side, side]);
        }
        try
        {
            using var outputs = ReadyUNet.Value.Run(new RunOptions(), inputs, ["out_sample"]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        finally
        {
            foreach (var v in inputs.Values) v.Dispose();
        }
    }
}

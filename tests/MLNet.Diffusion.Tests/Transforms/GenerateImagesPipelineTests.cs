using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Transforms;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

public class GenerateImagesPipelineTests
{
    private sealed class PixelRow
    {
        [VectorType(3 * 16 * 16)]
        public float[] Pixels { get; set; } = [];

        public string Id { get; set; } = "";
    }

    [Fact]
    public void GeneratedImagesFlowThroughImageTransformsIntoNormalizerAndKMeans()
    {
        using var folder = TestModelFactory.CreateTemp();
        var ml = new MLContext(seed: 1);
        var table = Table(ml, 6);
        var pipeline = ml.Transforms.GenerateImages("Image", "Prompt", Options(folder.Path, batchSize: 3))
            .Append(ml.Transforms.ResizeImages("Small", 16, 16, "Image"))
            .Append(ml.Transforms.ExtractPixels("Pixels", "Small"))
            // Trainers read their data several times: keep the pixels, not the images, and cache them, so each image is generated once.
            .Append(ml.Transforms.DropColumns("Image", "Small"))
            .AppendCacheCheckpoint(ml)
            .Append(ml.Transforms.NormalizeMinMax("Normalized", "Pixels"))
            .Append(ml.Clustering.Trainers.KMeans("Normalized", numberOfClusters: 2));
        using var model = pipeline.Fit(table);
        var unet = model.OfType<DiffusionTransformer>().Single().Pipeline.UNet;
        Assert.Equal(2 * 3, unet.RunCount); // fitting generated the 6 images once: 2 batches of 3, 3 steps
        var scored = model.Transform(table);

        var rows = ml.Data.CreateEnumerable<PixelRow>(scored, reuseRowObject: false).ToList();
        Assert.Equal(Enumerable.Range(0, 6).Select(i => $"row{i}"), rows.Select(r => r.Id));
        // The test VAE paints each 8×8 block in the latent's colour: each image is one colour, a different one per prompt.
        foreach (var row in rows)
        {
            Assert.Equal(3 * 16 * 16, row.Pixels.Length);
            for (int c = 0; c < 3; c++)
            {
                var plane = row.Pixels.AsSpan(c * 256, 256).ToArray();
                Assert.True(plane.Max() - plane.Min() < 40, $"channel {c} of a generated image should be nearly flat: {plane.Min()}…{plane.Max()}");
            }
        }
        Assert.NotEqual(rows[0].Pixels, rows[1].Pixels);

        var normalized = scored.GetColumn<VBuffer<float>>("Normalized").Select(v => v.DenseValues().ToArray()).ToList();
        Assert.All(normalized, v => Assert.All(v, x => Assert.InRange(x, 0f, 1f)));
        var clusters = scored.GetColumn<uint>("PredictedLabel").ToList();
        Assert.Equal(6, clusters.Count);
        Assert.All(clusters, c => Assert.InRange(c, 1u, 2u));
    }

    [Fact]
    public void AppendingTheEstimatorToAChainWorks()
    {
        using var folder = TestModelFactory.CreateTemp();
        var ml = new MLContext();
        var table = Table(ml, 2);
        var chain = ml.Transforms.CopyColumns("Text", "Prompt")
            .Append(new DiffusionEstimator(ml, inputColumnName: "Text", options: Options(folder.Path)))
            .Append(ml.Transforms.ExtractPixels("Pixels", "Image"));
        using var model = chain.Fit(table);
        var pixels = model.Transform(table).GetColumn<VBuffer<float>>("Pixels").ToList();
        Assert.Equal(2, pixels.Count);
        Assert.Equal(3 * 64 * 64, pixels[0].Length);
    }
}

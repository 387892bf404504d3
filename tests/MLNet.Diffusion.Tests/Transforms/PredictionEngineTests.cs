using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

public class PredictionEngineTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>
{
    public sealed class Request
    {
        public string Prompt { get; set; } = "";
        public long Seed { get; set; }
    }

    public sealed class Result
    {
        [ImageType(64, 64)]
        public MLImage? Image { get; set; }

        [VectorType(3 * 16 * 16)]
        public float[] Pixels { get; set; } = [];
    }

    [Fact]
    public void APredictionEngineGeneratesTheImageOfTheRequestsSeed()
    {
        var ml = new MLContext();
        var options = Options(model.Path);
        options.SeedColumnName = "Seed";
        var empty = ml.Data.LoadFromEnumerable(Array.Empty<Request>());
        using var fitted = ml.Transforms.GenerateImages(options)
            .Append(ml.Transforms.ResizeImages("Small", 16, 16, "Image"))
            .Append(ml.Transforms.ExtractPixels("Pixels", "Small"))
            .Fit(empty);
        Assert.True(((ITransformer)fitted).IsRowToRowMapper);
        using var engine = ml.Model.CreatePredictionEngine<Request, Result>(fitted);
        var pipeline = fitted.OfType<MLNet.Diffusion.DiffusionTransformer>().Single().Pipeline;

        foreach (var (prompt, seed) in new[] { ("red cat", 3L), ("blue dog", 9L), ("red cat", 3L) })
        {
            long before = pipeline.UNet.RunCount;
            var result = engine.Predict(new Request { Prompt = prompt, Seed = seed });
            Assert.Equal(options.Steps, pipeline.UNet.RunCount - before); // generated once for both columns
            using var image = result.Image!;
            Assert.Equal(64, image.Width);
            using var alone = pipeline.Generate(prompt, seed, Generation(options)).Image;
            Assert.True(MaxByteDifference(alone.Pixels.ToArray(), image.Pixels.ToArray()) <= 1);
            Assert.Equal(3 * 16 * 16, result.Pixels.Length);
        }
    }

    /// <summary>
    /// Issue 13: with several images per prompt, <c>CreatePredictionEngine</c> failed with ML.NET's bare "Must be a row to
    /// row mapper"; the failure now says why, alone and inside a chain.
    /// </summary>
    [Fact]
    public void APredictionEngineWithSeveralImagesPerPromptFailsSayingWhy()
    {
        var ml = new MLContext();
        var options = Options(model.Path);
        options.ImagesPerPrompt = 3;
        var empty = ml.Data.LoadFromEnumerable(Array.Empty<Request>());
        using var alone = ml.Transforms.GenerateImages(options).Fit(empty);
        using var chain = ml.Transforms.GenerateImages(options).Append(ml.Transforms.ResizeImages("Small", 16, 16, "Image")).Fit(empty);
        foreach (var transformer in new ITransformer[] { alone, chain })
        {
            var e = Assert.Throws<InvalidOperationException>(() => ml.Model.CreatePredictionEngine<Request, Result>(transformer));
            Assert.Contains("ImagesPerPrompt = 3", e.Message);
            Assert.Contains("cannot run in a PredictionEngine", e.Message);
            Assert.Contains("Use Transform", e.Message);
        }
        Assert.False(alone.IsRowToRowMapper); // asked of our type, the answer is a plain false
    }
}

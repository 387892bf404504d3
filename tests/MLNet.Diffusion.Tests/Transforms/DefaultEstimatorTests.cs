using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion.Tests.Transforms;

/// <summary>
/// The call users were promised: <c>pipeline.Append(new DiffusionEstimator())</c>, with no model folder and no column
/// names, generates demo-model images into <c>Image</c> from <c>Prompt</c>; and the catalog methods put the output column
/// first, as ML.NET's do.
/// </summary>
[Collection(DemoCacheCollection.Name)]
public sealed class DefaultEstimatorTests : IDisposable
{
    private readonly string _cache = Path.Combine(Path.GetTempPath(), "mlnet-diffusion-default-" + Guid.NewGuid().ToString("N"));
    private readonly string? _previous = Environment.GetEnvironmentVariable(DemoModel.CacheVariable);

    public DefaultEstimatorTests() => Environment.SetEnvironmentVariable(DemoModel.CacheVariable, _cache);

    public void Dispose()
    {
        Environment.SetEnvironmentVariable(DemoModel.CacheVariable, _previous);
        if (Directory.Exists(_cache)) Directory.Delete(_cache, recursive: true);
    }

    private sealed class Row
    {
        public string Caption { get; set; } = "";
    }

    [Fact]
    public void AppendingANewDiffusionEstimatorGeneratesDemoImagesFromThePromptColumn()
    {
        var ml = new MLContext(seed: 1);
        var table = ml.Data.LoadFromEnumerable(new[] { new Row { Caption = "a large red circle on a black background" }, new Row { Caption = "a large blue square on a black background" } });
        var pipeline = ml.Transforms.CopyColumns("Prompt", nameof(Row.Caption));

        var estimator = pipeline.Append(new DiffusionEstimator());

        Assert.True(File.Exists(Path.Combine(_cache, "demo-model", "model_index.json")), "the demo model is built into the cache folder on first use");
        using var model = estimator.Fit(table);
        var output = model.Transform(table);
        var (red, blue) = (0.0, 0.0);
        using (var cursor = output.GetRowCursor(output.Schema))
        {
            var getter = cursor.GetGetter<MLImage>(output.Schema["Image"]);
            MLImage image = null!;
            Assert.True(cursor.MoveNext());
            getter(ref image);
            red = MeanColour(image) is var c0 ? c0.R - c0.B : 0;
            Assert.True(cursor.MoveNext());
            getter(ref image);
            blue = MeanColour(image) is var c1 ? c1.B - c1.R : 0;
            image.Dispose();
        }
        // Mean R − B over the image: a red shape on black is positive, a blue one negative.
        Assert.True(red > 0.03 && blue > 0.03, $"the red circle's R − B is {red:F3} and the blue square's B − R is {blue:F3}; both should be positive");
    }

    [Fact]
    public void WithCallerOwnsImagesEveryImageReadStaysUsableAfterTheNextRow()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 3).Select(i => new Row { Caption = $"a red circle {i}" }));
        var pipeline = ml.Transforms.CopyColumns("Prompt", nameof(Row.Caption));
        using var kept = pipeline.Append(new DiffusionEstimator(new DiffusionOptions { Steps = 2, CallerOwnsImages = true })).Fit(table);
        using var borrowed = pipeline.Append(new DiffusionEstimator(new DiffusionOptions { Steps = 2 })).Fit(table);

        var owned = kept.Transform(table).GetColumn<MLImage>("Image").ToArray();
        var reused = borrowed.Transform(table).GetColumn<MLImage>("Image").ToArray();

        Assert.All(owned, image => Assert.Equal(DemoDataset.ImageSize * DemoDataset.ImageSize * 4, image.Pixels.Length));
        Assert.Throws<InvalidOperationException>(() => reused[0].Pixels.Length); // ML.NET's convention, the default
        foreach (var image in owned.Concat(reused)) image.Dispose();
    }

    [Fact]
    public void TheDemoModelBuildIsLoggedOnceToTheContext()
    {
        var ml = new MLContext();
        var messages = new List<string>();
        ml.Log += (_, e) => { lock (messages) messages.Add(e.Message); };

        _ = new DiffusionEstimator(ml);
        _ = new DiffusionEstimator(ml);

        Assert.Single(messages, m => m.Contains("Building the built-in demo model into", StringComparison.Ordinal));
    }

    [Fact]
    public void CatalogMethodsTakeTheOutputColumnFirstAsMLNetDoes()
    {
        foreach (var method in typeof(DiffusionCatalog).GetMethods().Where(m => m.IsStatic && m.GetParameters().Length > 2))
        {
            var names = method.GetParameters().Skip(1).Select(p => p.Name).ToArray();
            Assert.Equal("outputColumnName", names[0]);
            Assert.Equal("inputColumnName", names[1]);
            Assert.Equal("options", names[^1]);
        }
        var ml = new MLContext();
        var text = SchemaShapeColumns.Create("Text", SchemaShape.Column.VectorKind.Scalar, TextDataViewType.Instance);
        var shape = ml.Transforms.GenerateImages("Picture", "Text").GetOutputSchema(new SchemaShape([text]));
        Assert.Contains(shape, c => c.Name == "Picture" && c.ItemType is Microsoft.ML.Transforms.Image.ImageDataViewType);
    }

    private static (double R, double G, double B) MeanColour(MLImage image)
    {
        var pixels = image.Pixels;
        double r = 0, g = 0, b = 0;
        int n = pixels.Length / 4;
        bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
        for (int i = 0; i < n; i++)
        {
            double c0 = pixels[4 * i] / 255.0, c2 = pixels[4 * i + 2] / 255.0;
            r += bgra ? c2 : c0;
            g += pixels[4 * i + 1] / 255.0;
            b += bgra ? c0 : c2;
        }
        return (r / n, g / n, b / n);
    }
}

/// <summary>Tests that move the demo model's cache folder through the process environment run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DemoCacheCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Demo model cache (process environment)";
}

using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MLNet.Diffusion.Transforms;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

public class SchemaCheckTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>
{
    private sealed class NumberPrompt
    {
        public float Prompt { get; set; }
    }

    private sealed class DoubleSeed
    {
        public string Prompt { get; set; } = "";
        public double Seed { get; set; }
    }

    private sealed class ShortEmbedding
    {
        [VectorType(10)]
        public float[] PromptEmbedding { get; set; } = new float[10];
    }

    private sealed class ShortLatents
    {
        [VectorType(5)]
        public float[] Latents { get; set; } = new float[5];
    }

    [Fact]
    public void MissingPromptColumnIsNamedWithTheExpectedType()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new NumberPrompt() });
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.GenerateImages(inputColumnName: "Text", options: Options(model.Path)).Fit(table));
        Assert.Contains("Could not find input column 'Text' (expected String)", e.Message);
    }

    [Fact]
    public void WrongPromptTypeIsReportedByFitGetOutputSchemaAndTransform()
    {
        var ml = new MLContext();
        var bad = ml.Data.LoadFromEnumerable(new[] { new NumberPrompt() });
        const string expected = "Schema mismatch for input column 'Prompt': expected String, got Single";

        var estimator = ml.Transforms.GenerateImages(Options(model.Path));
        Assert.Contains(expected, Assert.Throws<ArgumentOutOfRangeException>(() => estimator.Fit(bad)).Message);
        // EstimatorChain.Fit checks GetOutputSchema(SchemaShape) first.
        var chain = ml.Transforms.CopyColumns("Copy", "Prompt").Append(estimator);
        Assert.Contains(expected, Assert.Throws<ArgumentOutOfRangeException>(() => chain.Fit(bad)).Message);

        var good = Table(ml, 1);
        using var transformer = estimator.Fit(good);
        Assert.Contains(expected, Assert.Throws<ArgumentOutOfRangeException>(() => transformer.Transform(bad)).Message);
        Assert.Contains(expected, Assert.Throws<ArgumentOutOfRangeException>(() => transformer.GetOutputSchema(bad.Schema)).Message);
    }

    [Fact]
    public void WrongSeedTypeNamesTheAcceptedTypes()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new DoubleSeed() });
        var options = Options(model.Path);
        options.SeedColumnName = "Seed";
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.GenerateImages(options).Fit(table));
        Assert.Contains("Schema mismatch for input column 'Seed': expected Int64, Int32 or UInt32, got Double", e.Message);
    }

    [Fact]
    public void WrongEmbeddingSizeIsReportedWithBothSizes()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new ShortEmbedding() });
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.DenoiseLatents(negativeInputColumnName: null, options: Options(model.Path)).Fit(table));
        Assert.Contains("Schema mismatch for input column 'PromptEmbedding': expected Vector<Single, 77, 768>, got Vector<Single, 10>", e.Message);
    }

    [Fact]
    public void WrongLatentSizeIsReportedWithBothSizes()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[] { new ShortLatents() });
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.DecodeLatents(Options(model.Path)).Fit(table));
        Assert.Contains("Schema mismatch for input column 'Latents': expected Vector<Single, 4, 8, 8>, got Vector<Single, 5>", e.Message);
        var missing = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.DecodeLatents(inputColumnName: "Z", options: Options(model.Path)).Fit(table));
        Assert.Contains("Could not find input column 'Z'", missing.Message);
    }

    [Fact]
    public void TheEstimatorDeclaresTheImageColumnSoImageTransformsCanFollow()
    {
        var ml = new MLContext();
        var options = Options(model.Path);
        options.ImagesPerPrompt = 2;
        options.LatentsColumnName = "Z";
        var table = Table(ml, 1);
        var shape = ml.Transforms.GenerateImages(options).Append(ml.Transforms.ResizeImages("Small", 8, 8, "Image"))
            .GetOutputSchema(SchemaShapeOf(table));
        var image = shape.Single(c => c.Name == "Image");
        Assert.IsType<ImageDataViewType>(image.ItemType);
        Assert.Equal(SchemaShape.Column.VectorKind.Scalar, image.Kind);
        Assert.Equal(SchemaShape.Column.VectorKind.Vector, shape.Single(c => c.Name == "Z").Kind);
        Assert.Equal(NumberDataViewType.Int32, shape.Single(c => c.Name == "ImageIndex").ItemType);
        Assert.Contains(shape, c => c.Name == "Small");
        Assert.DoesNotContain(shape, c => c.Name == "PromptEmbedding");
    }

    [Fact]
    public void SchemaShapeColumnsReachesTheInternalConstructor()
    {
        var column = SchemaShapeColumns.Scalar("Image", new ImageDataViewType(64, 32));
        Assert.Equal("Image", column.Name);
        Assert.Equal(new ImageDataViewType(64, 32), column.ItemType);
        Assert.False(column.IsKey);
        Assert.Empty(column.Annotations);
    }

    /// <summary>The shape EstimatorChain.Fit builds from a schema (SchemaShape.Create is internal): one column per visible input column.</summary>
    private static SchemaShape SchemaShapeOf(IDataView data) =>
        new(data.Schema.Where(c => !c.IsHidden).Select(c => c.Type is VectorDataViewType v
            ? SchemaShapeColumns.Create(c.Name, SchemaShape.Column.VectorKind.Vector, v.ItemType)
            : SchemaShapeColumns.Create(c.Name, SchemaShape.Column.VectorKind.Scalar, c.Type)));
}

using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Transforms;
using static MLNet.Diffusion.Tests.ImageToImage.ImageToImageTestKit;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

/// <summary>A row with an init image, a mask and a strength.</summary>
public sealed class SketchRow
{
    public string Prompt { get; set; } = "";
    public long Seed { get; set; }

    [ImageType(64, 64)] // LoadFromEnumerable needs a size; images of other sizes pass through it unchecked
    public MLImage? Sketch { get; set; }

    [ImageType(64, 64)] // LoadFromEnumerable needs a size; images of other sizes pass through it unchecked
    public MLImage? Mask { get; set; }

    public float Strength { get; set; } = float.NaN;
}

/// <summary>A row whose "Sketch" column is text, not an image.</summary>
public sealed class TextSketchRow
{
    public string Prompt { get; set; } = "";
    public string Sketch { get; set; } = "";
}

/// <summary>A row whose image columns declare different sizes.</summary>
public sealed class SizedRow
{
    public string Prompt { get; set; } = "";

    [ImageType(64, 64)]
    public MLImage? Sketch { get; set; }

    [ImageType(32, 32)]
    public MLImage? Mask { get; set; }
}

/// <summary>A row whose strength column is an Int32.</summary>
public sealed class IntStrengthRow
{
    public string Prompt { get; set; } = "";

    [ImageType(64, 64)] // LoadFromEnumerable needs a size; images of other sizes pass through it unchecked
    public MLImage? Sketch { get; set; }

    public int Strength { get; set; }
}

public class ImageToImageColumnTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>
{
    private DiffusionOptions I2IOptions(int batchSize = 1, bool seedColumn = true)
    {
        var options = Options(model.Path, batchSize);
        if (seedColumn) options.SeedColumnName = nameof(SketchRow.Seed);
        options.InitImageColumnName = nameof(SketchRow.Sketch);
        return options;
    }

    [Fact]
    public void InitImageColumnThroughGenerateImagesMatchesTheEngine()
    {
        var ml = new MLContext();
        using var a = BlockImage(64, 64);
        using var b = BlockImage(48, 80, (x, y) => ((byte)(200 - 9 * x), (byte)(30 + 11 * y), 90));
        var rows = new[]
        {
            new SketchRow { Prompt = "a red cat", Seed = 7, Sketch = a },
            new SketchRow { Prompt = "blue dog", Seed = 8, Sketch = b },
            new SketchRow { Prompt = "the horse", Seed = 9, Sketch = null }, // text-to-image row
        };
        var options = I2IOptions(batchSize: 3);
        options.Strength = 0.7f;
        var data = ml.Data.LoadFromEnumerable(rows);
        using var transformer = ml.Transforms.GenerateImages(options).Fit(data);
        var actual = ReadImages(transformer.Transform(data));

        var expected = transformer.Pipeline.Generate(
            rows.Select(r => new ImagePrompt(r.Prompt, r.Seed) { InitImage = r.Sketch, Strength = r.Sketch is null ? null : 0.7f }).ToArray(),
            Generation(options));
        for (int i = 0; i < rows.Length; i++)
        {
            Assert.Equal(0, MaxByteDifference(expected[i].Image.Pixels.ToArray(), actual[i]));
            expected[i].Image.Dispose();
        }
    }

    [Fact]
    public void StrengthColumnIsHonouredPerRowAndNaNTakesTheDefault()
    {
        var ml = new MLContext();
        using var sketch = BlockImage(64, 64);
        float[] strengths = [0.3f, float.NaN, 1f, 0.6f];
        var rows = strengths.Select((s, i) => new SketchRow { Prompt = Prompts[i], Seed = 20 + i, Sketch = sketch, Strength = s }).ToArray();
        var options = I2IOptions(batchSize: 4); // rows with different strengths share one batch
        options.Steps = 5;
        options.StrengthColumnName = nameof(SketchRow.Strength);
        var data = ml.Data.LoadFromEnumerable(rows);
        using var transformer = ml.Transforms.GenerateImages(options).Fit(data);
        var actual = ReadImages(transformer.Transform(data));

        var generation = Generation(options);
        for (int i = 0; i < rows.Length; i++)
        {
            float? strength = float.IsNaN(strengths[i]) ? null : strengths[i];
            var one = transformer.Pipeline.Generate([new ImagePrompt(rows[i].Prompt, rows[i].Seed) { InitImage = sketch, Strength = strength }], generation)[0];
            Assert.Equal(0, MaxByteDifference(one.Image.Pixels.ToArray(), actual[i]));
            one.Image.Dispose();
        }
        // Strength matters: 0.3 and 1 give different images of the same sketch.
        Assert.NotEqual(0, MaxByteDifference(actual[0], actual[2]));
    }

    [Fact]
    public void MaskColumnInpaintsAsTheEngineDoesInTheDenoisingStageToo()
    {
        var ml = new MLContext();
        using var sketch = BlockImage(64, 64);
        using var mask = MaskImage(64, 64, (x, y) => x >= 32);
        var rows = new[] { new SketchRow { Prompt = "a red cat", Seed = 3, Sketch = sketch, Mask = mask } };
        var options = I2IOptions();
        options.MaskColumnName = nameof(SketchRow.Mask);
        var data = ml.Data.LoadFromEnumerable(rows);
        using var composite = ml.Transforms.GenerateImages(options).Fit(data);
        var actual = ReadImages(composite.Transform(data));
        var expected = composite.Pipeline.Generate([new ImagePrompt("a red cat", 3) { InitImage = sketch, Mask = mask }], Generation(options))[0];
        Assert.Equal(0, MaxByteDifference(expected.Image.Pixels.ToArray(), actual[0]));

        // The stages: EncodePrompts → DenoiseLatents (with the image columns) → DecodeLatents give the same latents.
        using var staged = ml.Transforms.EncodePrompts(options)
            .Append(ml.Transforms.DenoiseLatents(options))
            .Fit(data);
        var latentsColumn = staged.Transform(data).GetColumn<float[]>(DiffusionColumnNames.Latents).Single();
        Assert.Equal(expected.Latents, latentsColumn);
        expected.Image.Dispose();
    }

    [Fact]
    public void WrongInitImageTypeIsNamed()
    {
        var ml = new MLContext();
        var bad = ml.Data.LoadFromEnumerable(new[] { new TextSketchRow { Prompt = "a", Sketch = "b" } });
        var estimator = ml.Transforms.GenerateImages(I2IOptions(seedColumn: false));
        const string expected = "Schema mismatch for input column 'Sketch': expected Image, got String";
        Assert.Contains(expected, Assert.Throws<ArgumentOutOfRangeException>(() => estimator.Fit(bad)).Message);
        var chain = ml.Transforms.CopyColumns("Copy", "Prompt").Append(estimator);
        Assert.Contains(expected, Assert.Throws<ArgumentOutOfRangeException>(() => chain.Fit(bad)).Message);
    }

    [Fact]
    public void WrongStrengthTypeAndMissingMaskAreNamed()
    {
        var ml = new MLContext();
        var options = I2IOptions(seedColumn: false);
        options.StrengthColumnName = "Strength";
        var ints = ml.Data.LoadFromEnumerable(new[] { new IntStrengthRow { Prompt = "a" } });
        Assert.Contains("Schema mismatch for input column 'Strength': expected Single, got Int32",
            Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.GenerateImages(options).Fit(ints)).Message);

        var masked = I2IOptions();
        masked.MaskColumnName = "Hole";
        Assert.Contains("Could not find input column 'Hole' (expected Image)",
            Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.GenerateImages(masked).Fit(ml.Data.LoadFromEnumerable(new[] { new SketchRow() }))).Message);
    }

    [Fact]
    public void DeclaredMaskSizeMustBeTheInitImageSize()
    {
        var ml = new MLContext();
        var options = I2IOptions(seedColumn: false);
        options.MaskColumnName = "Mask";
        var data = ml.Data.LoadFromEnumerable(new[] { new SizedRow { Prompt = "a" } });
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.GenerateImages(options).Fit(data));
        Assert.Contains("Schema mismatch for input column 'Mask': expected Image<64, 64>", e.Message);
        Assert.Contains("'Sketch'", e.Message);
    }

    [Fact]
    public void RowWithAMaskOfAnotherSizeIsNamedWithRowAndColumns()
    {
        var ml = new MLContext();
        using var sketch = BlockImage(64, 64);
        using var mask = MaskImage(32, 32, (_, _) => true);
        var options = I2IOptions();
        options.MaskColumnName = "Mask";
        var data = ml.Data.LoadFromEnumerable(new[] { new SketchRow { Prompt = "a", Sketch = sketch, Mask = mask } });
        using var transformer = ml.Transforms.GenerateImages(options).Fit(data);
        var e = Assert.Throws<ArgumentException>(() => ReadImages(transformer.Transform(data)));
        Assert.Contains("Data row 1", e.Message); // rows are counted from 1, as users count them
        Assert.Contains("'Mask'", e.Message);
        Assert.Contains("'Sketch'", e.Message);
    }

    [Fact]
    public void MaskOrStrengthColumnWithoutInitImageColumnIsRejected()
    {
        var ml = new MLContext();
        var options = Options(model.Path);
        options.MaskColumnName = "Mask";
        Assert.Contains("InitImageColumnName", Assert.Throws<ArgumentException>(() => ml.Transforms.GenerateImages(options)).Message);
        options = Options(model.Path);
        options.StrengthColumnName = "Strength";
        Assert.Contains("InitImageColumnName", Assert.Throws<ArgumentException>(() => ml.Transforms.GenerateImages(options)).Message);
    }
}

using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Control;

/// <summary>A row with a control image and a control scale.</summary>
public sealed class ControlRow
{
    public string Prompt { get; set; } = "";
    public long Seed { get; set; }

    [ImageType(64, 64)] // LoadFromEnumerable needs a size; images of other sizes pass through it unchecked
    public MLImage? Control { get; set; }

    public float ControlScale { get; set; } = float.NaN;
}

/// <summary>A row whose "Control" column is text.</summary>
public sealed class TextControlRow
{
    public string Prompt { get; set; } = "";
    public string Control { get; set; } = "";
}

/// <summary>The ML.NET surface: a control-image column and a per-row scale column on GenerateImages and DenoiseLatents.</summary>
public sealed class ControlNetTransformTests : IDisposable
{
    private readonly ControlNetTestKit _kit = new();
    private readonly MLImage _fixed = ControlNetTestKit.Solid(64, 255, 255, 255);
    private readonly MLImage _a = ControlNetTestKit.Solid(64, 10, 200, 30);
    private readonly MLImage _b = ControlNetTestKit.Solid(40, 220, 20, 90);

    public void Dispose()
    {
        _fixed.Dispose();
        _a.Dispose();
        _b.Dispose();
        _kit.Dispose();
    }

    private DiffusionOptions ControlOptions(int batchSize)
    {
        var options = Options(_kit.ModelPath, batchSize);
        options.SeedColumnName = nameof(ControlRow.Seed);
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet(), _fixed) { Scale = 0.5f });
        options.ControlImageColumnName = nameof(ControlRow.Control);
        options.ControlScaleColumnName = nameof(ControlRow.ControlScale);
        return options;
    }

    private ControlRow[] Rows() =>
    [
        new() { Prompt = "a red cat", Seed = 1, Control = _a, ControlScale = 1f },
        new() { Prompt = "blue dog", Seed = 2, Control = _b },                       // NaN: the ControlNet's 0.5
        new() { Prompt = "the horse", Seed = 3, Control = null, ControlScale = 2f }, // no image: the ControlNet's own
    ];

    /// <summary>The engine's image for one row, generated alone.</summary>
    private static byte[] Engine(StableDiffusionPipeline pipeline, DiffusionOptions options, ControlRow row)
    {
        var generation = Generation(options);
        generation.ControlNets = options.ControlNets;
        var request = new ImagePrompt(row.Prompt, row.Seed)
        {
            ControlImages = row.Control is null ? null : [row.Control],
            ControlScale = float.IsNaN(row.ControlScale) ? null : row.ControlScale,
        };
        using var image = pipeline.Generate([request], generation)[0].Image;
        return image.Pixels.ToArray();
    }

    [Fact]
    public void GenerateImagesReadsEachRowsControlImageAndScaleAsTheEngineDoes()
    {
        var ml = new MLContext();
        var rows = Rows();
        var options = ControlOptions(batchSize: 3);
        var data = ml.Data.LoadFromEnumerable(rows);
        using var transformer = ml.Transforms.GenerateImages(options).Fit(data);
        var actual = ReadImages(transformer.Transform(data));
        for (int i = 0; i < rows.Length; i++)
            Assert.Equal(0, MaxByteDifference(Engine(transformer.Pipeline, options, rows[i]), actual[i]));
        // The control image matters.
        Assert.NotEqual(0, MaxByteDifference(actual[0], actual[1]));
    }

    [Fact]
    public void DenoiseLatentsReadsTheControlColumnsToo()
    {
        var ml = new MLContext();
        var rows = Rows();
        var options = ControlOptions(batchSize: 2);
        var data = ml.Data.LoadFromEnumerable(rows);
        using var composite = ml.Transforms.GenerateImages(options).Fit(data);
        var expected = ReadImages(composite.Transform(data));
        var staged = ml.Transforms.EncodePrompts(options)
            .Append(ml.Transforms.DenoiseLatents(options))
            .Append(ml.Transforms.DecodeLatents(options));
        using var model = staged.Fit(data);
        var actual = ReadImages(model.Transform(data));
        for (int i = 0; i < rows.Length; i++) Assert.Equal(0, MaxByteDifference(expected[i], actual[i]));
    }

    [Fact]
    public void AControlColumnOfAnotherTypeIsASchemaErrorNamingIt()
    {
        var ml = new MLContext();
        var options = Options(_kit.ModelPath);
        options.ControlNets.Add(new ControlNetInput(_kit.ControlNet(), _fixed));
        options.ControlImageColumnName = nameof(TextControlRow.Control);
        var data = ml.Data.LoadFromEnumerable(new[] { new TextControlRow { Prompt = "a cat", Control = "edges.png" } });
        var e = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.GenerateImages(options).Fit(data));
        Assert.Contains("'Control'", e.Message);
        Assert.Contains("Image", e.Message);
    }

    [Fact]
    public void ControlColumnsWithoutControlNetsAreRefusedNamingTheSetting()
    {
        var ml = new MLContext();
        var options = Options(_kit.ModelPath);
        options.ControlScaleColumnName = nameof(ControlRow.ControlScale);
        var e = Assert.Throws<ArgumentException>(() => ml.Transforms.GenerateImages(options));
        Assert.Contains("ControlScaleColumnName ('ControlScale') needs DiffusionOptions.ControlNets", e.Message);
    }
}

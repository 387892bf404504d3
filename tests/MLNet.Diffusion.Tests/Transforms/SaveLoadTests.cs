using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Transforms;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

public sealed class SaveLoadTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>, IDisposable
{
    private readonly string _file = Path.Combine(Path.GetTempPath(), $"mlnd-model-{Guid.NewGuid():N}.zip");

    public void Dispose() => File.Delete(_file);

    private static EstimatorChain<Microsoft.ML.Transforms.Image.ImagePixelExtractingTransformer> Chain(MLContext ml, DiffusionOptions options) =>
        ml.Transforms.CopyColumns("Text", "Prompt")
            .Append(ml.Transforms.GenerateImages(inputColumnName: "Text", options: options))
            .Append(ml.Transforms.ResizeImages("Small", 16, 16, "Image"))
            .Append(ml.Transforms.ExtractPixels("Pixels", "Small"));

    [Fact]
    public void AChainOfDiffusionAndStandardTransformsRoundTripsWithIdenticalImages()
    {
        var ml = new MLContext();
        var table = Table(ml, 3);
        var options = Options(model.Path, batchSize: 2);
        options.Seed = 42;
        options.GuidanceScale = 2.5f;
        using var fitted = Chain(ml, options).Fit(table);
        DiffusionModelSaver.Save(ml, fitted, table.Schema, _file);

        var other = new MLContext();
        using var loaded = (TransformerChain<ITransformer>)DiffusionModelSaver.Load(other, _file, out var inputSchema);
        Assert.NotNull(inputSchema);
        Assert.Equal(table.Schema.Select(c => (c.Name, c.Type)), inputSchema!.Select(c => (c.Name, c.Type)));
        var diffusion = loaded.OfType<DiffusionTransformer>().Single();
        Assert.Equal(42, diffusion.Options.Seed);
        Assert.Equal(2.5f, diffusion.Options.GuidanceScale);
        Assert.Equal(2, diffusion.Options.BatchSize);
        Assert.Equal("Text", diffusion.PromptColumnName);
        Assert.Equal(4, loaded.Count());

        var original = fitted.Transform(table);
        var reloaded = loaded.Transform(other.Data.LoadFromEnumerable(Enumerable.Range(0, 3).Select(i => new PromptRow { Prompt = Prompts[i], Id = $"row{i}" })));
        Assert.Equal(ReadImages(original), ReadImages(reloaded));
        Assert.Equal(original.GetColumn<VBuffer<float>>("Pixels").Select(v => v.DenseValues().ToArray()),
            reloaded.GetColumn<VBuffer<float>>("Pixels").Select(v => v.DenseValues().ToArray()));
    }

    [Fact]
    public void StagesRoundTripAndTheModelFolderCanBeMoved()
    {
        var ml = new MLContext();
        var table = Table(ml, 2);
        var options = Options(model.Path);
        options.ImagesPerPrompt = 2;
        using var fitted = ml.Transforms.EncodePrompts(negativeOutputColumnName: null, options: options)
            .Append(ml.Transforms.DenoiseLatents(negativeInputColumnName: null, options: options))
            .Append(ml.Transforms.DecodeLatents("Picture", options: options))
            .Fit(table);
        DiffusionModelSaver.Save(ml, fitted, table.Schema, _file);

        using var elsewhere = MLNet.Diffusion.Tests.TestModels.TestModelFactory.CreateTemp();
        using var loaded = (TransformerChain<ITransformer>)DiffusionModelSaver.Load(ml, _file, out _, modelPath: elsewhere.Path);
        Assert.Equal([typeof(TextEncodingTransformer), typeof(DenoisingTransformer), typeof(VaeDecodingTransformer)], loaded.Select(t => t.GetType()));
        Assert.All(loaded.OfType<DiffusionTransformerBase>(), t => Assert.Equal(elsewhere.Path, t.Options.ModelPath));
        Assert.Null(loaded.OfType<TextEncodingTransformer>().Single().NegativeOutputColumnName);
        var output = loaded.Transform(table);
        Assert.Equal(new[] { 0, 1, 0, 1 }, output.GetColumn<int>("ImageIndex"));
        Assert.Equal(ReadImages(fitted.Transform(table), "Picture"), ReadImages(output, "Picture"));
    }

    [Fact]
    public void MLContextModelSaveFailsNamingTheCallToUseInstead()
    {
        var ml = new MLContext();
        var table = Table(ml, 1);
        using var fitted = Chain(ml, Options(model.Path)).Fit(table);
        var e = Assert.Throws<NotSupportedException>(() => ml.Model.Save(fitted, table.Schema, _file));
        Assert.Contains("DiffusionModelSaver.Save(mlContext, model, inputSchema, path)", e.Message);
        Assert.Contains("was removed", e.Message);
        Assert.False(File.Exists(_file), "issue 13: the refusal left a broken zip at the path");
    }

    [Fact]
    public void AFailedMLContextModelSaveOfTheTransformerAloneLeavesNoFile()
    {
        var ml = new MLContext();
        var table = Table(ml, 1);
        using var fitted = ml.Transforms.GenerateImages(Options(model.Path)).Fit(table);
        Assert.Throws<NotSupportedException>(() => ml.Model.Save(fitted, null, _file));
        Assert.False(File.Exists(_file));
    }

    /// <summary>A stream the caller passes is not a file that only the save wrote: it is left open and as it is.</summary>
    [Fact]
    public void AFailedSaveToACallersStreamLeavesTheStreamAlone()
    {
        var ml = new MLContext();
        var table = Table(ml, 1);
        using var fitted = Chain(ml, Options(model.Path)).Fit(table);
        using (var memory = new MemoryStream())
        {
            var e = Assert.Throws<NotSupportedException>(() => ml.Model.Save(fitted, table.Schema, memory));
            Assert.Contains("incomplete model; discard it", e.Message);
            Assert.True(memory.CanWrite);
        }
        using (var file = new FileStream(_file, FileMode.Create, FileAccess.ReadWrite))
        {
            file.Write("kept"u8);
            Assert.Throws<NotSupportedException>(() => ml.Model.Save(fitted, table.Schema, file));
            Assert.True(file.CanWrite);
        }
        Assert.Equal("kept"u8.ToArray(), File.ReadAllBytes(_file)[..4]);
    }

    /// <summary>Issue 13: MLContext.Model.Load of a DiffusionModelSaver file said only "Could not load legacy format model".</summary>
    [Fact]
    public void MLContextModelLoadOfASavedDiffusionModelNamesDiffusionModelSaverLoad()
    {
        var ml = new MLContext();
        var table = Table(ml, 1);
        using var fitted = Chain(ml, Options(model.Path)).Fit(table);
        DiffusionModelSaver.Save(ml, fitted, table.Schema, _file);
        var e = Assert.ThrowsAny<Exception>(() => ml.Model.Load(_file, out _));
        Assert.Contains("DiffusionModelSaver.Load", e.Message);
        using var loaded = (TransformerChain<ITransformer>)DiffusionModelSaver.Load(ml, _file, out _);
        Assert.Equal(4, loaded.Count());
    }

    [Fact]
    public void AFileWithoutTheManifestIsRefused()
    {
        var ml = new MLContext();
        var table = Table(ml, 1);
        var standard = ml.Transforms.CopyColumns("Text", "Prompt").Fit(table);
        ml.Model.Save(standard, table.Schema, _file);
        var e = Assert.Throws<InvalidDataException>(() => DiffusionModelSaver.Load(ml, _file, out _));
        Assert.Contains("MLContext.Model.Load", e.Message);
    }
}

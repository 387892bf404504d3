using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Transforms;

/// <summary>
/// The ML.NET transforms on the closed-form SDXL folders of <see cref="XlTestModelFactory"/>: the oracle UNet's target
/// depends on the per-token embeddings, the pooled embedding and the time ids, and Euler ends on it, so the latents show
/// that every part of the conditioning went through the columns.
/// </summary>
public sealed class XlTransformTests
{
    private const double Tolerance = 2e-3;

    /// <summary>The encoders' closed forms against ONNX Runtime's float arithmetic.</summary>
    private const double EncoderTolerance = 1e-5;

    private sealed class NegativeRow
    {
        public string Prompt { get; set; } = "";
        public string Negative { get; set; } = "";
    }

    private static readonly NegativeRow[] Rows =
    [
        new() { Prompt = "a red cat", Negative = "blue dog" },
        new() { Prompt = "the horse", Negative = "" },
    ];

    private static DiffusionOptions Options(string path) => new()
    {
        ModelPath = path,
        Width = 64,
        Height = 48,
        Steps = 20,
        Scheduler = "euler",
        GuidanceScale = 2,
        BatchSize = 2,
        NegativePromptColumnName = "Negative",
        IntraOpThreads = 1,
    };

    /// <summary>The target for a prompt (null: zeros, the folder's empty negative prompt) at 64×48.</summary>
    private static float[] Target(string? prompt, XlTestModelOptions o)
    {
        var context = prompt is null ? new float[TestTokenizer.MaxLength * o.ContextWidth] : XlTestModelFactory.PromptEmbedsForPrompt(prompt, o);
        var pooled = prompt is null ? new float[o.ResolvedPooledWidth] : XlTestModelFactory.PooledForPrompt(prompt, o);
        return XlTestModelFactory.TargetLatent(context, pooled, [48, 64, 0, 0, 48, 64], [], o);
    }

    /// <summary>Each row's expected latents: guidance 2 between its prompt and its negative prompt (zeros when empty).</summary>
    private static float[] Expected(NegativeRow row, XlTestModelOptions o)
    {
        var c = Target(row.Prompt, o);
        var u = Target(row.Negative.Length == 0 ? null : row.Negative, o);
        var z = new float[4];
        for (int ch = 0; ch < 4; ch++) z[ch] = u[ch] + 2 * (c[ch] - u[ch]);
        return TestModelFactory.ExpandTarget(z, 6, 8);
    }

    private static float[][] Column(IDataView view, string name) =>
        [.. view.GetColumn<VBuffer<float>>(name).Select(v => v.DenseValues().ToArray())];

    [Fact]
    public void GenerateImagesOnAnSdxlFolderEndsOnTheTargetOfBothEncodersThePooledEmbeddingAndTheTimeIds()
    {
        var o = new XlTestModelOptions();
        using var folder = XlTestModelFactory.CreateTemp(o);
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(Rows);
        var options = Options(folder.Path);
        options.LatentsColumnName = "Latents";
        options.PromptEmbeddingColumnName = "Embedding";
        using var model = ml.Transforms.GenerateImages("Image", "Prompt", options).Fit(table);
        var output = model.Transform(table);
        Assert.Equal(new ImageDataViewType(48, 64), output.Schema["Image"].Type);
        // Both encoders' states side by side, and the pooled embedding beside them.
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 77, o.ContextWidth), output.Schema["Embedding"].Type);
        Assert.True(MaxAbsDiff(XlTestModelFactory.PromptEmbedsForPrompt("the horse", o), Column(output, "Embedding")[1]) < EncoderTolerance);
        Assert.True(MaxAbsDiff(XlTestModelFactory.PooledForPrompt("the horse", o), Column(output, "EmbeddingPooled")[1]) < EncoderTolerance);
        var latents = Column(output, "Latents");
        for (int i = 0; i < Rows.Length; i++)
            Assert.True(MaxAbsDiff(latents[i], Expected(Rows[i], o)) < Tolerance, $"row {i}: max error {MaxAbsDiff(latents[i], Expected(Rows[i], o))}");
        Assert.Equal(2, TransformTestKit.ReadImages(output).Count);
    }

    [Fact]
    public void TheStagesCarryTheWideEmbeddingAndThePooledColumnsAndGiveTheCompositesLatents()
    {
        var o = new XlTestModelOptions();
        using var folder = XlTestModelFactory.CreateTemp(o);
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(Rows);
        var options = Options(folder.Path);
        using var staged = ml.Transforms.EncodePrompts(options)
            .Append(ml.Transforms.DenoiseLatents(options))
            .Append(ml.Transforms.DecodeLatents(options))
            .Fit(table);
        var output = staged.Transform(table);
        var schema = output.Schema;
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 77, o.ContextWidth), schema["PromptEmbedding"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 77, o.ContextWidth), schema["NegativePromptEmbedding"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, o.ResolvedPooledWidth), schema["PromptEmbeddingPooled"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, o.ResolvedPooledWidth), schema["NegativePromptEmbeddingPooled"].Type);

        Assert.True(MaxAbsDiff(XlTestModelFactory.PromptEmbedsForPrompt("a red cat", o), Column(output, "PromptEmbedding")[0]) < EncoderTolerance);
        Assert.True(MaxAbsDiff(XlTestModelFactory.PooledForPrompt("a red cat", o), Column(output, "PromptEmbeddingPooled")[0]) < EncoderTolerance);
        Assert.True(MaxAbsDiff(XlTestModelFactory.PooledForPrompt("blue dog", o), Column(output, "NegativePromptEmbeddingPooled")[0]) < EncoderTolerance);
        // The folder forces zeros for an empty negative prompt: the second row's negative columns are zeros.
        Assert.All(Column(output, "NegativePromptEmbedding")[1], v => Assert.Equal(0f, v));
        Assert.All(Column(output, "NegativePromptEmbeddingPooled")[1], v => Assert.Equal(0f, v));

        var latents = Column(output, "Latents");
        for (int i = 0; i < Rows.Length; i++)
            Assert.True(MaxAbsDiff(latents[i], Expected(Rows[i], o)) < Tolerance, $"row {i}: max error {MaxAbsDiff(latents[i], Expected(Rows[i], o))}");
        Assert.Equal(2, TransformTestKit.ReadImages(output).Count);
    }

    [Fact]
    public void PooledColumnNamesComeFromTheOptions()
    {
        var o = new XlTestModelOptions();
        using var folder = XlTestModelFactory.CreateTemp(o);
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(Rows);
        var options = Options(folder.Path);
        options.PooledEmbeddingColumnName = "P";
        options.NegativePooledEmbeddingColumnName = "NP";
        using var staged = ml.Transforms.EncodePrompts(options).Append(ml.Transforms.DenoiseLatents(options)).Fit(table);
        var output = staged.Transform(table);
        Assert.Null(output.Schema.GetColumnOrNull("PromptEmbeddingPooled"));
        Assert.True(MaxAbsDiff(XlTestModelFactory.PooledForPrompt("the horse", o), Column(output, "P")[1]) < EncoderTolerance);
        var latents = Column(output, "Latents");
        Assert.True(MaxAbsDiff(latents[0], Expected(Rows[0], o)) < Tolerance);
    }

    [Fact]
    public void DenoisingAnSdxlModelWithoutThePooledColumnIsASchemaErrorThatNamesIt()
    {
        using var folder = XlTestModelFactory.CreateTemp(new XlTestModelOptions());
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(Rows);
        var options = Options(folder.Path);
        // The embeddings alone (the pooled columns dropped).
        var embeddings = ml.Transforms.EncodePrompts(options).Fit(table).Transform(table);
        var withoutPooled = ml.Transforms.DropColumns("PromptEmbeddingPooled").Fit(embeddings).Transform(embeddings);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.DenoiseLatents(options).Fit(withoutPooled));
        Assert.Contains("'PromptEmbeddingPooled'", e.Message);
        Assert.Contains("PooledEmbeddingColumnName", e.Message);
        Assert.Contains("EncodePrompts", e.Message);
    }

    [Fact]
    public void TheStagedSdxlPipelineSavesAndLoads()
    {
        var o = new XlTestModelOptions();
        using var folder = XlTestModelFactory.CreateTemp(o);
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(Rows);
        var options = Options(folder.Path);
        options.PooledEmbeddingColumnName = "P";
        using var staged = ml.Transforms.EncodePrompts(options).Append(ml.Transforms.DenoiseLatents(options)).Fit(table);
        var file = Path.Combine(folder.Path, "staged.zip");
        DiffusionModelSaver.Save(ml, staged, table.Schema, file);
        var loaded = DiffusionModelSaver.Load(ml, file, out _);
        try
        {
            var latents = Column(loaded.Transform(table), "Latents");
            for (int i = 0; i < Rows.Length; i++) Assert.True(MaxAbsDiff(latents[i], Expected(Rows[i], o)) < Tolerance, $"row {i}");
        }
        finally
        {
            (loaded as IDisposable)?.Dispose();
        }
    }
}

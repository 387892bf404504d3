using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Tests.Pipeline;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Transforms;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

public class StageTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>
{
    private sealed class NegativeRow
    {
        public string Prompt { get; set; } = "";
        public string Negative { get; set; } = "";
    }

    private sealed class LatentRow
    {
        [VectorType(4, 8, 8)]
        public float[] Latents { get; set; } = [];
    }

    [Fact]
    public void TheThreeStagesChainedGiveTheCompositesImages()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[]
        {
            new NegativeRow { Prompt = "red cat", Negative = "blue dog" },
            new NegativeRow { Prompt = "the horse", Negative = "" },
            new NegativeRow { Prompt = "painting", Negative = "cat" },
        });
        var options = Options(model.Path, batchSize: 2);
        options.NegativePromptColumnName = "Negative";
        using var staged = ml.Transforms.EncodePrompts(options)
            .Append(ml.Transforms.DenoiseLatents(options))
            .Append(ml.Transforms.DecodeLatents(options))
            .Fit(table);
        using var composite = ml.Transforms.GenerateImages(options).Fit(table);
        var stagedOutput = staged.Transform(table);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 77, 768), stagedOutput.Schema["PromptEmbedding"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 4, 8, 8), stagedOutput.Schema["Latents"].Type);
        var a = ReadImages(stagedOutput);
        var b = ReadImages(composite.Transform(table));
        for (int i = 0; i < 3; i++) Assert.True(MaxByteDifference(a[i], b[i]) <= 1, $"row {i}");
        // One model, loaded once, behind all four transformers.
        Assert.All(staged.OfType<DiffusionTransformerBase>(), t => Assert.Same(composite.Pipeline.UNet, t.Pipeline.UNet));
    }

    [Fact]
    public void EmbeddingsAreTheTextEncodersAndNegativeEmbeddingsDefaultToTheEmptyPrompt()
    {
        var ml = new MLContext();
        var table = Table(ml, 2);
        using var encoder = ml.Transforms.EncodePrompts(Options(model.Path, batchSize: 2)).Fit(table);
        var output = encoder.Transform(table);
        var embeddings = output.GetColumn<VBuffer<float>>("PromptEmbedding").Select(v => v.DenseValues().ToArray()).ToList();
        var negative = output.GetColumn<VBuffer<float>>("NegativePromptEmbedding").Select(v => v.DenseValues().ToArray()).ToList();
        Assert.Equal(encoder.Pipeline.EncodeText([Prompts[0]]), embeddings[0]);
        Assert.Equal(encoder.Pipeline.EncodeText([Prompts[1]]), embeddings[1]);
        Assert.Equal(encoder.Pipeline.EncodeText([""]), negative[1]);
    }

    [Fact]
    public void LatentsMadeElsewhereDecodeToTheirColour()
    {
        var ml = new MLContext();
        float[] colour = [0.5f, -0.25f, 0f, 0f];
        var latents = TestModelFactory.ExpandTarget(colour, 8, 8);
        var table = ml.Data.LoadFromEnumerable(new[] { new LatentRow { Latents = latents } });
        using var decoder = ml.Transforms.DecodeLatents(Options(model.Path)).Fit(table);
        var image = ReadImages(decoder.Transform(table)).Single();
        Assert.Equal(64 * 64 * 4, image.Length);
        for (int c = 0; c < 3; c++) Assert.Equal(PipelineTestHelpers.ExpectedByte(colour[c]), image[c]);
    }

    [Fact]
    public void IntermediateColumnsAppearOnlyWhenAsked()
    {
        var ml = new MLContext();
        var table = Table(ml, 1);
        using (var plain = ml.Transforms.GenerateImages(Options(model.Path)).Fit(table))
        {
            var schema = plain.GetOutputSchema(table.Schema);
            Assert.Equal(["Prompt", "Id", "Image"], schema.Select(c => c.Name));
        }
        var options = Options(model.Path);
        options.PromptEmbeddingColumnName = "E";
        options.LatentsColumnName = "Z";
        using var full = ml.Transforms.GenerateImages(options).Fit(table);
        var output = full.Transform(table);
        Assert.Equal(["Prompt", "Id", "E", "Z", "Image"], output.Schema.Select(c => c.Name));
        // Asking only for the embeddings runs the text encoder and no UNet.
        long before = full.Pipeline.UNet.RunCount;
        var e = output.GetColumn<VBuffer<float>>("E").Single();
        Assert.Equal(full.Pipeline.EncodeText([Prompts[0]]), e.DenseValues());
        Assert.Equal(before, full.Pipeline.UNet.RunCount);
        var z = output.GetColumn<VBuffer<float>>("Z").Single();
        Assert.Equal(4 * 8 * 8, z.Length);
        Assert.Equal(before + 3, full.Pipeline.UNet.RunCount);
    }
}

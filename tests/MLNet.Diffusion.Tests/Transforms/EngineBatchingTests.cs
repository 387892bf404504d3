using Microsoft.ML;
using Microsoft.ML.Data;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

/// <summary>The transforms hand a whole batch of rows to the engine, which groups them and encodes each distinct text once.</summary>
public class EngineBatchingTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>
{
    private sealed class StepsRow
    {
        public string Prompt { get; set; } = "";
        public int Steps { get; set; }
    }

    private sealed class Recorder : IProgress<DiffusionBatchProgress>
    {
        public List<DiffusionBatchProgress> Reports { get; } = [];

        public void Report(DiffusionBatchProgress value) => Reports.Add(value);
    }

    [Fact]
    public void ABatchWhoseRowsNeedSeveralUNetBatchesCountsItsUNetCallsOnce()
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(new[]
        {
            new StepsRow { Prompt = "red cat", Steps = 2 },
            new StepsRow { Prompt = "blue dog", Steps = 0 }, // the options' 3
            new StepsRow { Prompt = "the horse", Steps = 2 },
        });
        var recorder = new Recorder();
        var options = Options(model.Path, batchSize: 3);
        options.StepsColumnName = "Steps";
        options.Progress = recorder;
        using var transformer = ml.Transforms.GenerateImages(options).Fit(table);
        long before = transformer.Pipeline.UNet.RunCount;
        Assert.Equal(3, ReadImages(transformer.Transform(table)).Count);
        Assert.Equal(2 + 3, transformer.Pipeline.UNet.RunCount - before);
        var denoising = recorder.Reports.Select(r => r.Stage).Where(s => s.Stage == DiffusionStage.Denoising).ToArray();
        Assert.Equal([1, 2, 3, 4, 5], denoising.Select(s => s.Step));
        Assert.All(denoising, s => Assert.Equal(5, s.Total));
    }

    [Fact]
    public void TheTextEncodingStageEncodesPromptsAndNegativePromptsInOneRun()
    {
        var ml = new MLContext();
        var rows = Enumerable.Range(0, 4).Select(i => new FullRow { Prompt = i % 2 == 0 ? "red cat" : "blue dog", Negative = "blurry" }).ToArray();
        var table = ml.Data.LoadFromEnumerable(rows);
        var options = Options(model.Path, batchSize: 4);
        options.NegativePromptColumnName = nameof(FullRow.Negative);
        using var encoder = ml.Transforms.EncodePrompts(options).Fit(table);
        var view = encoder.Transform(table);
        long runs = encoder.Pipeline.TextEncoder.RunCount, texts = encoder.Pipeline.TextEncoder.EncodedPromptCount;

        var columns = new[] { view.Schema["PromptEmbedding"], view.Schema["NegativePromptEmbedding"] };
        using var cursor = view.GetRowCursor(columns);
        var prompt = cursor.GetGetter<VBuffer<float>>(columns[0]);
        var negative = cursor.GetGetter<VBuffer<float>>(columns[1]);
        var read = new List<(float[] Prompt, float[] Negative)>();
        VBuffer<float> p = default, n = default;
        while (cursor.MoveNext())
        {
            prompt(ref p);
            negative(ref n);
            read.Add((p.DenseValues().ToArray(), n.DenseValues().ToArray()));
        }

        Assert.Equal(1, encoder.Pipeline.TextEncoder.RunCount - runs);
        Assert.Equal(3, encoder.Pipeline.TextEncoder.EncodedPromptCount - texts);
        for (int i = 0; i < rows.Length; i++)
        {
            Assert.Equal(encoder.Pipeline.EncodeText([rows[i].Prompt]), read[i].Prompt);
            Assert.Equal(encoder.Pipeline.EncodeText(["blurry"]), read[i].Negative);
        }
    }
}

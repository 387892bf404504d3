using Microsoft.ML;
using Microsoft.ML.Data;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

/// <summary>
/// Messages about a prompt name the data row as users count rows (1-based), not the prompt's place in a batch: a prompt
/// longer than CLIP's 75 tokens is noted as encoded in chunks, and an empty prompt is noted as an unconditional image.
/// The staged embedding column holds one chunk, so there the long prompt's row is refused, naming the column.
/// </summary>
public sealed class PromptNoteTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>
{
    private sealed class Row
    {
        public string Prompt { get; set; } = "";
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LongAndEmptyPromptMessagesNameTheDataRow(bool staged)
    {
        var ml = new MLContext();
        var messages = new List<string>();
        ml.Log += (_, e) => { lock (messages) messages.Add(e.Message); };
        string longPrompt = string.Join(" ", Enumerable.Repeat("red cat", 60));
        var table = ml.Data.LoadFromEnumerable(new[] { new Row { Prompt = "a red cat" }, new Row { Prompt = "blue dog" }, new Row { Prompt = longPrompt }, new Row { Prompt = "  " } });
        var options = Options(model.Path, batchSize: 4);
        if (staged)
        {
            using var encoder = ml.Transforms.EncodePrompts(options).Fit(table);
            var refused = Assert.Throws<InvalidOperationException>(() => encoder.Transform(table).GetColumn<VBuffer<float>>("PromptEmbedding").ToArray());
            Assert.Contains("Column 'PromptEmbedding' holds the text embeddings of one chunk of 77 token positions", refused.Message);
            Assert.Contains("the text of row 3 takes 2 chunks of 77 positions", refused.Message);
        }
        else
        {
            using var generator = ml.Transforms.GenerateImages(options).Fit(table);
            foreach (var image in generator.Transform(table).GetColumn<MLImage>("Image").ToArray()) image?.Dispose();
        }
        Assert.Contains(messages, m => m.Contains("The prompt of data row 3 has 120 tokens in 2 chunks", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Contains("The prompt of data row 4 is only spaces, so its image is unconditional", StringComparison.Ordinal));
        Assert.DoesNotContain(messages, m => m.Contains("of the batch", StringComparison.Ordinal));
    }
}

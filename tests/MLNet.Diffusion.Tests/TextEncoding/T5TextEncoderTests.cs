using Microsoft.Extensions.Logging;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.Support;
using MLNet.Diffusion.TextEncoding;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.Tests.TextEncoding;

/// <summary>
/// The T5 encoder of SD3 and FLUX against a tiny T5-shaped graph built here whose output reveals what it was given: row
/// [b, t] is (table[id][0], table[id][1], id, t), the first two channels gathered from an embedding table, so the ids
/// fed to the model, their padding and truncation, and the positions can be read back exactly.
/// </summary>
public sealed class T5TextEncoderTests : IDisposable
{
    private const int Width = 4, Vocabulary = 400, NanId = 2; // the unknown id's embedding is NaN
    private static readonly Lazy<T5Tokenizer> Tokenizer = new(() =>
        T5Tokenizer.Load(Path.Combine(AppContext.BaseDirectory, "Data", "t5")));
    private static readonly OnnxSessionFactory Sessions = new(new DiffusionRuntimeOptions());
    private readonly string _folder = Directory.CreateTempSubdirectory("t5-encoder-").FullName;

    public void Dispose() => Directory.Delete(_folder, true);

    /// <summary>Writes the test graph: <paramref name="fixedLength"/> null for a symbolic sequence axis.</summary>
    private string Graph(OnnxElementType idType = OnnxElementType.Int64, int? fixedLength = null, bool float16 = false, bool mask = false,
        string outputName = "last_hidden_state", bool symbolicWidth = false, string file = "model.onnx")
    {
        var g = new OnnxGraphBuilder("tiny_t5");
        object length = fixedLength is int n ? n : "sequence";
        string ids = g.Input("input_ids", idType, "batch", length);
        var table = new float[Vocabulary * 2];
        for (int v = 0; v < Vocabulary; v++)
        {
            table[2 * v] = v == NanId ? float.NaN : 0.5f * v;
            table[2 * v + 1] = -v;
        }
        string embedded = g.Gather(g.Initializer("shared.weight", table, Vocabulary, 2), ids); // [B, T, 2]
        string longIds = g.Cast(ids, OnnxElementType.Int64);
        // Position t: cumulative sum of ones (of the attention mask when the model takes one) along the sequence, minus 1.
        string ones = mask ? g.Cast(g.Input("attention_mask", OnnxElementType.Int64, "batch", length), OnnxElementType.Int64)
            : g.Add(g.Mul(longIds, g.Longs(0)), g.Longs(1));
        string position = g.Sub(g.Node("CumSum", [ones, g.Longs(1)]), g.Longs(1));
        string hidden = g.Concat(2, embedded,
            g.Unsqueeze(g.Cast(longIds, OnnxElementType.Float), 2), g.Unsqueeze(g.Cast(position, OnnxElementType.Float), 2));
        // A reshape to a shape computed at run time leaves the width unknown to shape inference, as in a large export.
        if (symbolicWidth) hidden = g.Node("Reshape", [hidden, g.Concat(0, g.Node("Shape", [ids]), g.Longs(-1))]);
        g.Identity(hidden, outputName);
        g.Output(outputName, OnnxElementType.Float, "batch", length, symbolicWidth ? "hidden" : Width);
        if (float16) g.ConvertToFloat16();
        string path = Path.Combine(_folder, file);
        g.Save(path);
        return path;
    }

    private static T5TextEncoder Open(string path) => new("text_encoder_3", path, Tokenizer.Value, Sessions);

    /// <summary>Channel <paramref name="channel"/> of each position of row <paramref name="row"/>.</summary>
    private static float[] Channel(float[] hidden, int row, int length, int channel) =>
        Enumerable.Range(0, length).Select(t => hidden[(row * length + t) * Width + channel]).ToArray();

    private static int[] Expected(string prompt, int length)
    {
        var ids = Tokenizer.Value.Encode(prompt);
        return ids.Length <= length ? [.. ids, .. new int[length - ids.Length]] : [.. ids[..(length - 1)], 1];
    }

    [Theory]
    [InlineData(OnnxElementType.Int32, false)]
    [InlineData(OnnxElementType.Int64, false)]
    [InlineData(OnnxElementType.Int64, true)]
    public void PromptsArePaddedWithTheEndIdThenZerosAndEncodedInOneRun(OnnxElementType idType, bool float16)
    {
        using var encoder = Open(Graph(idType, float16: float16));
        string[] prompts = ["a photo of an astronaut riding a horse on the moon", "", "café 3.14159"];
        const int length = 24;
        var hidden = encoder.Encode(prompts, length);
        Assert.Equal(prompts.Length * length * Width, hidden.Length);
        Assert.Equal(1, encoder.RunCount);
        Assert.Equal(Width, encoder.EmbeddingWidth);
        for (int row = 0; row < prompts.Length; row++)
        {
            var expected = Expected(prompts[row], length);
            Assert.Equal(expected.Select(id => (float)id), Channel(hidden, row, length, 2));
            Assert.Equal(expected.Select(id => 0.5f * id), Channel(hidden, row, length, 0));
            Assert.Equal(Enumerable.Range(0, length).Select(t => (float)t), Channel(hidden, row, length, 3));
        }
        Assert.Equal([1f, .. new float[length - 1]], Channel(hidden, 1, length, 2)); // the empty prompt: EOS, then padding
    }

    [Fact]
    public void ALongPromptKeepsItsFirstIdsAndTheEndIdAndTheOwnerIsWarned()
    {
        using var encoder = Open(Graph());
        const string prompt = "a photo of an astronaut riding a horse on the moon";
        int total = Tokenizer.Value.Encode(prompt).Length - 1; // content tokens
        const int length = 6;
        var logger = new ListLogger();
        var hidden = encoder.Encode(["red cat", prompt], length, default, logger, [TextOwner.PromptOf("data row 1"), TextOwner.PromptOf("data row 2")]);
        Assert.Equal(Expected(prompt, length).Select(id => (float)id), Channel(hidden, 1, length, 2));
        Assert.Equal(1f, Channel(hidden, 1, length, 2)[^1]);
        var note = Assert.Single(logger.Entries);
        Assert.Equal(LogLevel.Warning, note.Level);
        Assert.StartsWith($"The prompt of data row 2 has {total} T5 tokens, more than the 5 that fit in a sequence of 6 with its end token; the last {total - 5} are dropped", note.Message);
    }

    [Fact]
    public void AFixedSequenceLengthIsReportedAndAnotherOneIsRefusedNamingBoth()
    {
        using var encoder = Open(Graph(fixedLength: 16));
        Assert.Equal(16, encoder.FixedSequenceLength);
        Assert.Equal(16 * Width, encoder.Encode(["red cat"], 16).Length);
        var error = Assert.Throws<ArgumentException>(() => encoder.Encode(["red cat"], 256));
        Assert.Contains("model.onnx", error.Message);
        Assert.Contains("input_ids axis 1", error.Message);
        Assert.Contains("to 16, but a maximum sequence length of 256", error.Message);
        Assert.Contains("--max-sequence-length 16", error.Message);
        Assert.Equal(1, encoder.RunCount);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(513)]
    public void ASequenceLengthOutsideOneTo512IsRefused(int length)
    {
        using var encoder = Open(Graph());
        Assert.Equal(0, encoder.FixedSequenceLength);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => encoder.Encode(["red cat"], length));
        Assert.Contains("from 1 to 512", error.Message);
        Assert.Contains("text_encoder_3 model", error.Message);
        Assert.Contains("model.onnx", error.Message);
    }

    [Fact]
    public void ASymbolicWidthIsLearnedFromTheFirstRun()
    {
        using var encoder = Open(Graph(symbolicWidth: true, outputName: "hidden"));
        Assert.Equal(0, encoder.EmbeddingWidth);
        encoder.Encode(["red cat"], 8);
        Assert.Equal(Width, encoder.EmbeddingWidth);
    }

    [Fact]
    public void AnAttentionMaskInputIsGivenAllOnes()
    {
        using var encoder = Open(Graph(mask: true));
        var hidden = encoder.Encode(["red cat", ""], 10);
        // The position channel is the mask's running sum: all ones count 0..9.
        for (int row = 0; row < 2; row++) Assert.Equal(Enumerable.Range(0, 10).Select(t => (float)t), Channel(hidden, row, 10, 3));
    }

    [Fact]
    public void NonFiniteOutputIsRefused()
    {
        using var encoder = Open(Graph());
        Assert.Contains(NanId, Tokenizer.Value.Encode("☃"));
        var error = Assert.Throws<NonFiniteLatentsException>(() => encoder.Encode(["red cat", "☃"], 8));
        Assert.Contains("T5 text encoder output", error.Message);
    }

    [Fact]
    public void ACancelledTokenRunsNothingAndADisposedEncoderRefuses()
    {
        var encoder = Open(Graph());
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => encoder.Encode(["red cat"], 8, cancelled.Token));
        Assert.Equal(0, encoder.RunCount);
        Assert.Empty(encoder.Encode([], 8));
        encoder.Dispose();
        encoder.Dispose();
        Assert.Throws<ObjectDisposedException>(() => encoder.Encode(["red cat"], 8));
    }

    [Fact]
    public void OwnersMustMatchThePrompts()
    {
        using var encoder = Open(Graph());
        Assert.Throws<ArgumentException>(() => encoder.Encode(["a", "b"], 8, default, null, [TextOwner.PromptOf("image 1")]));
    }

    [Fact]
    public void ModelsOutsideTheContractAreRefusedNamingTheFile()
    {
        var floatIds = Assert.Throws<InvalidDataException>(() => Open(Graph(OnnxElementType.Float, file: "float_ids.onnx")));
        Assert.Contains("float_ids.onnx", floatIds.Message);
        Assert.Contains("input_ids", floatIds.Message);

        var g = new OnnxGraphBuilder("two_outputs");
        string ids = g.Input("input_ids", OnnxElementType.Int64, "batch", "sequence");
        string f = g.Unsqueeze(g.Cast(ids, OnnxElementType.Float), 2);
        g.Identity(f, "a");
        g.Identity(f, "b");
        g.Output("a", OnnxElementType.Float, "batch", "sequence", 1);
        g.Output("b", OnnxElementType.Float, "batch", "sequence", 1);
        string path = Path.Combine(_folder, "two_outputs.onnx");
        g.Save(path);
        var twoOutputs = Assert.Throws<InvalidDataException>(() => Open(path));
        Assert.Contains("two_outputs.onnx", twoOutputs.Message);
        Assert.Contains("last_hidden_state", twoOutputs.Message);

        var rank2 = new OnnxGraphBuilder("rank2");
        string ids2 = rank2.Input("input_ids", OnnxElementType.Int64, "batch", "sequence");
        rank2.Identity(rank2.Cast(ids2, OnnxElementType.Float), "last_hidden_state");
        rank2.Output("last_hidden_state", OnnxElementType.Float, "batch", "sequence");
        string rank2Path = Path.Combine(_folder, "rank2.onnx");
        rank2.Save(rank2Path);
        var rankError = Assert.Throws<InvalidDataException>(() => Open(rank2Path));
        Assert.Contains("rank2.onnx", rankError.Message);
        Assert.Contains("expected rank 3", rankError.Message);
    }
}

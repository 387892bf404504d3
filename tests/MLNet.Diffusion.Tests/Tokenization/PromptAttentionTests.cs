using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.TextEncoding;
using MLNet.Diffusion.Tokenization;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Tokenization;

/// <summary>
/// AUTOMATIC1111's attention syntax: the parser on the examples of <c>prompt_parser.parse_prompt_attention</c>'s
/// documentation and on hostile input, the weighted tokenization, and the emphasis applied to the encoder's output.
/// </summary>
public sealed class PromptAttentionTests
{
    private static (string, double)[] Parse(string prompt) =>
        [.. PromptAttention.Parse(prompt).Select(f => (f.IsBreak ? "BREAK" : f.Text, f.IsBreak ? -1 : Math.Round(f.Weight, 6)))];

    public static TheoryData<string, (string, double)[]> DocumentedExamples => new()
    {
        { "normal text", [("normal text", 1.0)] },
        { "an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)] },
        { "(unbalanced", [("unbalanced", 1.1)] },
        { @"\(literal\]", [("(literal]", 1.0)] },
        { "(unnecessary)(parens)", [("unnecessaryparens", 1.1)] },
        {
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55), (", sun, ", 1.1), ("sky", 1.4641), (".", 1.1)]
        },
    };

    [Theory]
    [MemberData(nameof(DocumentedExamples))]
    public void ParsesA1111sDocumentedExamples(string prompt, (string, double)[] expected) => Assert.Equal(expected, Parse(prompt));

    [Fact]
    public void SquareBracketsDivideNestedBracketsMultiplyAndBreakSeparatesChunks()
    {
        Assert.Equal([("a ", 1.0), ("b", Math.Round(1 / 1.1, 6))], Parse("a [b]"));
        Assert.Equal([("x", Math.Round(1.5 * 1.1, 6))], Parse("((x:1.5))")); // the weight closes the inner bracket, ")" the outer
        Assert.Equal([("a", 1.0), ("BREAK", -1), ("b", 1.0)], Parse("a BREAK b"));
        Assert.Equal([("aBREAKb", 1.0)], Parse("aBREAKb")); // a word of its own only
        Assert.Equal([("", 1.0)], Parse(""));
        Assert.Equal([("a: b", 1.0)], Parse("a: b")); // a colon without a weight is text
        Assert.Equal([("a)", 1.0)], Parse("a)")); // a closing bracket without an opener is text, as in A1111
    }

    [Theory]
    [InlineData("(a:1.2.3)")]
    [InlineData("(a:99999999999999999999999999)")]
    [InlineData("(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((a)))")]
    [InlineData("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[a")]
    [InlineData("((a:0)(b:1e5))")]
    [InlineData(@"\\\(\)\[\]\")]
    [InlineData(":::)))]]]((([[[")]
    public void HostileInputParsesWithFiniteBoundedWeights(string prompt)
    {
        foreach (var f in PromptAttention.Parse(prompt))
            Assert.True(double.IsFinite(f.Weight) && Math.Abs(f.Weight) <= PromptAttention.MaxWeight, $"{prompt}: {f}");
    }

    [Fact]
    public void AnyStringParsesWithoutThrowingAndWithFiniteWeights()
    {
        var random = new Random(12345);
        const string alphabet = "ab ():[]\\.,0123456789+-BREAK\n\t";
        for (int i = 0; i < 3000; i++)
        {
            var chars = new char[random.Next(0, 60)];
            for (int j = 0; j < chars.Length; j++) chars[j] = alphabet[random.Next(alphabet.Length)];
            var prompt = new string(chars);
            var fragments = PromptAttention.Parse(prompt);
            Assert.NotEmpty(fragments);
            Assert.All(fragments, f => Assert.True(double.IsFinite(f.Weight), prompt));
        }
    }

    [Fact]
    public void WeightedTokenizationGivesEachRunsIdsItsWeightAndCutsAfterBreak()
    {
        var dir = Directory.CreateTempSubdirectory("mlnet-attention-");
        ClipTokenizer tokenizer;
        try
        {
            TestTokenizer.Write(dir.FullName, null);
            tokenizer = ClipTokenizer.Load(dir.FullName);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
        var chunks = PromptChunker.Split(tokenizer, PromptAttention.Parse("a (red:1.5) cat"));
        Assert.False(chunks.Truncated);
        Assert.Equal(1, chunks.ChunkCount);
        Assert.Equal(tokenizer.Encode("a red cat"), chunks.Ids);
        Assert.Equal(3, chunks.TokenCount);
        Assert.Equal([1f, 1f, 1.5f, 1f, 1f], chunks.Weights![..5]);
        Assert.All(chunks.Weights[5..], w => Assert.Equal(1f, w));

        chunks = PromptChunker.Split(tokenizer, PromptAttention.Parse("a red BREAK cat"));
        Assert.Equal(2, chunks.ChunkCount); // the text after BREAK starts the next chunk
        Assert.Equal(tokenizer.Encode("a red").Concat(tokenizer.Encode("cat")), chunks.Ids);
    }

    [Fact]
    public void EmphasisScalesEachTokenAndRestoresTheBlocksMean()
    {
        const int length = 4, width = 3;
        var hidden = new float[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, /* row 2: all weights 1 */ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
        var weights = new float[] { 1, 2, 1, 0.5f, 1, 1, 1, 1 };
        var original = hidden.ToArray();
        TextEncoder.ApplyEmphasis(hidden, weights, rows: 2, length, width);
        double scale = original[..12].Sum() / original[..12].Select((v, i) => v * weights[i / width]).Sum();
        for (int i = 0; i < 12; i++) Assert.Equal(original[i] * weights[i / width] * scale, hidden[i], 4);
        Assert.Equal(original[..12].Average(), hidden[..12].Average(), 4);
        Assert.Equal(original[12..], hidden[12..]); // untouched, bit for bit
    }

    [Fact]
    public void APlainPromptGivesTodaysEmbeddingsAndAWeightedOneTheEmphasisedOnes()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var plain = pipeline.EncodeText(["a red cat"]);
        Assert.Equal(TestModelFactory.TextHiddenStates([.. TestTokenizer.Encode("a red cat")]), plain);
        var weighted = pipeline.EncodeText(["a (red:1.5) cat"]);
        var expected = TestModelFactory.TextHiddenStates([.. TestTokenizer.Encode("a red cat")]);
        var w = Enumerable.Repeat(1f, 77).ToArray();
        w[2] = 1.5f;
        TextEncoder.ApplyEmphasis(expected, w, 1, 77, 768);
        Assert.True(MaxAbsDiff(weighted, expected) < 1e-5);
        Assert.True(MaxAbsDiff(weighted, plain) > 1e-3);
    }
}

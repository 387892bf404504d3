using System.Text.Json;
using MLNet.Diffusion.Tokenization;
using Xunit;

namespace MLNet.Diffusion.Tests.Tokenization;

/// <summary>
/// The T5 (SentencePiece Unigram) tokenizer against SentencePiece's own ids for a model trained with T5's settings
/// (<c>Data/t5/make_t5_reference.py</c>): unicode normalisation, digits, whitespace runs, unknown characters.
/// </summary>
public sealed class T5TokenizerTests
{
    private static readonly string DataDirectory = Path.Combine(AppContext.BaseDirectory, "Data", "t5");
    private static readonly Lazy<T5Tokenizer> Tokenizer = new(() =>
        new T5Tokenizer(SentencePieceModel.Load(Path.Combine(DataDirectory, "t5_test.model")), "t5_test.model"));

    public static TheoryData<string, int[]> ReferenceCases()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDirectory, "t5_reference.json")));
        var data = new TheoryData<string, int[]>();
        foreach (var c in document.RootElement.GetProperty("cases").EnumerateArray())
            data.Add(c.GetProperty("text").GetString()!, c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        return data;
    }

    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public void IdsEqualSentencePiece(string text, int[] expected) =>
        Assert.Equal(expected, Tokenizer.Value.Encode(text));

    [Fact]
    public void ModelSettingsAreReadFromTheFile()
    {
        var model = SentencePieceModel.Load(Path.Combine(DataDirectory, "t5_test.model"));
        Assert.Equal((0, 1, 2, -1), (model.PadId, model.EosId, model.UnknownId, model.BosId));
        Assert.Equal("nmt_nfkc", model.NormalizerName);
        Assert.NotEmpty(model.PrecompiledCharsMap);
        Assert.Equal(400, model.Pieces.Count);
        Assert.Equal(SentencePieceType.Unknown, model.Pieces[2].Type);
    }

    [Fact]
    public void PaddingAndTruncationFollowDiffusers()
    {
        var tokenizer = Tokenizer.Value;
        var full = tokenizer.Encode("a photo of an astronaut riding a horse on the moon");
        var padded = tokenizer.Encode("a photo of an astronaut riding a horse on the moon", 32, out bool cut);
        Assert.False(cut);
        Assert.Equal(full, padded[..full.Length]);
        Assert.All(padded[full.Length..], id => Assert.Equal(tokenizer.PadId, id));

        var truncated = tokenizer.Encode("a photo of an astronaut riding a horse on the moon", 5, out cut);
        Assert.True(cut);
        Assert.Equal(full[..4].Append(tokenizer.EosId), truncated);
    }

    [Fact]
    public void NormalisationFoldsCompatibilityForms()
    {
        // NFKC: full-width letters and digits and the fi ligature read as their plain forms.
        var tokenizer = Tokenizer.Value;
        Assert.Equal(tokenizer.Encode("fullwidth 123 and fine"), tokenizer.Encode("ｆｕｌｌｗｉｄｔｈ １２３ and ﬁne"));
    }

    [Theory]
    [InlineData(new byte[] { 0x0A, 0x05 }, "a field of 5 bytes with 0 left")]
    [InlineData(new byte[] { 0x0A }, "runs past the end")]
    [InlineData(new byte[] { 0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 }, "longer than ten bytes")]
    [InlineData(new byte[] { 0x0B }, "wire type 3")]
    [InlineData(new byte[] { 0x10, 0x01 }, "no pieces")]
    public void MalformedModelsAreRefusedWithTheReason(byte[] data, string reason)
    {
        var error = Assert.Throws<InvalidDataException>(() => SentencePieceModel.Parse(data, "bad.model"));
        Assert.Contains("bad.model", error.Message);
        Assert.Contains(reason, error.Message);
    }

    [Fact]
    public void AMissingModelFileIsNamed()
    {
        var directory = Directory.CreateTempSubdirectory("t5-missing-").FullName;
        try
        {
            var error = Assert.Throws<FileNotFoundException>(() => T5Tokenizer.Load(directory));
            Assert.Contains("spiece.model", error.Message);
        }
        finally { Directory.Delete(directory, true); }
    }
}

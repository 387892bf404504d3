using System.Text;
using System.Text.Json.Nodes;
using MLNet.Diffusion.Tokenization;
using Xunit;

namespace MLNet.Diffusion.Tests.Tokenization;

/// <summary>
/// T5 tokenizers read from a Hugging Face <c>tokenizer.json</c> (<c>Data/t5/make_t5_tokenizer_json.py</c> converts the
/// test model as transformers' converter does): the same ids as SentencePiece's on the reference set, in both the
/// current and the older layout of the file, and errors that name the file and the key.
/// </summary>
public sealed class T5TokenizerJsonTests
{
    private static readonly string DataDirectory = Path.Combine(AppContext.BaseDirectory, "Data", "t5");
    private static readonly string JsonPath = Path.Combine(DataDirectory, "tokenizer.json");

    public static TheoryData<string, int[]> ReferenceCases() => T5TokenizerTests.ReferenceCases();

    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public void AFolderWithOnlyTokenizerJsonGivesSentencePiecesIds(string text, int[] expected)
    {
        using var folder = new TempFolder();
        File.Copy(JsonPath, Path.Combine(folder.Path, "tokenizer.json"));
        var tokenizer = T5Tokenizer.Load(folder.Path);
        Assert.Equal(expected, tokenizer.Encode(text));
        Assert.Equal((1, 0, 400), (tokenizer.EosId, tokenizer.PadId, tokenizer.VocabularySize));
    }

    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public void TheOlderLayoutGivesTheSameIds(string text, int[] expected)
    {
        // Files converted before 2024: the Precompiled normaliser alone, WhitespaceSplit then Metaspace with add_prefix_space.
        var json = JsonNode.Parse(File.ReadAllText(JsonPath))!;
        json["normalizer"] = json["normalizer"]!["normalizers"]![0]!.DeepClone();
        json["pre_tokenizer"] = JsonNode.Parse("""
            {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
             {"type": "Metaspace", "replacement": "▁", "add_prefix_space": true}]}
            """);
        var model = UnigramTokenizerJson.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()), "old/tokenizer.json");
        Assert.Equal(expected, new T5Tokenizer(model, "old/tokenizer.json").Encode(text));
    }

    [Fact]
    public void PiecesScoresAndSpecialIdsEqualTheModelFiles()
    {
        var fromJson = UnigramTokenizerJson.Load(JsonPath);
        var fromModel = SentencePieceModel.Load(Path.Combine(DataDirectory, "t5_test.model"));
        Assert.Equal(fromModel.Pieces, fromJson.Pieces);
        Assert.Equal(fromModel.PrecompiledCharsMap, fromJson.PrecompiledCharsMap);
        Assert.Equal((fromModel.UnknownId, fromModel.EosId, fromModel.PadId, fromModel.BosId),
            (fromJson.UnknownId, fromJson.EosId, fromJson.PadId, fromJson.BosId));
        Assert.Equal((fromModel.AddDummyPrefix, fromModel.RemoveExtraWhitespaces, fromModel.EscapeWhitespaces),
            (fromJson.AddDummyPrefix, fromJson.RemoveExtraWhitespaces, fromJson.EscapeWhitespaces));
    }

    [Fact]
    public void AModelWithoutItsTypeIsKnownByItsVocabulary()
    {
        var json = JsonNode.Parse(File.ReadAllText(JsonPath))!;
        json["model"]!.AsObject().Remove("type");
        var model = UnigramTokenizerJson.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()), "untyped/tokenizer.json");
        Assert.Equal([49, 43, 11, 1], new T5Tokenizer(model, "untyped/tokenizer.json").Encode("a photo of"));
    }

    [Fact]
    public void SpieceModelIsPreferredWhenBothAreThere()
    {
        using var folder = new TempFolder();
        File.Copy(Path.Combine(DataDirectory, "t5_test.model"), Path.Combine(folder.Path, "spiece.model"));
        File.WriteAllText(Path.Combine(folder.Path, "tokenizer.json"), "not json");
        Assert.Equal([49, 43, 11, 1], T5Tokenizer.Load(folder.Path).Encode("a photo of"));
    }

    [Fact]
    public void AFolderWithNeitherFileNamesBoth()
    {
        using var folder = new TempFolder();
        var error = Assert.Throws<FileNotFoundException>(() => T5Tokenizer.Load(folder.Path));
        Assert.Contains("spiece.model", error.Message);
        Assert.Contains("tokenizer.json", error.Message);
    }

    [Theory]
    [InlineData("model", null, "has no model")]
    [InlineData("model.type", "\"BPE\"", "model.type is \"BPE\"")]
    [InlineData("model.type", "7", "model.type is not a JSON string")]
    [InlineData("model.unk_id", "null", "model.unk_id is not a JSON number")]
    [InlineData("model.unk_id", "400", "model.unk_id 400 is not an id of its 400 pieces")]
    [InlineData("model.vocab", "[[\"a\"]]", "model.vocab[0] is not a [piece, score] pair")]
    [InlineData("normalizer", "{\"type\": \"Lowercase\"}", "normalizer.type is \"Lowercase\"")]
    [InlineData("normalizer", "{\"type\": \"Precompiled\", \"precompiled_charsmap\": \"%%\"}", "normalizer.precompiled_charsmap is not a base64 string")]
    [InlineData("pre_tokenizer", "{\"type\": \"Metaspace\", \"replacement\": \"_\"}", "pre_tokenizer.replacement is \"_\"")]
    [InlineData("pre_tokenizer", "null", "pre_tokenizer has no Metaspace")]
    [InlineData("post_processor", "{\"type\": \"BertProcessing\"}", "post_processor.type is \"BertProcessing\"")]
    [InlineData("added_tokens", "[{\"id\": 1, \"content\": \"<eos>\", \"special\": true}]", "added_tokens[0] gives id 1 to \"<eos>\"")]
    public void MalformedFilesAreRefusedNamingTheFileAndTheKey(string key, string? value, string expected)
    {
        var json = JsonNode.Parse(File.ReadAllText(JsonPath))!.AsObject();
        var parts = key.Split('.');
        var parent = parts.Length == 1 ? json : json[parts[0]]!.AsObject();
        if (value is null) parent.Remove(parts[^1]);
        else parent[parts[^1]] = JsonNode.Parse(value);
        var error = Record.Exception(() => UnigramTokenizerJson.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()), "bad/tokenizer.json"));
        Assert.True(error is InvalidDataException or NotSupportedException, error?.ToString());
        Assert.Contains("bad/tokenizer.json", error!.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void ByteFallbackModelsAreRefused()
    {
        var json = JsonNode.Parse(File.ReadAllText(JsonPath))!;
        json["model"]!["byte_fallback"] = true;
        var model = UnigramTokenizerJson.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()), "fallback/tokenizer.json");
        var error = Assert.Throws<NotSupportedException>(() => new T5Tokenizer(model, "fallback/tokenizer.json"));
        Assert.Contains("byte_fallback", error.Message);
    }

    [Fact]
    public void EncodingIntoASpanPadsAndCountsTheDroppedIds()
    {
        var tokenizer = T5Tokenizer.Load(DataDirectory); // the folder has no spiece.model: its tokenizer.json is read
        var full = tokenizer.Encode("a photo of an astronaut riding a horse on the moon");
        var ids = new int[full.Length + 3];
        Assert.Equal(0, tokenizer.Encode("a photo of an astronaut riding a horse on the moon", ids));
        Assert.Equal([.. full, 0, 0, 0], ids);
        ids = new int[5];
        Assert.Equal(full.Length - 5, tokenizer.Encode("a photo of an astronaut riding a horse on the moon", ids));
        Assert.Equal([.. full[..4], 1], ids);
    }

    private sealed class TempFolder : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("t5-json-").FullName;

        public void Dispose() => Directory.Delete(Path, true);
    }
}

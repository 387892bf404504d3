using System.Text;
using System.Text.Json;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.Tests.Tokenization;

public sealed class ClipTokenizerTests
{
    private const int StartOfText = 49406;
    private const int EndOfText = 49407;

    private static readonly Lazy<ClipTokenizer> SharedTokenizer = new(() => ClipTokenizer.Load(ClipTestData.Directory));

    private static ClipTokenizer Shared() => SharedTokenizer.Value;

    private static IEnumerable<(string Text, int[] Ids)> ReferencePrompts(string dir)
    {
        foreach (string line in File.ReadLines(Path.Combine(dir, "reference_ids.jsonl")))
        {
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            using JsonDocument doc = JsonDocument.Parse(line);
            string text = doc.RootElement.GetProperty("text").GetString()!;
            int[] ids = doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            yield return (text, ids);
        }
    }

    // ---- the real CLIP vocabulary ----

    [Fact]
    public void ReproducesEveryReferenceIdSequence()
    {
        string dir = ClipTestData.Directory;
        ClipTokenizer tokenizer = Shared();
        var prompts = ReferencePrompts(dir).ToList();
        Assert.NotEmpty(prompts);

        foreach ((string text, int[] expected) in prompts)
        {
            int[] ids = tokenizer.Encode(text);
            Assert.Equal(77, ids.Length);
            Assert.True(expected.SequenceEqual(ids.Take(expected.Length)),
                $"'{text}': expected [{string.Join(", ", expected)}], got [{string.Join(", ", ids.Take(expected.Length + 2))}…]");
            Assert.All(ids.Skip(expected.Length), id => Assert.Equal(tokenizer.PadId, id));
            Assert.Equal(expected[1..^1], tokenizer.EncodeContent(text));
        }
    }

    [Fact]
    public void LooksUpSpecialIdsInTheVocabularyAndPadsWithEosByDefault()
    {
        ClipTokenizer tokenizer = Shared();
        Assert.Equal(77, tokenizer.MaxLength);
        Assert.Equal(StartOfText, tokenizer.BosId);
        Assert.Equal(EndOfText, tokenizer.EosId);
        Assert.Equal(EndOfText, tokenizer.PadId);
    }

    [Fact]
    public void CreateWithDefaultOptionsMatchesLoad()
    {
        string dir = ClipTestData.Directory;
        ClipTokenizer created = ClipTokenizer.Create(Path.Combine(dir, "vocab.json"), Path.Combine(dir, "merges.txt"));
        Assert.Equal(Shared().Encode("a photo of a cat"), created.Encode("a photo of a cat"));
    }

    [Theory]
    [InlineData("tokenizer_config.json", "{\"pad_token\": \"!\", \"model_max_length\": 77}")]
    [InlineData("tokenizer_config.json", "{\"pad_token\": {\"__type\": \"AddedToken\", \"content\": \"!\", \"lstrip\": false}, \"model_max_length\": 1000000000000000019884624838656}")]
    [InlineData("special_tokens_map.json", "{\"bos_token\": \"<|startoftext|>\", \"eos_token\": \"<|endoftext|>\", \"pad_token\": {\"content\": \"!\", \"normalized\": false}}")]
    public void ReadsThePadTokenFromTheFolder(string fileName, string json)
    {
        string dir = ClipTestData.Directory;
        using var folder = TempFolder.WithSharedVocabulary(dir);
        folder.Write(fileName, json);

        ClipTokenizer tokenizer = ClipTokenizer.Load(folder.Path);

        int bang = ReadVocabulary(dir)["!"];
        Assert.Equal(bang, tokenizer.PadId);
        Assert.Equal(77, tokenizer.MaxLength);
        int[] ids = tokenizer.Encode("a photo of a cat");
        Assert.Equal(new[] { StartOfText, 320, 1125, 539, 320, 2368, EndOfText }, ids[..7]);
        Assert.All(ids[7..], id => Assert.Equal(bang, id));
    }

    [Fact]
    public void SpecialTokensMapWinsOverTokenizerConfig()
    {
        string dir = ClipTestData.Directory;
        using var folder = TempFolder.WithSharedVocabulary(dir);
        folder.Write("tokenizer_config.json", "{\"pad_token\": \"<|endoftext|>\", \"model_max_length\": 16}");
        folder.Write("special_tokens_map.json", "{\"pad_token\": \"!\"}");

        ClipTokenizer tokenizer = ClipTokenizer.Load(folder.Path);

        Assert.Equal(ReadVocabulary(dir)["!"], tokenizer.PadId);
        Assert.Equal(16, tokenizer.MaxLength);
        Assert.Equal(16, tokenizer.Encode("a photo of a cat").Length);
    }

    [Fact]
    public void TruncatesALongPromptTo75ContentTokens()
    {
        ClipTokenizer tokenizer = Shared();
        string prompt = string.Join(' ', Enumerable.Range(0, 200).Select(i => i % 2 == 0 ? "cat" : "photo"));

        var ids = new int[77];
        int count = tokenizer.Encode(prompt, ids, out bool truncated);

        Assert.True(truncated);
        Assert.Equal(76, count); // counting stops one past the 75 kept tokens
        Assert.Equal(StartOfText, ids[0]);
        Assert.Equal(EndOfText, ids[76]);
        Assert.DoesNotContain(EndOfText, ids[1..76]);
        Assert.Equal(tokenizer.EncodeContent(prompt).Take(75), ids[1..76]);
        Assert.Equal(ids, tokenizer.Encode(prompt));
        Assert.Equal(200, tokenizer.EncodeContent(prompt).Count);
    }

    [Fact]
    public void Exactly75ContentTokensAreNotTruncated()
    {
        ClipTokenizer tokenizer = Shared();
        string prompt = string.Join(' ', Enumerable.Repeat("cat", 75));

        var ids = new int[80];
        ids.AsSpan().Fill(-1);
        int count = tokenizer.Encode(prompt, ids, out bool truncated);

        Assert.False(truncated);
        Assert.Equal(75, count);
        Assert.Equal(EndOfText, ids[76]);
        Assert.All(ids[77..], id => Assert.Equal(-1, id)); // past MaxLength: left alone
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("\t\r\n\u00a0\u2003")]
    public void EmptyTextGivesBosEosAndPadding(string text)
    {
        ClipTokenizer tokenizer = Shared();
        int[] ids = tokenizer.Encode(text);
        Assert.Equal(StartOfText, ids[0]);
        Assert.Equal(EndOfText, ids[1]);
        Assert.All(ids[2..], id => Assert.Equal(tokenizer.PadId, id));
        Assert.Empty(tokenizer.EncodeContent(text));
        Assert.Equal(0, tokenizer.Encode(text, new int[77], out bool truncated));
        Assert.False(truncated);
    }

    [Theory]
    [InlineData("  A   Photo\tOF\na  CAT  ")]
    [InlineData("A PHOTO OF A CAT")]
    [InlineData("a\u00a0photo\u2003of a\r\ncat")]
    public void WhitespaceAndCaseDoNotMatter(string text)
    {
        ClipTokenizer tokenizer = Shared();
        Assert.Equal(tokenizer.Encode("a photo of a cat"), tokenizer.Encode(text));
    }

    [Fact]
    public void ComposedAndDecomposedAccentsEncodeAlike()
    {
        ClipTokenizer tokenizer = Shared();
        Assert.Equal(tokenizer.Encode("caf\u00e9"), tokenizer.Encode("cafe\u0301"));
    }

    [Theory]
    [InlineData("a \ud800 cat")]            // lone high surrogate
    [InlineData("\udc00a cat")]              // lone low surrogate
    [InlineData("cat\ud83d")]                // high surrogate at the very end
    [InlineData("a\u0000b\u0007c\u001b[31m\u007f\u0085d")]
    [InlineData("\ud83d\ude00 emoji \u4e2d\u6587 \u0645\u0631\u062d\u0628\u0627")]
    [InlineData("<|endoftext|><|startoftext|> <|endoftext")]
    [InlineData("\uFEFF\u200B\u200D\uFFFF\uFFFE")]
    [InlineData("\uFDD0 \U0001FFFE \U0010FFFF e\u0301")]
    public void OddTextDoesNotThrow(string text)
    {
        ClipTokenizer tokenizer = Shared();
        int[] ids = tokenizer.Encode(text);
        Assert.Equal(77, ids.Length);
        Assert.Equal(StartOfText, ids[0]);
        Assert.Contains(EndOfText, ids[1..]);
    }

    [Fact]
    public void ControlCharactersAreDropped()
    {
        ClipTokenizer tokenizer = Shared();
        Assert.Equal(tokenizer.Encode("a cat"), tokenizer.Encode("a\u0000 c\u0007a\u001bt"));
    }

    [Fact]
    public void SpecialTokensInTheTextMapToTheirIds()
    {
        ClipTokenizer tokenizer = Shared();
        Assert.Equal(new[] { 2368, EndOfText, StartOfText }, tokenizer.EncodeContent("cat<|endoftext|> <|startoftext|>"));
    }

    [Fact]
    public void A100KBPromptIsEncoded()
    {
        ClipTokenizer tokenizer = Shared();
        var random = new Random(1234);
        var builder = new StringBuilder();
        while (builder.Length < 100_000)
        {
            builder.Append(random.Next(8) switch
            {
                0 => "astronaut ",
                1 => "!!?? ",
                2 => "\u4e2d\u6587",
                3 => "12345 ",
                4 => "\ud83d\ude00",
                5 => "supercalifragilistic",
                6 => "\t\n",
                _ => "Ünïcödé ",
            });
        }

        string text = builder.ToString();
        int count = tokenizer.Encode(text, new int[77], out bool truncated);
        Assert.True(truncated);
        Assert.True(count > 75);

        string oneWord = new('a', 100_000);
        Assert.Equal(77, tokenizer.Encode(oneWord).Length);
    }

    [Fact]
    public void ConcurrentEncodesAgreeWithSequentialOnes()
    {
        string dir = ClipTestData.Directory;
        ClipTokenizer tokenizer = Shared();
        var random = new Random(99);
        string[] words = ["cat", "photograph", "astronaut", "riding", "horse", "cyberpunk-city", "neon_lights", "4k", "(ultra-detailed)", "don't", "Hello,", "world!!"];
        var prompts = ReferencePrompts(dir).Select(p => p.Text)
            .Concat(Enumerable.Range(0, 200).Select(_ => string.Join(' ', Enumerable.Range(0, random.Next(1, 40)).Select(_ => words[random.Next(words.Length)]) .Append(random.Next(100000).ToString()))))
            .ToArray();
        int[][] expected = prompts.Select(tokenizer.Encode).ToArray();

        Parallel.For(0, prompts.Length * 20, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            int k = i % prompts.Length;
            Assert.Equal(expected[k], tokenizer.Encode(prompts[k]));
        });
    }

    [Fact]
    public void NullTextThrows()
    {
        using var folder = TempFolder.WithTinyVocabulary(includeBos: true, includeEos: true);
        ClipTokenizer tokenizer = ClipTokenizer.Load(folder.Path);
        Assert.Throws<ArgumentNullException>(() => tokenizer.Encode(null!));
        Assert.Throws<ArgumentNullException>(() => tokenizer.EncodeContent(null!));
        Assert.Throws<ArgumentNullException>(() => tokenizer.Encode(null!, new int[77], out _));
    }

    [Fact]
    public void TooShortDestinationThrows()
    {
        using var folder = TempFolder.WithTinyVocabulary(includeBos: true, includeEos: true);
        ClipTokenizer tokenizer = ClipTokenizer.Load(folder.Path);
        Assert.Throws<ArgumentException>(() => tokenizer.Encode("ab", new int[76], out _));
    }

    // ---- generated vocabularies (no shared data needed) ----

    [Fact]
    public void SmallGeneratedVocabularyUsesItsOwnSpecialIds()
    {
        using var folder = TempFolder.WithTinyVocabulary(includeBos: true, includeEos: true);
        folder.Write("tokenizer_config.json", "{\"pad_token\": \"!\", \"model_max_length\": 8}");

        ClipTokenizer tokenizer = ClipTokenizer.Load(folder.Path);

        Assert.Equal(8, tokenizer.MaxLength);
        Assert.Equal(5, tokenizer.BosId);
        Assert.Equal(6, tokenizer.EosId);
        Assert.Equal(7, tokenizer.PadId);
        // "ab" merges into one token; "ba" stays as b + a</w>.
        Assert.Equal(new[] { 5, 4, 2, 1, 6, 7, 7, 7 }, tokenizer.Encode("AB ba"));
    }

    [Fact]
    public void OptionsSetPadTokenAndLength()
    {
        using var folder = TempFolder.WithTinyVocabulary(includeBos: true, includeEos: true);
        ClipTokenizer tokenizer = ClipTokenizer.Create(folder.File("vocab.json"), folder.File("merges.txt"),
            new ClipTokenizerOptions { PadToken = "!", MaxLength = 4 });

        Assert.Equal(new[] { 5, 4, 4, 6 }, tokenizer.Encode("ab ab ab"));
        Assert.Equal(3, tokenizer.Encode("ab ab ab", new int[4], out bool truncated));
        Assert.True(truncated);
        Assert.Equal(new[] { 5, 6, 7, 7 }, tokenizer.Encode(""));
    }

    [Fact]
    public void RejectsAMaxLengthBelowThree()
    {
        using var folder = TempFolder.WithTinyVocabulary(includeBos: true, includeEos: true);
        Assert.Throws<ArgumentOutOfRangeException>(() => ClipTokenizer.Create(folder.File("vocab.json"), folder.File("merges.txt"),
            new ClipTokenizerOptions { MaxLength = 2 }));

        folder.Write("tokenizer_config.json", "{\"model_max_length\": 0}");
        var e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.Load(folder.Path));
        Assert.Contains("tokenizer_config.json", e.Message);
        Assert.Contains("model_max_length", e.Message);
    }

    [Theory]
    [InlineData(false, true, "<|startoftext|>")]
    [InlineData(true, false, "<|endoftext|>")]
    public void VocabularyWithoutASpecialTokenIsRejected(bool includeBos, bool includeEos, string missing)
    {
        using var folder = TempFolder.WithTinyVocabulary(includeBos, includeEos);
        var e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.Load(folder.Path));
        Assert.Contains(folder.File("vocab.json"), e.Message);
        Assert.Contains(missing, e.Message);
    }

    [Fact]
    public void VocabularyWithoutThePadTokenIsRejected()
    {
        using var folder = TempFolder.WithTinyVocabulary(includeBos: true, includeEos: true);
        folder.Write("special_tokens_map.json", "{\"pad_token\": {\"content\": \"<pad>\"}}");
        var e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.Load(folder.Path));
        Assert.Contains(folder.File("vocab.json"), e.Message);
        Assert.Contains("<pad>", e.Message);
    }

    [Fact]
    public void BrokenFilesAreNamed()
    {
        using var folder = TempFolder.WithTinyVocabulary(includeBos: true, includeEos: true);
        folder.Write("tokenizer_config.json", "{ not json");
        var e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.Load(folder.Path));
        Assert.Contains("tokenizer_config.json", e.Message);

        folder.Write("tokenizer_config.json", "{}");
        folder.Write("merges.txt", "#version: 0.2\na b</w>\nnot-a-merge\n");
        e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.Load(folder.Path));
        Assert.Contains("merges.txt", e.Message);
        Assert.Contains("line 3", e.Message);

        folder.Write("merges.txt", "#version: 0.2\na zz</w>\n");
        e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.Load(folder.Path));
        Assert.Contains("merges.txt", e.Message);

        folder.Write("vocab.json", "[1, 2, 3]");
        e = Assert.Throws<InvalidDataException>(() => ClipTokenizer.Load(folder.Path));
        Assert.Contains("vocab.json", e.Message);
    }

    [Fact]
    public void MissingVocabNamesTheFile()
    {
        using var folder = new TempFolder();
        var e = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.Load(folder.Path));
        Assert.Equal(folder.File("vocab.json"), e.FileName);
        Assert.Contains(folder.File("vocab.json"), e.Message);
        Assert.Contains("merges.txt", e.Message);
    }

    [Fact]
    public void MissingMergesNamesTheFile()
    {
        using var folder = TempFolder.WithTinyVocabulary(includeBos: true, includeEos: true);
        File.Delete(folder.File("merges.txt"));
        var e = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.Load(folder.Path));
        Assert.Equal(folder.File("merges.txt"), e.FileName);
        Assert.Contains("vocab.json", e.Message);

        e = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.Create(folder.File("vocab.json"), folder.File("merges.txt")));
        Assert.Equal(folder.File("merges.txt"), e.FileName);
    }

    [Fact]
    public void MissingFolderNamesVocabJson()
    {
        string path = Path.Combine(Path.GetTempPath(), "mlnet-clip-absent-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<FileNotFoundException>(() => ClipTokenizer.Load(path));
        Assert.Equal(Path.Combine(path, "vocab.json"), e.FileName);
    }

    private static Dictionary<string, int> ReadVocabulary(string dir) =>
        JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(Path.Combine(dir, "vocab.json")))!;

    /// <summary>A tokenizer folder under the system temp folder, removed on dispose.</summary>
    private sealed class TempFolder : IDisposable
    {
        public TempFolder()
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "mlnet-clip-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(Path);
        }

        public string Path { get; }

        public string File(string name) => System.IO.Path.Combine(Path, name);

        public void Write(string name, string content) => System.IO.File.WriteAllText(File(name), content);

        /// <summary>A copy of the shared CLIP vocabulary and merges (the shared files are read-only, so bytes are copied, not attributes).</summary>
        public static TempFolder WithSharedVocabulary(string sharedDir)
        {
            var folder = new TempFolder();
            foreach (string name in new[] { "vocab.json", "merges.txt" })
            {
                System.IO.File.WriteAllBytes(folder.File(name), System.IO.File.ReadAllBytes(System.IO.Path.Combine(sharedDir, name)));
            }

            return folder;
        }

        /// <summary>
        /// A tiny byte-level vocabulary like the demo model's: a, b (with and without &lt;/w&gt;), ab&lt;/w&gt;, then the
        /// special tokens at ids of its own, and one merge.
        /// </summary>
        public static TempFolder WithTinyVocabulary(bool includeBos, bool includeEos)
        {
            var vocab = new Dictionary<string, int>
            {
                ["a"] = 0, ["a</w>"] = 1, ["b"] = 2, ["b</w>"] = 3, ["ab</w>"] = 4, ["!"] = 7,
            };
            if (includeBos)
            {
                vocab["<|startoftext|>"] = 5;
            }

            if (includeEos)
            {
                vocab["<|endoftext|>"] = 6;
            }

            var folder = new TempFolder();
            folder.Write("vocab.json", JsonSerializer.Serialize(vocab));
            folder.Write("merges.txt", "#version: 0.2\na b</w>\n");
            return folder;
        }

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}

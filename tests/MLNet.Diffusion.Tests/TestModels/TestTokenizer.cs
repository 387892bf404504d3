using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>
/// A tiny CLIP-format byte-level BPE vocabulary, generated in code, and a reference encoder for it.
/// </summary>
/// <remarks>
/// Layout, as in CLIP's <c>vocab.json</c>: ids 0–255 are the 256 byte tokens in the order of GPT-2/CLIP's
/// <c>bytes_to_unicode</c> (so "!" is id 0), ids 256–511 the same with <c>&lt;/w&gt;</c> (end of word), then one
/// id per merge result in merge order, then <c>&lt;|startoftext|&gt;</c> and <c>&lt;|endoftext|&gt;</c> as the
/// last two ids. The merges make each of <see cref="Words"/> a single token; any other word falls back to
/// smaller pieces (ultimately bytes). <c>merges.txt</c> starts with <c>#version: 0.2</c>.
/// </remarks>
public static class TestTokenizer
{
    /// <summary>The words that the merges turn into single tokens (as "word&lt;/w&gt;").</summary>
    public static IReadOnlyList<string> Words { get; } =
        ["photo", "of", "cat", "dog", "the", "red", "blue", "painting", "astronaut", "riding", "horse", "an"];

    /// <summary>The start-of-text token.</summary>
    public const string StartOfText = "<|startoftext|>";

    /// <summary>The end-of-text token (also the unknown token, and the SD 1.x pad token).</summary>
    public const string EndOfText = "<|endoftext|>";

    /// <summary>CLIP's sequence length.</summary>
    public const int MaxLength = 77;

    private static readonly Lazy<Data> s_data = new(BuildData);

    /// <summary>Every token, indexed by id.</summary>
    public static IReadOnlyList<string> Vocabulary => s_data.Value.Vocab;

    /// <summary>The merges, highest priority first (the lines of merges.txt after the header).</summary>
    public static IReadOnlyList<(string Left, string Right)> Merges => s_data.Value.Merges;

    /// <summary>The id of <see cref="StartOfText"/> (second to last).</summary>
    public static int StartOfTextId => s_data.Value.Vocab.Count - 2;

    /// <summary>The id of <see cref="EndOfText"/> (last).</summary>
    public static int EndOfTextId => s_data.Value.Vocab.Count - 1;

    /// <summary>The id of a token string.</summary>
    /// <exception cref="KeyNotFoundException">The token is not in the vocabulary.</exception>
    public static int TokenId(string token) => s_data.Value.Ids[token];

    /// <summary>GPT-2/CLIP's <c>bytes_to_unicode</c>: the printable character that stands for each byte.</summary>
    public static IReadOnlyList<char> ByteToUnicode => s_data.Value.ByteChars;

    /// <summary>
    /// CLIP's BPE of one pre-tokenized, byte-encoded word: the last character carries <c>&lt;/w&gt;</c>, then
    /// the lowest-ranked adjacent pair is merged (all its occurrences) until no pair is in the merges.
    /// </summary>
    public static IReadOnlyList<string> Bpe(string byteEncodedWord) => Bpe(byteEncodedWord, s_data.Value.Ranks);

    /// <summary>
    /// A reference encoding, as transformers' <c>CLIPTokenizer</c> pads for Stable Diffusion: whitespace
    /// collapsed, lower-cased, split with CLIP's pattern, byte-encoded, BPE; then
    /// <c>[bos] tokens… [eos]</c> truncated to 77 and padded to 77 with <paramref name="padToken"/>
    /// (<see cref="EndOfText"/> for SD 1.x, "!" for SD 2.x). ftfy and HTML unescaping are not applied.
    /// </summary>
    public static long[] Encode(string prompt, string? padToken = null)
    {
        var ids = new List<long> { StartOfTextId };
        string text = Regex.Replace(prompt, @"\s+", " ").Trim().ToLowerInvariant();
        foreach (Match m in Regex.Matches(text, @"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"))
        {
            var sb = new StringBuilder();
            foreach (byte b in Encoding.UTF8.GetBytes(m.Value)) sb.Append(ByteToUnicode[b]);
            foreach (var token in Bpe(sb.ToString())) ids.Add(TokenId(token));
        }
        if (ids.Count > MaxLength - 1) ids.RemoveRange(MaxLength - 1, ids.Count - (MaxLength - 1));
        ids.Add(EndOfTextId);
        long pad = TokenId(padToken ?? EndOfText);
        while (ids.Count < MaxLength) ids.Add(pad);
        return [.. ids];
    }

    /// <summary>Writes vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json.</summary>
    internal static void Write(string tokenizerDirectory, string? padToken)
    {
        Directory.CreateDirectory(tokenizerDirectory);
        var data = s_data.Value;
        var relaxed = new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

        using (var stream = File.Create(Path.Combine(tokenizerDirectory, "vocab.json")))
        using (var w = new Utf8JsonWriter(stream, relaxed))
        {
            w.WriteStartObject();
            for (int i = 0; i < data.Vocab.Count; i++) w.WriteNumber(data.Vocab[i], i);
            w.WriteEndObject();
        }

        var merges = new StringBuilder("#version: 0.2\n");
        foreach (var (l, r) in data.Merges) merges.Append(l).Append(' ').Append(r).Append('\n');
        File.WriteAllText(Path.Combine(tokenizerDirectory, "merges.txt"), merges.ToString());

        using (var stream = File.Create(Path.Combine(tokenizerDirectory, "tokenizer_config.json")))
        using (var w = new Utf8JsonWriter(stream, relaxed))
        {
            // The SD 1.5 file's shape: bos/eos/unk as AddedToken objects, pad as a plain string.
            w.WriteStartObject();
            w.WriteBoolean("add_prefix_space", false);
            WriteAddedToken(w, "bos_token", StartOfText);
            w.WriteBoolean("do_lower_case", true);
            WriteAddedToken(w, "eos_token", EndOfText);
            w.WriteString("errors", "replace");
            w.WriteNumber("model_max_length", MaxLength);
            w.WriteString("pad_token", padToken ?? EndOfText);
            w.WriteString("tokenizer_class", "CLIPTokenizer");
            WriteAddedToken(w, "unk_token", EndOfText);
            w.WriteEndObject();
        }

        using (var stream = File.Create(Path.Combine(tokenizerDirectory, "special_tokens_map.json")))
        using (var w = new Utf8JsonWriter(stream, relaxed))
        {
            w.WriteStartObject();
            w.WriteString("bos_token", StartOfText);
            w.WriteString("eos_token", EndOfText);
            w.WriteString("pad_token", padToken ?? EndOfText);
            w.WriteString("unk_token", EndOfText);
            w.WriteEndObject();
        }
    }

    private static void WriteAddedToken(Utf8JsonWriter w, string key, string content)
    {
        w.WriteStartObject(key);
        w.WriteString("__type", "AddedToken");
        w.WriteString("content", content);
        w.WriteBoolean("lstrip", false);
        w.WriteBoolean("normalized", true);
        w.WriteBoolean("rstrip", false);
        w.WriteBoolean("single_word", false);
        w.WriteEndObject();
    }

    private sealed record Data(List<string> Vocab, Dictionary<string, int> Ids, List<(string, string)> Merges,
        Dictionary<(string, string), int> Ranks, char[] ByteChars);

    private static Data BuildData()
    {
        // bytes_to_unicode: printable Latin-1 bytes map to themselves, the others to 256 + n, in this order.
        var bs = new List<int>();
        for (int b = '!'; b <= '~'; b++) bs.Add(b);
        for (int b = '¡'; b <= '¬'; b++) bs.Add(b);
        for (int b = '®'; b <= 'ÿ'; b++) bs.Add(b);
        var cs = new List<int>(bs);
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            if (bs.Contains(b)) continue;
            bs.Add(b);
            cs.Add(256 + n++);
        }
        var byteChars = new char[256];
        for (int i = 0; i < 256; i++) byteChars[bs[i]] = (char)cs[i];

        var vocab = new List<string>();
        foreach (var c in cs) vocab.Add(((char)c).ToString());
        foreach (var c in cs) vocab.Add((char)c + "</w>");
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < vocab.Count; i++) ids.Add(vocab[i], i);

        // Merges: for each word, encode with the merges so far and join the first two pieces until the word
        // is one token. A merge added later ranks lower, so it never changes an earlier word's encoding.
        var merges = new List<(string, string)>();
        var ranks = new Dictionary<(string, string), int>();
        foreach (var word in Words)
        {
            while (true)
            {
                var pieces = Bpe(word, ranks);
                if (pieces.Count == 1) break;
                var pair = (pieces[0], pieces[1]);
                ranks.Add(pair, merges.Count);
                merges.Add(pair);
                string joined = pieces[0] + pieces[1];
                if (ids.TryAdd(joined, vocab.Count)) vocab.Add(joined);
            }
        }
        foreach (var special in new[] { StartOfText, EndOfText })
        {
            ids.Add(special, vocab.Count);
            vocab.Add(special);
        }
        return new Data(vocab, ids, merges, ranks, byteChars);
    }

    private static List<string> Bpe(string word, Dictionary<(string, string), int> ranks)
    {
        var parts = new List<string>();
        for (int i = 0; i < word.Length - 1; i++) parts.Add(word[i].ToString());
        parts.Add(word[^1] + "</w>");
        while (parts.Count > 1)
        {
            int best = int.MaxValue;
            (string, string) bestPair = default;
            for (int i = 0; i < parts.Count - 1; i++)
                if (ranks.TryGetValue((parts[i], parts[i + 1]), out int r) && r < best) { best = r; bestPair = (parts[i], parts[i + 1]); }
            if (best == int.MaxValue) break;
            var merged = new List<string>(parts.Count);
            for (int i = 0; i < parts.Count; i++)
            {
                if (i < parts.Count - 1 && parts[i] == bestPair.Item1 && parts[i + 1] == bestPair.Item2)
                {
                    merged.Add(parts[i] + parts[i + 1]);
                    i++;
                }
                else merged.Add(parts[i]);
            }
            parts = merged;
        }
        return parts;
    }
}

using System.Text;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// Writes a CLIP-format byte-level BPE tokenizer (<c>vocab.json</c>, <c>merges.txt</c>, <c>tokenizer_config.json</c>,
/// <c>special_tokens_map.json</c>) whose vocabulary holds every demo word as one token.
/// </summary>
/// <remarks>
/// The layout follows CLIP's: ids 0–255 are the 256 byte symbols of GPT-2/CLIP's <c>bytes_to_unicode</c> mapping,
/// ids 256–511 the same symbols with the end-of-word suffix <c>&lt;/w&gt;</c>, then one token per merge in merge order,
/// then <c>&lt;|startoftext|&gt;</c> and <c>&lt;|endoftext|&gt;</c> (also the padding token) as the last two ids.
/// Each word is built right to left: merges (w[i], w[i+1..]&lt;/w&gt;) for i from the second-to-last letter down to 0.
/// Every merge's right side ends in <c>&lt;/w&gt;</c>, so inside a word only its last pair can ever merge and a demo
/// word always becomes exactly one token, whatever the merge order; a word outside the vocabulary stops at a
/// shorter suffix and falls back to single byte symbols for the rest (all of which embed to zero).
/// </remarks>
public static class ClipVocabularyWriter
{
    /// <summary>The end-of-word suffix.</summary>
    public const string EndOfWord = "</w>";

    /// <summary>The beginning-of-text token.</summary>
    public const string StartOfText = "<|startoftext|>";

    /// <summary>The end-of-text token, also used for padding.</summary>
    public const string EndOfText = "<|endoftext|>";

    /// <summary>The sequence length the text encoder takes (BOS + 75 tokens + EOS).</summary>
    public const int MaxLength = 77;

    /// <summary>GPT-2/CLIP's <c>bytes_to_unicode</c>: the printable symbol that stands for each byte, in CLIP's vocabulary order
    /// (the printable bytes first, then the others mapped to U+0100 onwards).</summary>
    public static IReadOnlyList<(byte Byte, char Symbol)> BytesToUnicode()
    {
        var bytes = new List<int>();
        for (int b = '!'; b <= '~'; b++) bytes.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) bytes.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) bytes.Add(b);
        var chars = new List<int>(bytes);
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            if (bytes.Contains(b)) continue;
            bytes.Add(b);
            chars.Add(256 + n++);
        }
        return bytes.Select((b, i) => ((byte)b, (char)chars[i])).ToList();
    }

    /// <summary>The merges, in rank order, that build every demo word as one token.</summary>
    public static IReadOnlyList<(string Left, string Right)> Merges()
    {
        var merges = new List<(string, string)>();
        var seen = new HashSet<(string, string)>();
        foreach (var (word, _) in DemoVocabulary.Words)
        {
            for (int i = word.Length - 2; i >= 0; i--)
            {
                var pair = (word[i].ToString(), word[(i + 1)..] + EndOfWord);
                if (seen.Add(pair)) merges.Add(pair);
            }
        }
        return merges;
    }

    /// <summary>Every token in id order.</summary>
    public static IReadOnlyList<string> Tokens()
    {
        var symbols = BytesToUnicode().Select(p => p.Symbol.ToString()).ToList();
        var tokens = new List<string>(symbols);
        tokens.AddRange(symbols.Select(s => s + EndOfWord));
        tokens.AddRange(Merges().Select(m => m.Left + m.Right));
        tokens.Add(StartOfText);
        tokens.Add(EndOfText);
        return tokens;
    }

    /// <summary>The id of a token.</summary>
    /// <exception cref="ArgumentException">The token is not in the vocabulary.</exception>
    public static int TokenId(string token)
    {
        var tokens = Tokens();
        for (int i = 0; i < tokens.Count; i++)
            if (string.Equals(tokens[i], token, StringComparison.Ordinal)) return i;
        throw new ArgumentException($"'{token}' is not in the demo vocabulary.", nameof(token));
    }

    /// <summary>The padding token of SDXL's second tokenizer (and SD 2.x's): the byte symbol "!", id 0 in CLIP's
    /// vocabulary and in this one (the first of <see cref="BytesToUnicode"/>'s symbols).</summary>
    public const string ExclamationPad = "!";

    /// <summary>Writes the tokenizer files into <paramref name="directory"/> (created if needed).</summary>
    /// <param name="directory">The tokenizer folder.</param>
    /// <param name="padToken">The padding token written to <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c>:
    /// <see cref="EndOfText"/> (CLIP's, the default) or <see cref="ExclamationPad"/> (SDXL's <c>tokenizer_2</c>).</param>
    /// <exception cref="ArgumentException"><paramref name="padToken"/> is not a token of the vocabulary.</exception>
    public static void Write(string directory, string padToken = EndOfText)
    {
        var tokens = Tokens();
        if (!tokens.Contains(padToken))
            throw new ArgumentException($"The padding token '{padToken}' is not in the demo vocabulary; use '{EndOfText}' or '{ExclamationPad}'.", nameof(padToken));
        Directory.CreateDirectory(directory);
        DemoJson.Write(Path.Combine(directory, "vocab.json"), w =>
        {
            w.WriteStartObject();
            for (int i = 0; i < tokens.Count; i++) w.WriteNumber(tokens[i], i);
            w.WriteEndObject();
        }, indented: false);

        var merges = new StringBuilder("#version: 0.2\n");
        foreach (var (left, right) in Merges()) merges.Append(left).Append(' ').Append(right).Append('\n');
        File.WriteAllBytes(Path.Combine(directory, "merges.txt"), new UTF8Encoding(false).GetBytes(merges.ToString()));

        DemoJson.Write(Path.Combine(directory, "tokenizer_config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteBoolean("add_prefix_space", false);
            w.WriteString("bos_token", StartOfText);
            w.WriteBoolean("clean_up_tokenization_spaces", true);
            w.WriteBoolean("do_lower_case", true);
            w.WriteString("eos_token", EndOfText);
            w.WriteString("errors", "replace");
            w.WriteNumber("model_max_length", MaxLength);
            w.WriteString("pad_token", padToken);
            w.WriteString("tokenizer_class", "CLIPTokenizer");
            w.WriteString("unk_token", EndOfText);
            w.WriteEndObject();
        });
        DemoJson.Write(Path.Combine(directory, "special_tokens_map.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("bos_token", StartOfText);
            w.WriteString("eos_token", EndOfText);
            w.WriteString("pad_token", padToken);
            w.WriteString("unk_token", EndOfText);
            w.WriteEndObject();
        });
    }
}

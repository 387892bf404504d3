using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace MLNet.Diffusion.Tokenization;

/// <summary>
/// CLIP's byte-level BPE tokenizer as Stable Diffusion's text encoders expect it: every prompt becomes exactly
/// <see cref="MaxLength"/> ids, the start token, the content (cut to <c>MaxLength - 2</c> tokens), the end token,
/// then the pad token.
/// </summary>
/// <remarks>
/// <para>
/// Text is prepared as CLIP prepares it: unpaired surrogates (and U+FFFE, U+FFFF) become U+FFFD, control characters that are not
/// whitespace are dropped, the text is put in Unicode normalization form C, every run of whitespace becomes one
/// space, the ends are trimmed and the whole is lower-cased. It is then split with CLIP's pattern (words, single
/// digits, runs of other symbols, English contractions, the two special tokens) and each piece is merged with the
/// vocabulary's byte-pair merges, its last symbol carrying <c>&lt;/w&gt;</c>. <c>&lt;|startoftext|&gt;</c> and
/// <c>&lt;|endoftext|&gt;</c> typed in a prompt map to their own ids, as in CLIP.
/// </para>
/// <para>
/// An instance is immutable after it is made and safe to use from many threads at once. The underlying
/// <see cref="BpeTokenizer"/> keeps one word cache, guarded by a lock and bounded (it stops adding past
/// 10,000 entries of at most 15 characters each), so memory does not grow with the number of calls.
/// </para>
/// </remarks>
internal sealed class ClipTokenizer
{
    /// <summary>The vocabulary file of a diffusers tokenizer folder.</summary>
    public const string VocabFileName = "vocab.json";

    /// <summary>The merges file of a diffusers tokenizer folder.</summary>
    public const string MergesFileName = "merges.txt";

    /// <summary>The optional settings file of a diffusers tokenizer folder.</summary>
    public const string TokenizerConfigFileName = "tokenizer_config.json";

    /// <summary>The optional special-token file of a diffusers tokenizer folder; it wins over <see cref="TokenizerConfigFileName"/>.</summary>
    public const string SpecialTokensMapFileName = "special_tokens_map.json";

    /// <summary>CLIP's pre-tokenization pattern (Python's <c>re.IGNORECASE</c> form).</summary>
    private const string ClipPattern =
        @"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

    private readonly BpeTokenizer _bpe;

    /// <summary>The longest vocabulary entry in characters (without the end-of-word suffix): no token covers more of the prepared text.</summary>
    private readonly int _longestToken;

    /// <summary>Words added beyond the vocabulary (textual inversion), or null.</summary>
    private readonly AddedTokens? _added;

    private ClipTokenizer(BpeTokenizer bpe, int maxLength, int bosId, int eosId, int padId, AddedTokens? added = null)
    {
        _bpe = bpe;
        _added = added is { Count: > 0 } ? added : null;
        _longestToken = Math.Max(Math.Max(1, bpe.Vocabulary.Keys.Max(k => k.EndsWith("</w>", StringComparison.Ordinal) ? k.Length - 4 : k.Length)),
            _added?.LongestTrigger ?? 0);
        MaxLength = maxLength;
        BosId = bosId;
        EosId = eosId;
        PadId = padId;
        CommaId = bpe.Vocabulary.TryGetValue(",</w>", out int comma) ? comma : null;
        VocabularySize = bpe.Vocabulary.Values.Max() + 1;
    }

    /// <summary>One more than the largest id of the vocabulary: the rows of the text encoder's token-embedding table, and
    /// the first id an added token takes.</summary>
    public int VocabularySize { get; }

    /// <summary>The words added beyond the vocabulary, or null.</summary>
    public AddedTokens? Added => _added;

    /// <summary>This tokenizer with <paramref name="added"/> words (replacing any it had): each, found in a prompt as a whole
    /// word, becomes its ids (see <see cref="AddedTokens"/>); prompts without them encode as before.</summary>
    public ClipTokenizer WithAddedTokens(AddedTokens? added) => new(_bpe, MaxLength, BosId, EosId, PadId, added);

    /// <summary>The content ids of prepared text, at most <paramref name="maxCount"/>: the added words' ids where they
    /// occur, CLIP's BPE everywhere else.</summary>
    private IReadOnlyList<int> EncodeIds(string prepared, int maxCount) =>
        _added is null ? Bpe(prepared, maxCount) : _added.Encode(prepared, maxCount, Bpe);

    private IReadOnlyList<int> Bpe(string prepared, int maxCount) =>
        _bpe.EncodeToIds(prepared, maxCount, out _, out _, considerPreTokenization: true, considerNormalization: false);

    /// <summary>How many ids <see cref="Encode(string)"/> gives (77 for CLIP).</summary>
    public int MaxLength { get; }

    /// <summary>The vocabulary's id of the start token (<c>&lt;|startoftext|&gt;</c> unless configured otherwise).</summary>
    public int BosId { get; }

    /// <summary>The vocabulary's id of the end token (<c>&lt;|endoftext|&gt;</c> unless configured otherwise).</summary>
    public int EosId { get; }

    /// <summary>The id of a comma that ends a word (<c>,&lt;/w&gt;</c>), where a long prompt prefers to be split into chunks; null when the vocabulary lacks it.</summary>
    public int? CommaId { get; }

    /// <summary>The vocabulary's id of the pad token: <see cref="EosId"/> for Stable Diffusion 1.x, the id of <c>"!"</c> for 2.x and SDXL's second tokenizer.</summary>
    public int PadId { get; }

    /// <summary>
    /// Loads a diffusers tokenizer folder: <c>vocab.json</c> and <c>merges.txt</c>, and where present
    /// <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c> (the latter winning) for
    /// <c>bos_token</c>, <c>eos_token</c>, <c>pad_token</c> (each a string or an object with <c>content</c>) and
    /// <c>model_max_length</c>. A <c>model_max_length</c> above 77 (some files hold 10<sup>30</sup> to mean
    /// "unset") is taken as 77, CLIP's context length.
    /// </summary>
    /// <param name="tokenizerDirectory">The folder, such as a model's <c>tokenizer/</c> or <c>tokenizer_2/</c>.</param>
    /// <returns>The tokenizer.</returns>
    /// <exception cref="ArgumentException"><paramref name="tokenizerDirectory"/> is null, empty or blank.</exception>
    /// <exception cref="FileNotFoundException"><c>vocab.json</c> or <c>merges.txt</c> is missing.</exception>
    /// <exception cref="InvalidDataException">A file cannot be read as what it should be, or the vocabulary lacks a special token.</exception>
    public static ClipTokenizer Load(string tokenizerDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(tokenizerDirectory);
        string vocabPath = Path.Combine(tokenizerDirectory, VocabFileName);
        string mergesPath = Path.Combine(tokenizerDirectory, MergesFileName);
        EnsureExists(vocabPath);
        EnsureExists(mergesPath);
        ClipTokenizerOptions options = TokenizerConfigReader.Read(tokenizerDirectory);
        return Create(vocabPath, mergesPath, options);
    }

    /// <summary>Makes a tokenizer from a vocabulary and a merges file.</summary>
    /// <param name="vocabJsonPath">A <c>vocab.json</c>: one JSON object from token to id.</param>
    /// <param name="mergesPath">A <c>merges.txt</c>: one merge (two symbols and a space) a line, an optional <c>#version</c> line first.</param>
    /// <param name="options">Special tokens and length; <see langword="null"/> for CLIP's defaults with the end token as padding.</param>
    /// <returns>The tokenizer.</returns>
    /// <exception cref="ArgumentException">A path is null or empty, or an option is out of range.</exception>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A file cannot be read as what it should be, or the vocabulary lacks a special token.</exception>
    public static ClipTokenizer Create(string vocabJsonPath, string mergesPath, ClipTokenizerOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(vocabJsonPath);
        ArgumentException.ThrowIfNullOrEmpty(mergesPath);
        options ??= new ClipTokenizerOptions();
        ArgumentException.ThrowIfNullOrEmpty(options.BosToken, nameof(options) + "." + nameof(options.BosToken));
        ArgumentException.ThrowIfNullOrEmpty(options.EosToken, nameof(options) + "." + nameof(options.EosToken));
        if (options.PadToken is { Length: 0 })
        {
            throw new ArgumentException("The pad token must be null (use the end token) or a token of the vocabulary.", nameof(options));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxLength, ClipTokenizerOptions.MinimumMaxLength, nameof(options) + "." + nameof(options.MaxLength));
        EnsureExists(vocabJsonPath);
        EnsureExists(mergesPath);

        Dictionary<string, int> vocabulary = ReadVocabulary(vocabJsonPath);
        List<string> merges = ReadMerges(mergesPath);

        int bosId = LookUp(vocabulary, options.BosToken, vocabJsonPath, "start");
        int eosId = LookUp(vocabulary, options.EosToken, vocabJsonPath, "end");
        int padId = LookUp(vocabulary, options.PadToken ?? options.EosToken, vocabJsonPath, "pad");

        var specialTokens = new Dictionary<string, int>(StringComparer.Ordinal)
        {
            [options.BosToken] = bosId,
            [options.EosToken] = eosId,
        };

        var bpeOptions = new BpeOptions(vocabulary)
        {
            Merges = merges,
            ByteLevel = true,
            EndOfWordSuffix = "</w>",
            SpecialTokens = specialTokens,
            PreTokenizer = new RegexPreTokenizer(new Regex(ClipPattern, RegexOptions.IgnoreCase | RegexOptions.CultureInvariant), null),
        };

        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(bpeOptions);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new InvalidDataException(
                $"'{vocabJsonPath}' and '{mergesPath}' do not make a BPE tokenizer: {e.Message}", e);
        }

        return new ClipTokenizer(bpe, options.MaxLength, bosId, eosId, padId);
    }

    /// <summary>Encodes a prompt into exactly <see cref="MaxLength"/> ids: start, up to <c>MaxLength - 2</c> content ids, end, padding.</summary>
    /// <param name="text">The prompt; any string, empty included.</param>
    /// <returns>A new array of <see cref="MaxLength"/> ids.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public int[] Encode(string text)
    {
        var ids = new int[MaxLength];
        Encode(text, ids, out _);
        return ids;
    }

    /// <summary>Encodes a prompt into the first <see cref="MaxLength"/> elements of <paramref name="destination"/>, as <see cref="Encode(string)"/> does.</summary>
    /// <param name="text">The prompt; any string, empty included.</param>
    /// <param name="destination">At least <see cref="MaxLength"/> elements; those after the first <see cref="MaxLength"/> are left as they are.</param>
    /// <param name="truncated">Whether the content had more than <c>MaxLength - 2</c> tokens and was cut.</param>
    /// <returns>The number of content tokens (start, end and padding not counted), counted up to <c>MaxLength - 1</c>:
    /// a value above <c>MaxLength - 2</c> means the prompt was truncated. Counting stops there so that a huge prompt
    /// costs no more than its first tokens (use <see cref="EncodeContent(string)"/> for the full count).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than <see cref="MaxLength"/>.</exception>
    public int Encode(string text, Span<int> destination, out bool truncated)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (destination.Length < MaxLength)
        {
            throw new ArgumentException(
                $"The destination holds {destination.Length} ids; this tokenizer writes {MaxLength}.", nameof(destination));
        }

        int capacity = MaxLength - 2;
        string prepared = LimitForEncoding(Prepare(text), capacity + 1);
        IReadOnlyList<int> content = prepared.Length == 0
            ? Array.Empty<int>()
            : EncodeIds(prepared, capacity + 1);
        int kept = Math.Min(content.Count, capacity);
        truncated = content.Count > capacity;

        destination[0] = BosId;
        for (int i = 0; i < kept; i++)
        {
            destination[1 + i] = content[i];
        }

        destination[1 + kept] = EosId;
        destination.Slice(2 + kept, MaxLength - 2 - kept).Fill(PadId);
        return content.Count;
    }

    /// <summary>
    /// Encodes a prompt written in AUTOMATIC1111's attention syntax (<see cref="PromptAttention"/>): each run's text is
    /// tokenized alone and the ids concatenated (as A1111's <c>tokenize_line</c> does), each id with its run's weight; the
    /// start, end and padding positions weigh 1. Only one chunk of <see cref="MaxLength"/> positions is written: ids past
    /// it, and everything after a <c>BREAK</c> (which starts the next chunk), are cut and reported as truncated.
    /// </summary>
    /// <param name="fragments">The parsed prompt.</param>
    /// <param name="destination">Receives <see cref="MaxLength"/> ids.</param>
    /// <param name="weights">Receives <see cref="MaxLength"/> weights.</param>
    /// <param name="truncated">Whether ids were cut.</param>
    /// <returns>The number of content ids counted (those kept, and at most one past the room left for the last one read).</returns>
    public int EncodeWeighted(IReadOnlyList<PromptFragment> fragments, Span<int> destination, Span<float> weights, out bool truncated)
    {
        ArgumentNullException.ThrowIfNull(fragments);
        if (destination.Length < MaxLength || weights.Length < MaxLength)
            throw new ArgumentException($"The destination and weights hold {destination.Length} and {weights.Length} values; this tokenizer writes {MaxLength}.", nameof(destination));
        int capacity = MaxLength - 2, kept = 0, total = 0;
        bool chunkClosed = false;
        destination[0] = BosId;
        weights[0] = 1;
        truncated = false;
        foreach (var fragment in fragments)
        {
            if (fragment.IsBreak)
            {
                chunkClosed = true;
                continue;
            }
            if (chunkClosed || kept == capacity)
            {
                // The chunk is full: what follows is cut; it is not tokenized (a prompt may be arbitrarily long).
                truncated |= !string.IsNullOrWhiteSpace(fragment.Text);
                continue;
            }
            // Tokenized alone, and at most one id past the room left (enough to know it does not fit).
            string prepared = LimitForEncoding(Prepare(fragment.Text), capacity - kept + 1);
            IReadOnlyList<int> ids = prepared.Length == 0
                ? Array.Empty<int>()
                : EncodeIds(prepared, capacity - kept + 1);
            int take = Math.Min(ids.Count, capacity - kept);
            for (int i = 0; i < take; i++)
            {
                destination[1 + kept + i] = ids[i];
                weights[1 + kept + i] = (float)fragment.Weight;
            }
            kept += take;
            total += ids.Count;
            truncated |= ids.Count > take;
        }
        destination[1 + kept] = EosId;
        destination.Slice(2 + kept, MaxLength - 2 - kept).Fill(PadId);
        weights.Slice(1 + kept, MaxLength - 1 - kept).Fill(1f);
        return total;
    }

    /// <summary>Encodes a prompt into its content ids only: no start, end or padding, and no truncation (for splitting long prompts into chunks).</summary>
    /// <param name="text">The prompt; any string, empty included.</param>
    /// <returns>The content ids.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public IReadOnlyList<int> EncodeContent(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string prepared = Prepare(text);
        return prepared.Length == 0
            ? Array.Empty<int>()
            : EncodeIds(prepared, int.MaxValue);
    }

    /// <summary>Encodes a prompt into its content ids only, as <see cref="EncodeContent(string)"/> does, but at most
    /// <paramref name="maxTokens"/> + 1 of them (enough to know that the text has more), at a cost that does not grow with the text.</summary>
    /// <param name="text">The prompt; any string, empty included.</param>
    /// <param name="maxTokens">How many ids the caller has room for (0 or more).</param>
    /// <returns>The first content ids, at most <paramref name="maxTokens"/> + 1.</returns>
    public IReadOnlyList<int> EncodeContent(string text, int maxTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens);
        string prepared = LimitForEncoding(Prepare(text), maxTokens + 1);
        return prepared.Length == 0
            ? Array.Empty<int>()
            : EncodeIds(prepared, maxTokens + 1);
    }

    /// <summary>
    /// Cuts prepared text that is far longer than <paramref name="tokens"/> tokens can cover, so that the cost of
    /// encoding does not grow with the prompt: each token covers at most <see cref="_longestToken"/> characters plus one
    /// separator, so the first <paramref name="tokens"/> tokens lie within that many characters. The cut is moved back
    /// to a space when one is near, so the word that spans it is not split (a single word longer than the limit is cut,
    /// which only changes tokens past the ones kept).
    /// </summary>
    private string LimitForEncoding(string prepared, int tokens)
    {
        long limit = (long)tokens * (_longestToken + 1) + 64;
        if (prepared.Length <= limit) return prepared;
        int cut = (int)limit;
        int space = prepared.LastIndexOf(' ', cut, Math.Min(cut, 256));
        return prepared[..(space > 0 ? space : cut)];
    }

    /// <summary>
    /// CLIP's text clean-up: unpaired surrogates and U+FFFE/U+FFFF to U+FFFD, non-whitespace control characters dropped, NFC,
    /// whitespace runs to one space, trimmed, lower-cased.
    /// </summary>
    internal static string Prepare(string text)
    {
        string sanitized = Sanitize(text);
        try
        {
            if (!sanitized.IsNormalized(NormalizationForm.FormC))
            {
                sanitized = sanitized.Normalize(NormalizationForm.FormC);
            }
        }
        catch (ArgumentException)
        {
            // The platform's normalizer refuses some code points that Sanitize lets through; keep the text as it is.
        }

        return CollapseWhitespace(sanitized).ToLowerInvariant();
    }

    private static string Sanitize(string text)
    {
        int i = 0;
        for (; i < text.Length; i++)
        {
            if (NeedsSanitizing(text, i))
            {
                break;
            }
        }

        if (i == text.Length)
        {
            return text;
        }

        var builder = new StringBuilder(text.Length);
        builder.Append(text, 0, i);
        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c))
            {
                if (i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                {
                    builder.Append(c).Append(text[++i]);
                }
                else
                {
                    builder.Append('\uFFFD');
                }
            }
            else if (char.IsLowSurrogate(c) || IsNonCharacter(c))
            {
                builder.Append('\uFFFD');
            }
            else if (!(char.IsControl(c) && !char.IsWhiteSpace(c)))
            {
                builder.Append(c);
            }
        }

        return builder.ToString();
    }

    private static bool NeedsSanitizing(string text, int i)
    {
        char c = text[i];
        if (char.IsHighSurrogate(c))
        {
            return i + 1 >= text.Length || !char.IsLowSurrogate(text[i + 1]);
        }

        if (char.IsLowSurrogate(c))
        {
            return i == 0 || !char.IsHighSurrogate(text[i - 1]);
        }

        return IsNonCharacter(c) || (char.IsControl(c) && !char.IsWhiteSpace(c));
    }

    /// <summary>U+FFFE and U+FFFF, which .NET's normalization refuses.</summary>
    private static bool IsNonCharacter(char c) => c >= '\uFFFE';

    private static string CollapseWhitespace(string text)
    {
        int start = 0;
        int end = text.Length;
        while (start < end && char.IsWhiteSpace(text[start]))
        {
            start++;
        }

        while (end > start && char.IsWhiteSpace(text[end - 1]))
        {
            end--;
        }

        bool clean = true;
        for (int i = start; i < end; i++)
        {
            if (char.IsWhiteSpace(text[i]) && (text[i] != ' ' || char.IsWhiteSpace(text[i + 1])))
            {
                clean = false;
                break;
            }
        }

        if (clean)
        {
            return start == 0 && end == text.Length ? text : text[start..end];
        }

        var builder = new StringBuilder(end - start);
        bool inSpace = false;
        for (int i = start; i < end; i++)
        {
            char c = text[i];
            if (char.IsWhiteSpace(c))
            {
                if (!inSpace)
                {
                    builder.Append(' ');
                    inSpace = true;
                }
            }
            else
            {
                builder.Append(c);
                inSpace = false;
            }
        }

        return builder.ToString();
    }

    internal static void EnsureExists(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException(
                $"'{path}' was not found. A diffusers tokenizer folder (such as a model's tokenizer/ or tokenizer_2/) " +
                $"holds {VocabFileName} and {MergesFileName}.",
                path);
        }
    }

    private static Dictionary<string, int> ReadVocabulary(string path)
    {
        Dictionary<string, int>? vocabulary;
        try
        {
            using FileStream stream = File.OpenRead(path);
            vocabulary = JsonSerializer.Deserialize<Dictionary<string, int>>(stream);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not a JSON object from token to integer id: {e.Message}", e);
        }

        if (vocabulary is null || vocabulary.Count == 0)
        {
            throw new InvalidDataException($"'{path}' holds no vocabulary: it should be a JSON object from token to integer id.");
        }

        var seen = new HashSet<int>();
        foreach (KeyValuePair<string, int> entry in vocabulary)
        {
            if (entry.Value < 0 || !seen.Add(entry.Value))
            {
                throw new InvalidDataException($"'{path}' gives the token '{entry.Key}' the id {entry.Value}, which is negative or already taken.");
            }
        }

        return vocabulary;
    }

    private static List<string> ReadMerges(string path)
    {
        var merges = new List<string>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (line.Length == 0 || (lineNumber == 1 && line.StartsWith("#version", StringComparison.Ordinal)))
            {
                continue;
            }

            int space = line.IndexOf(' ');
            if (space <= 0 || space == line.Length - 1 || line.IndexOf(' ', space + 1) >= 0)
            {
                throw new InvalidDataException(
                    $"'{path}' line {lineNumber} is not a merge: it should be two symbols separated by one space.");
            }

            merges.Add(line);
        }

        return merges;
    }

    private static int LookUp(Dictionary<string, int> vocabulary, string token, string vocabPath, string role)
    {
        if (!vocabulary.TryGetValue(token, out int id))
        {
            throw new InvalidDataException($"The vocabulary '{vocabPath}' lacks the {role} token '{token}'.");
        }

        return id;
    }
}

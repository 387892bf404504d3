namespace MLNet.Diffusion.Tokenization;

/// <summary>
/// Words added to a CLIP tokenizer beyond its vocabulary, each standing for one or more new ids: textual inversion's
/// trigger words. A trigger found in a prompt as a whole word becomes its ids; the text around it is tokenized as before.
/// </summary>
/// <remarks>
/// <para>Semantics, from the two implementations users know. diffusers' <c>load_textual_inversion</c>
/// (<c>loaders/textual_inversion.py</c>) adds the trigger to the tokenizer as an added token, with ids from the
/// vocabulary size on (<c>resize_token_embeddings(len(tokenizer) + n)</c>; an embedding of n vectors becomes the
/// tokens <c>t</c>, <c>t_1</c> … <c>t_{n−1}</c>, and <c>maybe_convert_prompt</c> writes all n where the prompt has
/// <c>t</c>); added tokens are split out of the text before BPE. AUTOMATIC1111 (<c>textual_inversion.py</c>,
/// <c>EmbeddingDatabase.find_embedding_at_position</c>) tokenizes the trigger with CLIP and replaces that token sequence
/// wherever a prompt's tokens contain it, and its tokenizer lower-cases prompts. Here, as in both: n vectors take n
/// consecutive new ids, matched case-insensitively before BPE.</para>
/// <para>A match must be a whole word in CLIP's sense: it starts and ends where CLIP's pre-tokenizer splits the text
/// (between a letter and a non-letter, around every digit, between a symbol and a non-symbol, at a space or at either
/// end), so <c>myemb</c> is found in <c>a myemb, style</c> and <c>(myemb:1.2)</c> but not in <c>myembroidery</c>, and
/// <c>&lt;cat-toy&gt;</c> is found in <c>a &lt;cat-toy&gt; backpack</c>. Where two triggers could match at the same
/// place the longer wins. With no trigger in a prompt, its ids are exactly the tokenizer's own.</para>
/// </remarks>
internal sealed class AddedTokens
{
    private readonly (string Text, int[] Ids)[] _triggers;

    /// <summary>Makes the set from trigger words and their ids.</summary>
    /// <param name="triggers">Each trigger as the user wrote it (it is prepared as prompts are: lower-cased, NFC) and its
    /// ids, one per vector, in order.</param>
    /// <exception cref="ArgumentException">A trigger is empty, contains white space, has no ids, or two triggers are the same
    /// once prepared.</exception>
    public AddedTokens(IEnumerable<(string Trigger, int[] Ids)> triggers)
    {
        ArgumentNullException.ThrowIfNull(triggers);
        var list = new List<(string, int[])>();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (trigger, ids) in triggers)
        {
            string prepared = ClipTokenizer.Prepare(trigger ?? "");
            if (prepared.Length == 0 || prepared.Any(char.IsWhiteSpace))
                throw new ArgumentException($"The trigger word '{trigger}' is empty or contains white space; a trigger word is one word.", nameof(triggers));
            if (ids is not { Length: > 0 })
                throw new ArgumentException($"The trigger word '{trigger}' has no ids.", nameof(triggers));
            if (!seen.TryAdd(prepared, trigger!))
                throw new ArgumentException($"The trigger words '{seen[prepared]}' and '{trigger}' are the same word (prompts are matched without regard to case).", nameof(triggers));
            list.Add((prepared, (int[])ids.Clone()));
        }
        _triggers = [.. list.OrderByDescending(t => t.Item1.Length).ThenBy(t => t.Item1, StringComparer.Ordinal)];
        LongestTrigger = _triggers.Length == 0 ? 0 : _triggers[0].Text.Length;
    }

    /// <summary>How many trigger words there are.</summary>
    public int Count => _triggers.Length;

    /// <summary>The longest trigger in characters.</summary>
    public int LongestTrigger { get; }

    /// <summary>The ids of <paramref name="trigger"/> (as written or prepared), or null when it is not one of the set.</summary>
    public IReadOnlyList<int>? IdsOf(string trigger)
    {
        string prepared = ClipTokenizer.Prepare(trigger);
        foreach (var (text, ids) in _triggers)
            if (text == prepared) return ids;
        return null;
    }

    /// <summary>
    /// The content ids of <paramref name="prepared"/> text (see <see cref="ClipTokenizer.Prepare"/>): each trigger found
    /// as a whole word gives its ids, and each stretch of text between triggers is tokenized alone with
    /// <paramref name="encodeText"/>. Stops once <paramref name="maxCount"/> ids are reached (a trigger's ids may then be
    /// cut, as any other tokens are).
    /// </summary>
    /// <param name="prepared">Prepared text.</param>
    /// <param name="maxCount">The most ids wanted.</param>
    /// <param name="encodeText">The tokenizer's own encoding of a stretch of prepared text, given the most ids wanted.</param>
    public IReadOnlyList<int> Encode(string prepared, int maxCount, Func<string, int, IReadOnlyList<int>> encodeText)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        ArgumentNullException.ThrowIfNull(encodeText);
        List<int>? ids = null;
        int segmentStart = 0;
        for (int i = 0; i < prepared.Length && (ids is null || ids.Count < maxCount); i++)
        {
            if (!IsWordBoundary(prepared, i)) continue;
            foreach (var (text, triggerIds) in _triggers)
            {
                if (i + text.Length > prepared.Length || !prepared.AsSpan(i).StartsWith(text, StringComparison.Ordinal)
                    || !IsWordBoundary(prepared, i + text.Length))
                    continue;
                ids ??= [];
                AppendText(prepared[segmentStart..i]);
                foreach (int id in triggerIds)
                    if (ids.Count < maxCount) ids.Add(id);
                segmentStart = i + text.Length;
                i = segmentStart - 1;
                break;
            }
        }
        if (ids is null) return encodeText(prepared, maxCount); // no trigger: exactly the tokenizer's own ids
        if (segmentStart < prepared.Length) AppendText(prepared[segmentStart..]);
        return ids;

        void AppendText(string segment)
        {
            if (ids.Count >= maxCount || string.IsNullOrWhiteSpace(segment)) return;
            var part = encodeText(segment.Trim(), maxCount - ids.Count);
            for (int k = 0; k < part.Count && ids.Count < maxCount; k++) ids.Add(part[k]);
        }
    }

    /// <summary>
    /// Whether CLIP's pre-tokenizer (letter runs, single digits, runs of other symbols, white space between) splits
    /// <paramref name="text"/> at <paramref name="index"/>: at either end, next to white space, between characters of
    /// different kinds, and between two digits.
    /// </summary>
    internal static bool IsWordBoundary(string text, int index)
    {
        if (index <= 0 || index >= text.Length) return true;
        var before = KindOf(text[index - 1]);
        var after = KindOf(text[index]);
        return before == CharKind.Space || after == CharKind.Space || before != after || before == CharKind.Digit;
    }

    private enum CharKind { Letter, Digit, Space, Symbol }

    private static CharKind KindOf(char c) =>
        char.IsWhiteSpace(c) ? CharKind.Space : char.IsLetter(c) ? CharKind.Letter : char.IsNumber(c) ? CharKind.Digit : CharKind.Symbol;
}

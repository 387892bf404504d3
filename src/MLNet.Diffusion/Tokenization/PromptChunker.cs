namespace MLNet.Diffusion.Tokenization;

/// <summary>
/// One prompt tokenized into chunks of the text encoder's length L (77): <see cref="ChunkCount"/> rows of ids, each the
/// start token, up to L − 2 content ids, the end token and padding, and each id's emphasis weight.
/// </summary>
/// <param name="Ids">[k·L] ids, chunk after chunk.</param>
/// <param name="Weights">[k·L] weights (start, end and padding weigh 1), or null when every weight is 1.</param>
/// <param name="ChunkCount">k, at least 1.</param>
/// <param name="TokenCount">The content ids read (start, end and padding not counted): all of them, or, for a prompt cut
/// at <see cref="PromptChunker.MaxChunks"/> chunks, those read up to one past the limit.</param>
/// <param name="Truncated">Whether the prompt needed more than <see cref="PromptChunker.MaxChunks"/> chunks and was cut there.</param>
internal sealed record PromptChunks(int[] Ids, float[]? Weights, int ChunkCount, int TokenCount, bool Truncated = false);

/// <summary>
/// Splits a prompt into chunks of 75 content tokens as AUTOMATIC1111 does (stable-diffusion-webui,
/// <c>modules/sd_hijack_clip.py</c>, <c>FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line</c>), so that a prompt longer
/// than CLIP's 77 positions is encoded chunk by chunk and the chunks' hidden states concatenated, rather than cut:
/// <list type="bullet">
/// <item>each run of the parsed prompt (<see cref="PromptAttention"/>) is tokenized alone, its ids carrying its weight;</item>
/// <item>when a chunk holds 75 ids and another non-comma id comes, and a comma (<c>,&lt;/w&gt;</c>) was among the
/// chunk's last <see cref="CommaBacktrack"/> ids (its index i in the chunk has 75 − i ≤ 20), the chunk ends just after
/// that comma and the ids after it move to the next chunk (A1111's <c>comma_padding_backtrack</c>, default 20);</item>
/// <item>a <c>BREAK</c> ends the chunk at once (an empty chunk too, so <c>BREAK</c> at the start gives an empty first chunk);</item>
/// <item>the last chunk is kept when it holds ids or when there is no other, so the empty prompt is one chunk;</item>
/// <item>each chunk is the start token, its ids, the end token, then padding to 77 (with the tokenizer's pad token, as
/// the one-chunk encoding pads; A1111 pads with the end token here and swaps in the pad token before encoding).</item>
/// </list>
/// A plain prompt of at most 75 tokens gives exactly <see cref="ClipTokenizer.Encode(string)"/>'s ids.
/// Textual-inversion vectors are not kept together in one chunk (A1111 moves an embedding that does not fit to the next).
/// </summary>
internal static class PromptChunker
{
    /// <summary>How far back from a full chunk's end a comma may be to move the split to it (A1111's default).</summary>
    public const int CommaBacktrack = 20;

    /// <summary>
    /// The most chunks of a prompt that are kept (2,400 content tokens); what follows is cut, with a warning. A1111 sets
    /// no limit; here a pasted document cannot make the tokenizer, the text encoder and every UNet call's cross-attention
    /// grow without bound.
    /// </summary>
    public const int MaxChunks = 32;

    /// <summary>Splits a parsed prompt into chunks.</summary>
    /// <param name="tokenizer">The tokenizer (its length, special ids and comma id).</param>
    /// <param name="fragments">The prompt's runs (a plain prompt is one run of weight 1).</param>
    /// <returns>The chunks: at most <see cref="MaxChunks"/>, with <see cref="PromptChunks.Truncated"/> set when more were
    /// needed (tokenizing stops one id past the limit, so the cost does not grow with the prompt).</returns>
    public static PromptChunks Split(ClipTokenizer tokenizer, IReadOnlyList<PromptFragment> fragments)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(fragments);
        int capacity = tokenizer.MaxLength - 2, limit = MaxChunks * capacity;
        int? comma = tokenizer.CommaId;
        var closed = new List<(List<int> Ids, List<float> Weights)>();
        var ids = new List<int>(capacity);
        var weights = new List<float>(capacity);
        int lastComma = -1, total = 0;
        bool truncated = false;

        void Close()
        {
            closed.Add((ids, weights));
            ids = new List<int>(capacity);
            weights = new List<float>(capacity);
            lastComma = -1;
        }

        foreach (var fragment in fragments)
        {
            if (truncated) break;
            if (closed.Count == MaxChunks)
            {
                // Every chunk is taken: the rest is cut, unless it is only breaks and blanks.
                truncated |= !fragment.IsBreak && !string.IsNullOrWhiteSpace(fragment.Text);
                continue;
            }
            if (fragment.IsBreak)
            {
                Close();
                continue;
            }
            // At most one id past the limit is read, so a pasted document costs no more than the limit.
            var content = tokenizer.EncodeContent(fragment.Text, Math.Max(0, limit - total));
            total += content.Count;
            float weight = (float)fragment.Weight;
            foreach (int id in content)
            {
                if (closed.Count == MaxChunks || closed.Count == MaxChunks - 1 && ids.Count == capacity)
                {
                    truncated = true;
                    break;
                }
                if (id == comma)
                    lastComma = ids.Count;
                else if (ids.Count == capacity && lastComma != -1 && capacity - lastComma <= CommaBacktrack)
                {
                    // The split moves back to just after the comma; what followed it starts the next chunk.
                    var movedIds = ids.GetRange(lastComma + 1, ids.Count - lastComma - 1);
                    var movedWeights = weights.GetRange(lastComma + 1, weights.Count - lastComma - 1);
                    ids.RemoveRange(lastComma + 1, movedIds.Count);
                    weights.RemoveRange(lastComma + 1, movedWeights.Count);
                    Close();
                    ids = movedIds;
                    weights = movedWeights;
                }
                if (ids.Count == capacity) Close();
                ids.Add(id);
                weights.Add(weight);
            }
        }
        if (closed.Count < MaxChunks && (ids.Count > 0 || closed.Count == 0)) Close();

        int length = tokenizer.MaxLength;
        var allIds = new int[closed.Count * length];
        float[]? allWeights = null;
        for (int c = 0; c < closed.Count; c++)
        {
            var (chunkIds, chunkWeights) = closed[c];
            var row = allIds.AsSpan(c * length, length);
            row[0] = tokenizer.BosId;
            for (int i = 0; i < chunkIds.Count; i++) row[1 + i] = chunkIds[i];
            row[1 + chunkIds.Count] = tokenizer.EosId;
            row[(2 + chunkIds.Count)..].Fill(tokenizer.PadId);
            if (chunkWeights.TrueForAll(w => w == 1f)) continue;
            if (allWeights is null)
            {
                allWeights = new float[allIds.Length];
                Array.Fill(allWeights, 1f);
            }
            for (int i = 0; i < chunkWeights.Count; i++) allWeights[c * length + 1 + i] = chunkWeights[i];
        }
        return new PromptChunks(allIds, allWeights, closed.Count, total, truncated);
    }
}

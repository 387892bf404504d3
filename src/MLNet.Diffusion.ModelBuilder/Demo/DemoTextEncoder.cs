using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The demo model's text encoder, <c>text_encoder/model.onnx</c>, with CLIP's contract: <c>input_ids</c> int32 [B, 77] →
/// <c>last_hidden_state</c> float [B, 77, D] and <c>pooler_output</c> float [B, D]. Each position's hidden state is the
/// fixed embedding of its token (<see cref="DemoVocabulary"/>): a demo word's attribute slots, zero for every other
/// token (byte symbols, partial words, start/end/padding). The pooled output is the sum over positions (CLIP pools
/// the end-of-text position instead; here that would be zero).
/// </summary>
public static class DemoTextEncoder
{
    /// <summary>The embedding table, [vocabulary size, D] row-major, in token-id order.</summary>
    public static float[] EmbeddingTable()
    {
        var tokens = ClipVocabularyWriter.Tokens();
        int d = DemoVocabulary.Dimension;
        var table = new float[tokens.Count * d];
        for (int id = 0; id < tokens.Count; id++)
        {
            var token = tokens[id];
            if (!token.EndsWith(ClipVocabularyWriter.EndOfWord, StringComparison.Ordinal)) continue;
            var e = DemoVocabulary.Embedding(token[..^ClipVocabularyWriter.EndOfWord.Length]);
            e?.CopyTo(table, id * d);
        }
        return table;
    }

    /// <summary>Computes <c>last_hidden_state</c> ([B, L, D] flattened) for token ids ([B, L] flattened), as the graph does.</summary>
    public static float[] Encode(ReadOnlySpan<int> inputIds)
    {
        var table = EmbeddingTable();
        int d = DemoVocabulary.Dimension;
        var hidden = new float[inputIds.Length * d];
        for (int i = 0; i < inputIds.Length; i++)
            table.AsSpan(inputIds[i] * d, d).CopyTo(hidden.AsSpan(i * d, d));
        return hidden;
    }

    /// <summary>Builds the graph.</summary>
    public static OnnxGraphBuilder BuildGraph()
    {
        var g = new OnnxGraphBuilder("demo_text_encoder");
        var ids = g.Input("input_ids", OnnxElementType.Int32, "batch", "sequence");
        var tokens = ClipVocabularyWriter.Tokens();
        var table = g.Initializer("token_embedding", EmbeddingTable(), tokens.Count, DemoVocabulary.Dimension);
        var hidden = g.NodeNamed("Gather", [table, ids], "last_hidden_state", ("axis", 0L));
        g.NodeNamed("ReduceSum", [hidden, g.Longs(1)], "pooler_output", ("keepdims", 0L));
        g.Output("last_hidden_state", OnnxElementType.Float, "batch", "sequence", DemoVocabulary.Dimension);
        g.Output("pooler_output", OnnxElementType.Float, "batch", DemoVocabulary.Dimension);
        return g;
    }
}

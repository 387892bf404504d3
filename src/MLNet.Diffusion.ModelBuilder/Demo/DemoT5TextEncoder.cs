using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The demo flow model's T5 side: <c>tokenizer_3/tokenizer.json</c>, a SentencePiece Unigram tokenizer in Hugging Face's
/// format whose pieces are the demo words, and <c>text_encoder_3/model.onnx</c>, T5EncoderModel's contract
/// (<c>input_ids</c> int64 [B, T] → <c>last_hidden_state</c> float [B, T, <see cref="Width"/>]).
/// </summary>
/// <remarks>
/// <para>The pieces (<see cref="Pieces"/>): T5's specials <c>&lt;pad&gt;</c> 0, <c>&lt;/s&gt;</c> 1 and <c>&lt;unk&gt;</c> 2;
/// "▁" + each demo word of <see cref="DemoVocabulary.Words"/> in lower case and capitalised (T5's vocabulary is cased);
/// "▁"; and single letters, digits and common punctuation, so that any other word is spelt out piece by piece (a character
/// outside them is <c>&lt;unk&gt;</c>). Whole words score higher than their spelling, so the Viterbi search picks a demo
/// word whenever a word begins with one ("reddish" is "▁red" then "d", "i", "s", "h", and so reads as red).</para>
/// <para>The encoder is an embedding lookup: a demo word's piece carries the word's place slots (<see cref="SlotGroups"/>:
/// top, bottom, left, right, center) in the first <see cref="DemoVocabulary.Dimension"/> of its <see cref="Width"/> columns,
/// every other piece (specials, spellings, the other demo words' attributes) zero. In the demo flow model T5 is therefore
/// where the picture's place comes from, so that leaving T5 out (Stable Diffusion 3's memory saving) visibly costs prompt
/// adherence: without T5 the place is left to chance.</para>
/// </remarks>
public static class DemoT5TextEncoder
{
    /// <summary>The width of <c>last_hidden_state</c>, also the transformer's joint attention width (T5-XXL: 4096).</summary>
    public static int Width => 4 * DemoVocabulary.Dimension;

    /// <summary>The slot groups the T5 states carry: the place.</summary>
    public static IReadOnlyList<string> SlotGroups { get; } = ["vertical", "horizontal"];

    /// <summary>The id of <c>&lt;pad&gt;</c>.</summary>
    public const int PadId = 0;

    /// <summary>The id of <c>&lt;/s&gt;</c>, appended after the text.</summary>
    public const int EosId = 1;

    /// <summary>The id of <c>&lt;unk&gt;</c>.</summary>
    public const int UnknownId = 2;

    private const string Space = "\u2581";
    private const string SpelledCharacters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-:;()";

    /// <summary>The pieces and their scores (log probabilities) in id order.</summary>
    public static IReadOnlyList<(string Piece, float Score)> Pieces()
    {
        var pieces = new List<(string, float)> { ("<pad>", 0f), ("</s>", 0f), ("<unk>", 0f) };
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (word, _) in DemoVocabulary.Words)
            foreach (var form in new[] { word, char.ToUpperInvariant(word[0]) + word[1..] })
                if (seen.Add(form)) pieces.Add((Space + form, -2f));
        pieces.Add((Space, -3f));
        foreach (char c in SpelledCharacters) pieces.Add((c.ToString(), -5f));
        return pieces;
    }

    /// <summary>The embedding table [V, <see cref="Width"/>] row-major: a demo word's piece has its place slots, others zero.</summary>
    public static float[] EmbeddingTable()
    {
        var pieces = Pieces();
        int d = DemoVocabulary.Dimension, width = Width;
        var mask = DemoXlTextEncoder.SlotMask(SlotGroups);
        var table = new float[pieces.Count * width];
        for (int id = 0; id < pieces.Count; id++)
        {
            var piece = pieces[id].Piece;
            if (piece.Length < 2 || !piece.StartsWith(Space, StringComparison.Ordinal)) continue;
            var e = DemoVocabulary.Embedding(piece[1..].ToLowerInvariant());
            if (e is null) continue;
            for (int i = 0; i < d; i++) table[id * width + i] = e[i] * mask[i];
        }
        return table;
    }

    /// <summary>The C# reference of the graph: <c>last_hidden_state</c> ([B·T·<see cref="Width"/>]) for ids [B, T] flattened.</summary>
    public static float[] Encode(ReadOnlySpan<long> inputIds)
    {
        var table = EmbeddingTable();
        int width = Width, count = table.Length / width;
        var hidden = new float[inputIds.Length * width];
        for (int i = 0; i < inputIds.Length; i++)
        {
            if (inputIds[i] < 0 || inputIds[i] >= count)
                throw new ArgumentOutOfRangeException(nameof(inputIds), $"Token id {inputIds[i]} at position {i} is not one of the {count} demo T5 pieces.");
            table.AsSpan((int)inputIds[i] * width, width).CopyTo(hidden.AsSpan(i * width, width));
        }
        return hidden;
    }

    /// <summary>Builds <c>text_encoder_3/model.onnx</c>.</summary>
    public static OnnxGraphBuilder BuildGraph()
    {
        var g = new OnnxGraphBuilder("demo_t5_encoder");
        var ids = g.Input("input_ids", OnnxElementType.Int64, "batch", "sequence");
        var table = g.Initializer("shared_embedding", EmbeddingTable(), Pieces().Count, Width);
        g.NodeNamed("Gather", [table, ids], "last_hidden_state", ("axis", 0L));
        g.Output("last_hidden_state", OnnxElementType.Float, "batch", "sequence", Width);
        return g;
    }

    /// <summary>
    /// Writes <c>tokenizer.json</c> (model Unigram with <see cref="Pieces"/>, unk id 2; the SentencePiece converter's space-run
    /// rule; the Metaspace pre-tokenizer; <c>&lt;/s&gt;</c> appended by a TemplateProcessing post-processor),
    /// <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c> into <paramref name="directory"/>.
    /// </summary>
    public static void WriteTokenizer(string directory, int modelMaxLength)
    {
        Directory.CreateDirectory(directory);
        var pieces = Pieces();
        string[] specials = ["<pad>", "</s>", "<unk>"];
        DemoJson.Write(Path.Combine(directory, "tokenizer.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteNull("truncation");
            w.WriteNull("padding");
            w.WriteStartArray("added_tokens");
            for (int id = 0; id < specials.Length; id++)
            {
                w.WriteStartObject();
                w.WriteNumber("id", id);
                w.WriteString("content", specials[id]);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("normalizer");
            w.WriteString("type", "Sequence");
            w.WriteStartArray("normalizers");
            w.WriteStartObject();
            w.WriteString("type", "Replace");
            w.WriteStartObject("pattern");
            w.WriteString("Regex", " {2,}");
            w.WriteEndObject();
            w.WriteString("content", " ");
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteStartObject("pre_tokenizer");
            w.WriteString("type", "Metaspace");
            w.WriteString("replacement", Space);
            w.WriteString("prepend_scheme", "always");
            w.WriteBoolean("split", true);
            w.WriteEndObject();
            w.WriteStartObject("post_processor");
            w.WriteString("type", "TemplateProcessing");
            w.WriteStartArray("single");
            w.WriteStartObject();
            w.WriteStartObject("Sequence");
            w.WriteString("id", "A");
            w.WriteNumber("type_id", 0);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteStartObject("SpecialToken");
            w.WriteString("id", "</s>");
            w.WriteNumber("type_id", 0);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteStartObject("special_tokens");
            w.WriteStartObject("</s>");
            w.WriteString("id", "</s>");
            w.WriteStartArray("ids");
            w.WriteNumberValue(EosId);
            w.WriteEndArray();
            w.WriteStartArray("tokens");
            w.WriteStringValue("</s>");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject("decoder");
            w.WriteString("type", "Metaspace");
            w.WriteString("replacement", Space);
            w.WriteString("prepend_scheme", "always");
            w.WriteBoolean("split", true);
            w.WriteEndObject();
            w.WriteStartObject("model");
            w.WriteString("type", "Unigram");
            w.WriteNumber("unk_id", UnknownId);
            w.WriteStartArray("vocab");
            foreach (var (piece, score) in pieces)
            {
                w.WriteStartArray();
                w.WriteStringValue(piece);
                w.WriteNumberValue(score);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteBoolean("byte_fallback", false);
            w.WriteEndObject();
            w.WriteEndObject();
        });
        DemoJson.Write(Path.Combine(directory, "tokenizer_config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("eos_token", "</s>");
            w.WriteNumber("model_max_length", modelMaxLength);
            w.WriteString("pad_token", "<pad>");
            w.WriteString("tokenizer_class", "T5TokenizerFast");
            w.WriteString("unk_token", "<unk>");
            w.WriteEndObject();
        });
        DemoJson.Write(Path.Combine(directory, "special_tokens_map.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("eos_token", "</s>");
            w.WriteString("pad_token", "<pad>");
            w.WriteString("unk_token", "<unk>");
            w.WriteEndObject();
        });
    }
}

using System.Text.Json;
using MLNet.Diffusion.Models;

namespace MLNet.Diffusion.Tokenization;

/// <summary>
/// Reads a Hugging Face tokenizers <c>tokenizer.json</c> whose model is a SentencePiece Unigram model (T5's, as
/// transformers' <c>convert_slow_tokenizer</c> writes it) into a <see cref="SentencePieceModel"/>, so that the folder's
/// text is segmented by the same normaliser and Viterbi search as a <c>spiece.model</c> (<see cref="T5Tokenizer"/>).
/// </summary>
/// <remarks>
/// <para>What is read, and what it becomes: <c>model</c> (<c>type</c> "Unigram", <c>unk_id</c>, <c>vocab</c> as
/// [piece, score] pairs in id order, <c>byte_fallback</c>) gives the pieces; <c>added_tokens</c> marks pieces as control
/// (<c>special</c> true) or user-defined; the <c>Precompiled</c> normaliser's base64 <c>precompiled_charsmap</c> is
/// SentencePiece's compiled character map, byte for byte; the <c>Metaspace</c> pre-tokenizer ("▁", with
/// <c>prepend_scheme</c> "always"/"first" or, in older files, <c>add_prefix_space</c> true) is SentencePiece's space
/// escaping and dummy prefix; the converter's whitespace rules (<c>Strip</c>, <c>Replace</c> of space runs, or the older
/// <c>WhitespaceSplit</c> pre-tokenizer) stand for <c>remove_extra_whitespaces</c>; and the special token the
/// <c>TemplateProcessing</c> post-processor appends is the end-of-sequence id.</para>
/// <para>The ids are SentencePiece's for that model (the tokenizer T5 was trained with), which is what transformers'
/// slow <c>T5Tokenizer</c> gives; a normaliser, pre-tokenizer or post-processor of another kind is refused, naming the
/// file and the key, rather than approximated.</para>
/// </remarks>
internal static class UnigramTokenizerJson
{
    /// <summary>The file's name in a tokenizer folder.</summary>
    public const string FileName = "tokenizer.json";

    /// <summary>Reads <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">Too large, not JSON, or a key is missing or malformed; the message names the file and the key.</exception>
    /// <exception cref="NotSupportedException">A model, normaliser, pre-tokenizer or post-processor of another kind; the message names the file and the key.</exception>
    public static SentencePieceModel Load(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"The tokenizer file '{path}' does not exist.", path);
        if (info.Length > ModelFolderValidator.MaxTokenizerFileBytes)
            throw new InvalidDataException($"'{path}' is {info.Length:N0} bytes, more than the {ModelFolderValidator.MaxTokenizerFileBytes:N0} a tokenizer file may have.");
        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses the text of a <c>tokenizer.json</c>; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="InvalidDataException">Not JSON, or a key is missing or malformed.</exception>
    /// <exception cref="NotSupportedException">A component of another kind.</exception>
    public static SentencePieceModel Parse(ReadOnlyMemory<byte> json, string source)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{source}' is not valid JSON: {e.Message}", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Malformed(source, "(root)", "an object");
            var model = Property(root, "model", JsonValueKind.Object, source, "model");
            // Files written by early tokenizers releases may leave model.type out; a Unigram model is then known by its
            // [piece, score] vocabulary, as the library itself tells the models apart.
            string type = model.TryGetProperty("type", out _) ? Property(model, "type", JsonValueKind.String, source, "model.type").GetString()!
                : model.TryGetProperty("vocab", out var v) && v.ValueKind == JsonValueKind.Array ? "Unigram"
                : Property(model, "type", JsonValueKind.String, source, "model.type").GetString()!; // reports it missing
            if (type != "Unigram")
                throw new NotSupportedException($"'{source}': model.type is \"{type}\"; a T5 tokenizer is a SentencePiece Unigram model (\"Unigram\").");

            var pieces = ReadVocabulary(model, source);
            var unkElement = Property(model, "unk_id", JsonValueKind.Number, source, "model.unk_id");
            if (!unkElement.TryGetInt32(out int unk) || unk < 0 || unk >= pieces.Count)
                throw new InvalidDataException($"'{source}': model.unk_id {unkElement.GetRawText()} is not an id of its {pieces.Count} pieces.");
            bool byteFallback = model.TryGetProperty("byte_fallback", out var fallback) && fallback.ValueKind == JsonValueKind.True;
            MarkAddedTokens(root, pieces, source);
            pieces[unk] = pieces[unk] with { Type = SentencePieceType.Unknown };

            byte[] charsMap = [];
            bool removeExtraWhitespaces = false;
            if (root.TryGetProperty("normalizer", out var normalizer) && normalizer.ValueKind != JsonValueKind.Null)
                ReadNormalizer(normalizer, "normalizer", source, ref charsMap, ref removeExtraWhitespaces);
            bool? addDummyPrefix = null;
            if (root.TryGetProperty("pre_tokenizer", out var preTokenizer) && preTokenizer.ValueKind != JsonValueKind.Null)
                ReadPreTokenizer(preTokenizer, "pre_tokenizer", source, ref addDummyPrefix, ref removeExtraWhitespaces);
            if (addDummyPrefix is not bool prefix)
                throw new NotSupportedException($"'{source}': pre_tokenizer has no Metaspace (\"▁\") step; a SentencePiece tokenizer writes spaces as \"▁\".");

            return new SentencePieceModel
            {
                Pieces = pieces, ModelType = 1, UnknownId = unk, BosId = -1, EosId = EndOfSequenceId(root, pieces, source),
                PadId = pieces.FindIndex(p => p.Piece == "<pad>"), ByteFallback = byteFallback, NormalizerName = FileName,
                PrecompiledCharsMap = charsMap, AddDummyPrefix = prefix, RemoveExtraWhitespaces = removeExtraWhitespaces, EscapeWhitespaces = true,
            };
        }
    }

    private static List<SentencePiece> ReadVocabulary(JsonElement model, string source)
    {
        var vocab = Property(model, "vocab", JsonValueKind.Array, source, "model.vocab");
        var pieces = new List<SentencePiece>(vocab.GetArrayLength());
        int index = 0;
        foreach (var entry in vocab.EnumerateArray())
        {
            if (entry.ValueKind != JsonValueKind.Array || entry.GetArrayLength() != 2
                || entry[0].ValueKind != JsonValueKind.String || entry[1].ValueKind != JsonValueKind.Number || !entry[1].TryGetDouble(out double score))
                throw Malformed(source, $"model.vocab[{index}]", "a [piece, score] pair");
            pieces.Add(new SentencePiece(entry[0].GetString()!, (float)score, SentencePieceType.Normal));
            index++;
        }
        if (pieces.Count == 0) throw new InvalidDataException($"'{source}': model.vocab is empty.");
        return pieces;
    }

    /// <summary>Special added tokens are control pieces (never produced from text), the others user-defined ones.</summary>
    private static void MarkAddedTokens(JsonElement root, List<SentencePiece> pieces, string source)
    {
        if (!root.TryGetProperty("added_tokens", out var added) || added.ValueKind == JsonValueKind.Null) return;
        if (added.ValueKind != JsonValueKind.Array) throw Malformed(source, "added_tokens", "an array");
        int index = 0;
        foreach (var token in added.EnumerateArray())
        {
            string key = $"added_tokens[{index++}]";
            if (token.ValueKind != JsonValueKind.Object) throw Malformed(source, key, "an object");
            var idElement = Property(token, "id", JsonValueKind.Number, source, key + ".id");
            string content = Property(token, "content", JsonValueKind.String, source, key + ".content").GetString()!;
            bool special = token.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True;
            if (!idElement.TryGetInt32(out int id) || id < 0)
                throw Malformed(source, key + ".id", "a non-negative id");
            if (id >= pieces.Count)
            {
                if (special) continue; // a special token beyond the model's pieces is never produced from text
                throw new NotSupportedException($"'{source}': {key} adds \"{content}\" as id {id}, beyond model.vocab's {pieces.Count} pieces; only tokens of the model's vocabulary are supported.");
            }
            if (pieces[id].Piece != content)
                throw new InvalidDataException($"'{source}': {key} gives id {id} to \"{content}\", but model.vocab has \"{pieces[id].Piece}\" there.");
            pieces[id] = pieces[id] with { Type = special ? SentencePieceType.Control : SentencePieceType.UserDefined };
        }
    }

    private static void ReadNormalizer(JsonElement normalizer, string key, string source, ref byte[] charsMap, ref bool removeExtraWhitespaces)
    {
        if (normalizer.ValueKind != JsonValueKind.Object) throw Malformed(source, key, "an object");
        string type = Property(normalizer, "type", JsonValueKind.String, source, key + ".type").GetString()!;
        switch (type)
        {
            case "Sequence":
                int i = 0;
                foreach (var step in Property(normalizer, "normalizers", JsonValueKind.Array, source, key + ".normalizers").EnumerateArray())
                    ReadNormalizer(step, $"{key}.normalizers[{i++}]", source, ref charsMap, ref removeExtraWhitespaces);
                break;
            case "Precompiled":
                var map = normalizer.TryGetProperty("precompiled_charsmap", out var m) ? m : default;
                if (map.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) break;
                if (map.ValueKind != JsonValueKind.String || !map.TryGetBytesFromBase64(out var bytes))
                    throw Malformed(source, key + ".precompiled_charsmap", "a base64 string");
                charsMap = bytes;
                break;
            case "Strip":
                removeExtraWhitespaces = true;
                break;
            case "Replace":
                // The converter's rule for remove_extra_whitespaces: a run of spaces becomes one ("▁" or " ").
                var pattern = Property(normalizer, "pattern", JsonValueKind.Object, source, key + ".pattern");
                string? regex = pattern.TryGetProperty("Regex", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
                string? content = normalizer.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
                if (regex != " {2,}" || content is not (" " or SentencePieceNormalizer.SpaceSymbol))
                    throw new NotSupportedException($"'{source}': {key} replaces {pattern.GetRawText()} by {(content is null ? "nothing" : $"\"{content}\"")}; only the SentencePiece converter's rule (the regex \" {{2,}}\" by one space or \"▁\") is supported.");
                removeExtraWhitespaces = true;
                break;
            default:
                throw new NotSupportedException($"'{source}': {key}.type is \"{type}\"; a SentencePiece tokenizer's normalizer is Precompiled, Strip or Replace (of space runs), or a Sequence of them.");
        }
    }

    private static void ReadPreTokenizer(JsonElement preTokenizer, string key, string source, ref bool? addDummyPrefix, ref bool removeExtraWhitespaces)
    {
        if (preTokenizer.ValueKind != JsonValueKind.Object) throw Malformed(source, key, "an object");
        string type = Property(preTokenizer, "type", JsonValueKind.String, source, key + ".type").GetString()!;
        switch (type)
        {
            case "Sequence":
                int i = 0;
                foreach (var step in Property(preTokenizer, "pretokenizers", JsonValueKind.Array, source, key + ".pretokenizers").EnumerateArray())
                    ReadPreTokenizer(step, $"{key}.pretokenizers[{i++}]", source, ref addDummyPrefix, ref removeExtraWhitespaces);
                break;
            case "WhitespaceSplit":
                removeExtraWhitespaces = true;
                break;
            case "Metaspace":
                string replacement = Property(preTokenizer, "replacement", JsonValueKind.String, source, key + ".replacement").GetString()!;
                if (replacement != SentencePieceNormalizer.SpaceSymbol)
                    throw new NotSupportedException($"'{source}': {key}.replacement is \"{replacement}\"; SentencePiece writes a space as \"▁\" (U+2581).");
                if (preTokenizer.TryGetProperty("prepend_scheme", out var scheme) && scheme.ValueKind == JsonValueKind.String)
                    addDummyPrefix = scheme.GetString() switch
                    {
                        "always" or "first" => true,
                        "never" => false,
                        var other => throw new NotSupportedException($"'{source}': {key}.prepend_scheme is \"{other}\"; expected \"always\", \"first\" or \"never\"."),
                    };
                else if (preTokenizer.TryGetProperty("add_prefix_space", out var add) && add.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    addDummyPrefix = add.ValueKind == JsonValueKind.True;
                else addDummyPrefix = true; // both absent: tokenizers' default (prepend_scheme "always")
                break;
            default:
                throw new NotSupportedException($"'{source}': {key}.type is \"{type}\"; a SentencePiece tokenizer's pre-tokenizer is Metaspace, optionally after WhitespaceSplit in a Sequence.");
        }
    }

    /// <summary>The id the post-processor appends (T5: "&lt;/s&gt;"), or, without a post-processor, the piece "&lt;/s&gt;".</summary>
    private static int EndOfSequenceId(JsonElement root, List<SentencePiece> pieces, string source)
    {
        string? eos = "</s>";
        string key = "model.vocab";
        if (root.TryGetProperty("post_processor", out var post) && post.ValueKind != JsonValueKind.Null)
        {
            if (post.ValueKind != JsonValueKind.Object) throw Malformed(source, "post_processor", "an object");
            string type = Property(post, "type", JsonValueKind.String, source, "post_processor.type").GetString()!;
            if (type != "TemplateProcessing")
                throw new NotSupportedException($"'{source}': post_processor.type is \"{type}\"; T5's tokenizer appends its end token with a TemplateProcessing post-processor.");
            var single = Property(post, "single", JsonValueKind.Array, source, "post_processor.single");
            var items = single.EnumerateArray().ToList();
            if (items.Count != 2 || !items[0].TryGetProperty("Sequence", out _) || !items[1].TryGetProperty("SpecialToken", out var special)
                || !special.TryGetProperty("id", out var name) || name.ValueKind != JsonValueKind.String)
                throw new NotSupportedException($"'{source}': post_processor.single is {single.GetRawText()}; T5's tokenizer adds one special token after the text and none before it.");
            eos = name.GetString();
            key = "post_processor.single";
            if (post.TryGetProperty("special_tokens", out var specials) && specials.ValueKind == JsonValueKind.Object
                && specials.TryGetProperty(eos!, out var entry) && entry.TryGetProperty("ids", out var ids) && ids.ValueKind == JsonValueKind.Array
                && ids.GetArrayLength() == 1 && ids[0].TryGetInt32(out int id))
            {
                if (id < 0 || id >= pieces.Count)
                    throw new InvalidDataException($"'{source}': post_processor.special_tokens gives \"{eos}\" the id {id}, outside model.vocab's {pieces.Count} pieces.");
                return id;
            }
        }
        int index = pieces.FindIndex(p => p.Piece == eos);
        if (index < 0) throw new InvalidDataException($"'{source}': the end-of-sequence token \"{eos}\" ({key}) is not a piece of model.vocab.");
        return index;
    }

    private static JsonElement Property(JsonElement parent, string name, JsonValueKind kind, string source, string key)
    {
        if (!parent.TryGetProperty(name, out var value))
            throw new InvalidDataException($"'{source}' has no {key}.");
        if (value.ValueKind != kind) throw Malformed(source, key, $"a JSON {kind.ToString().ToLowerInvariant()}");
        return value;
    }

    private static InvalidDataException Malformed(string source, string key, string expected) =>
        new($"'{source}': {key} is not {expected}.");
}

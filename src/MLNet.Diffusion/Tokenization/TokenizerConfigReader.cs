using System.Text.Json;

namespace MLNet.Diffusion.Tokenization;

/// <summary>
/// Reads the optional <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c> of a diffusers tokenizer folder
/// into <see cref="ClipTokenizerOptions"/>. As in Hugging Face's loader, a token named in
/// <c>special_tokens_map.json</c> wins over the same one in <c>tokenizer_config.json</c>.
/// </summary>
internal static class TokenizerConfigReader
{
    private static readonly JsonDocumentOptions DocumentOptions = new()
    {
        AllowTrailingCommas = true,
        CommentHandling = JsonCommentHandling.Skip,
    };

    public static ClipTokenizerOptions Read(string tokenizerDirectory)
    {
        var options = new ClipTokenizerOptions();
        string? padToken = null;

        // Lowest precedence first: a later file overwrites what an earlier one set.
        foreach (string fileName in new[] { ClipTokenizer.TokenizerConfigFileName, ClipTokenizer.SpecialTokensMapFileName })
        {
            string path = Path.Combine(tokenizerDirectory, fileName);
            if (!File.Exists(path))
            {
                continue;
            }

            using JsonDocument document = Parse(path);
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"'{path}' should hold a JSON object.");
            }

            if (ReadToken(root, "bos_token", path) is string bos)
            {
                options.BosToken = bos;
            }

            if (ReadToken(root, "eos_token", path) is string eos)
            {
                options.EosToken = eos;
            }

            if (ReadToken(root, "pad_token", path) is string pad)
            {
                padToken = pad;
            }

            if (ReadMaxLength(root, path) is int maxLength)
            {
                options.MaxLength = maxLength;
            }
        }

        options.PadToken = padToken;
        return options;
    }

    private static JsonDocument Parse(string path)
    {
        try
        {
            using FileStream stream = File.OpenRead(path);
            return JsonDocument.Parse(stream, DocumentOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>A token given as a string or as an object with a string <c>content</c>; null when absent or null.</summary>
    private static string? ReadToken(JsonElement root, string key, string path)
    {
        if (!root.TryGetProperty(key, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.Object
            && value.TryGetProperty("content", out JsonElement content))
        {
            value = content;
        }

        if (value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } token)
        {
            return token;
        }

        throw new InvalidDataException(
            $"'{path}' gives '{key}' as {value.ValueKind}; it should be a non-empty string or an object with a string \"content\".");
    }

    /// <summary>
    /// <c>model_max_length</c>, capped at CLIP's 77 (files often hold 10^30 or another huge number to mean "unset");
    /// null when absent or null.
    /// </summary>
    private static int? ReadMaxLength(JsonElement root, string path)
    {
        if (!root.TryGetProperty("model_max_length", out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number)
        {
            throw new InvalidDataException($"'{path}' gives 'model_max_length' as {value.ValueKind}; it should be a number.");
        }

        double length = value.GetDouble();
        if (double.IsNaN(length) || length != Math.Floor(length) || length < ClipTokenizerOptions.MinimumMaxLength)
        {
            throw new InvalidDataException(
                $"'{path}' gives 'model_max_length' as {value.GetRawText()}; it should be a whole number of at least {ClipTokenizerOptions.MinimumMaxLength}.");
        }

        return length >= ClipTokenizerOptions.ClipContextLength ? ClipTokenizerOptions.ClipContextLength : (int)length;
    }
}

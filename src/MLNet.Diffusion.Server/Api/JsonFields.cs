using System.Globalization;
using System.Text.Json;
using MLNet.Diffusion.Server.Errors;

namespace MLNet.Diffusion.Server.Api;

/// <summary>
/// Reads a JSON request body field by field, so that a field of the wrong type is refused with its name, the type
/// expected and the value given (a model binder would say only that the body did not bind). Null counts as absent,
/// as both APIs' optional fields allow.
/// </summary>
internal readonly struct JsonFields(JsonElement root, string prefix = "")
{
    /// <summary>Parses the request body as one JSON object; malformed JSON or another value is a 400.</summary>
    public static async Task<(JsonDocument Document, JsonFields Fields)> ReadAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        if (request.ContentType is { } type && !type.Contains("json", StringComparison.OrdinalIgnoreCase))
            throw new RequestException(StatusCodes.Status415UnsupportedMediaType,
                $"The request body must be JSON (Content-Type: application/json); got Content-Type '{type}'.", null, "unsupported_media_type");
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(request.Body, default, cancellationToken).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            throw new RequestException(StatusCodes.Status400BadRequest,
                $"The request body is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}): {e.Message}", null, "invalid_json");
        }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            var kind = document.RootElement.ValueKind;
            document.Dispose();
            throw new RequestException(StatusCodes.Status400BadRequest, $"The request body must be a JSON object; got a JSON {Describe(kind)}.", null, "invalid_json");
        }
        return (document, new JsonFields(document.RootElement));
    }

    /// <summary>The nested object <paramref name="name"/>, or null when absent.</summary>
    public JsonFields? Object(string name)
    {
        if (Get(name) is not { } value) return null;
        if (value.ValueKind != JsonValueKind.Object) throw WrongType(name, "a JSON object", value);
        return new JsonFields(value, FullName(name) + ".");
    }

    /// <summary>The string field <paramref name="name"/>, or null.</summary>
    public string? String(string name)
    {
        if (Get(name) is not { } value) return null;
        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw WrongType(name, "a string", value);
    }

    /// <summary>The whole-number field <paramref name="name"/> within [<paramref name="min"/>, <paramref name="max"/>], or null.</summary>
    public long? Integer(string name, long min = long.MinValue, long max = long.MaxValue)
    {
        if (Get(name) is not { } value) return null;
        long result;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var l)) result = l;
        else if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var d) && double.IsInteger(d) && Math.Abs(d) < 9e15) result = (long)d;
        else throw WrongType(name, "a whole number", value);
        if (result < min || result > max)
            throw RequestException.BadValue(FullName(name), $"'{FullName(name)}' must be from {min} to {max}; got {result}.");
        return result;
    }

    /// <summary>The number field <paramref name="name"/> (finite), or null.</summary>
    public double? Number(string name)
    {
        if (Get(name) is not { } value) return null;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var d) && double.IsFinite(d)) return d;
        throw WrongType(name, "a finite number", value);
    }

    /// <summary>The Boolean field <paramref name="name"/>, or null.</summary>
    public bool? Boolean(string name)
    {
        if (Get(name) is not { } value) return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw WrongType(name, "true or false", value),
        };
    }

    /// <summary>The array of strings <paramref name="name"/>, or null.</summary>
    public string[]? Strings(string name)
    {
        if (Get(name) is not { } value) return null;
        if (value.ValueKind != JsonValueKind.Array) throw WrongType(name, "an array of strings", value);
        var result = new string[value.GetArrayLength()];
        int i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String) throw WrongType($"{name}[{i}]", "a string", item);
            result[i++] = item.GetString()!;
        }
        return result;
    }

    /// <summary>The field's full name as messages give it (with the enclosing object's, if nested).</summary>
    public string FullName(string name) => prefix + name;

    private JsonElement? Get(string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    private RequestException WrongType(string name, string expected, JsonElement value)
    {
        string raw = value.GetRawText();
        if (raw.Length > 60) raw = raw[..57] + "…";
        return RequestException.BadValue(FullName(name), $"'{FullName(name)}' must be {expected}; got {raw} (a JSON {Describe(value.ValueKind)}).");
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "Boolean",
        _ => "null",
    };

    /// <summary>Formats a number for a message.</summary>
    public static string Format(double value) => value.ToString("G", CultureInfo.InvariantCulture);
}

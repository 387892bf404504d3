using System.Globalization;
using MLNet.Diffusion.Server.Errors;

namespace MLNet.Diffusion.Server.Api;

/// <summary>Named request fields, from a JSON body or a multipart form, read with the same checks.</summary>
internal interface IFieldSource
{
    /// <summary>A string, or null when absent.</summary>
    string? String(string name);

    /// <summary>A whole number, or null when absent.</summary>
    long? Integer(string name);

    /// <summary>A finite number, or null when absent.</summary>
    double? Number(string name);
}

/// <summary>Fields of a JSON object.</summary>
internal sealed class JsonFieldSource(JsonFields fields) : IFieldSource
{
    /// <inheritdoc />
    public string? String(string name) => fields.String(name);

    /// <inheritdoc />
    public long? Integer(string name) => fields.Integer(name);

    /// <inheritdoc />
    public double? Number(string name) => fields.Number(name);
}

/// <summary>Fields of a multipart form (all text; numbers are parsed, invariant culture).</summary>
internal sealed class FormFieldSource(IFormCollection form) : IFieldSource
{
    /// <inheritdoc />
    public string? String(string name) => form.TryGetValue(name, out var value) && value.Count > 0 ? value[0] : null;

    /// <inheritdoc />
    public long? Integer(string name)
    {
        if (String(name) is not { } text || text.Length == 0) return null;
        return long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw RequestException.BadValue(name, $"'{name}' must be a whole number; got \"{Shorten(text)}\".");
    }

    /// <inheritdoc />
    public double? Number(string name)
    {
        if (String(name) is not { } text || text.Length == 0) return null;
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value)
            ? value
            : throw RequestException.BadValue(name, $"'{name}' must be a finite number; got \"{Shorten(text)}\".");
    }

    private static string Shorten(string text) => text.Length > 60 ? text[..57] + "…" : text;
}

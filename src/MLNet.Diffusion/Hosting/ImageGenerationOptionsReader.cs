// Microsoft.Extensions.AI marks its image-generation abstraction experimental ([Experimental("MEAI001")]).
// This file reads that abstraction's options, so it opts in to MEAI001 here; nothing else is suppressed.
#pragma warning disable MEAI001

using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace MLNet.Diffusion.Hosting;

/// <summary>
/// Reads <see cref="ImageGenerationOptions"/> as the project's image generators take them (the local
/// <see cref="StableDiffusionImageGenerator"/> and the cluster's): the additional properties by kind, accepting the forms a
/// caller or a JSON body gives them, and the media type. A value of the wrong kind is refused naming the property.
/// </summary>
internal static class ImageGenerationOptionsReader
{
    /// <summary>Whether <paramref name="mediaType"/> names PNG (<c>image/png</c>, parameters and case aside).</summary>
    public static bool IsPng(string mediaType) =>
        string.Equals(mediaType.Split(';', 2)[0].Trim(), StableDiffusionImageGenerator.PngMediaType, StringComparison.OrdinalIgnoreCase);

    /// <summary>The whole-number property <paramref name="key"/>: null when absent; any integer type, an integral floating value, or its text.</summary>
    /// <exception cref="ArgumentException">The value is of another kind; the message names the property and the value.</exception>
    public static long? GetInteger(AdditionalPropertiesDictionary? extra, string key)
    {
        if (extra is null || !extra.TryGetValue(key, out var value) || value is null) return null;
        long? result = value switch
        {
            long l => l,
            int i => i,
            short s => s,
            sbyte s => s,
            byte b => b,
            ushort u => u,
            uint u => u,
            ulong u when u <= long.MaxValue => (long)u,
            double d when double.IsInteger(d) && Math.Abs(d) <= 1e15 => (long)d,
            float f when float.IsInteger(f) && Math.Abs(f) <= 1e7f => (long)f,
            decimal m when decimal.IsInteger(m) && m >= long.MinValue && m <= long.MaxValue => (long)m,
            string s when long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var p) => p,
            JsonElement { ValueKind: JsonValueKind.Number } j when j.TryGetInt64(out var p) => p,
            JsonElement { ValueKind: JsonValueKind.String } j when long.TryParse(j.GetString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var p) => p,
            _ => null,
        };
        return result ?? throw WrongType(key, "a whole number", value);
    }

    /// <summary>The number property <paramref name="key"/>: null when absent; any numeric type, or its text.</summary>
    /// <exception cref="ArgumentException">The value is of another kind; the message names the property and the value.</exception>
    public static double? GetNumber(AdditionalPropertiesDictionary? extra, string key)
    {
        if (extra is null || !extra.TryGetValue(key, out var value) || value is null) return null;
        double? result = value switch
        {
            double d => d,
            float f => f,
            decimal m => (double)m,
            long l => l,
            int i => i,
            short s => s,
            sbyte s => s,
            byte b => b,
            ushort u => u,
            uint u => u,
            ulong u => u,
            string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var p) => p,
            JsonElement { ValueKind: JsonValueKind.Number } j => j.GetDouble(),
            JsonElement { ValueKind: JsonValueKind.String } j when double.TryParse(j.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var p) => p,
            _ => null,
        };
        return result ?? throw WrongType(key, "a number", value);
    }

    /// <summary>The text property <paramref name="key"/>: null when absent or JSON null.</summary>
    /// <exception cref="ArgumentException">The value is not text; the message names the property and the value.</exception>
    public static string? GetString(AdditionalPropertiesDictionary? extra, string key)
    {
        if (extra is null || !extra.TryGetValue(key, out var value) || value is null) return null;
        return value switch
        {
            string s => s,
            JsonElement { ValueKind: JsonValueKind.String } j => j.GetString(),
            JsonElement { ValueKind: JsonValueKind.Null } => null,
            _ => throw WrongType(key, "a string", value),
        };
    }

    private static ArgumentException WrongType(string key, string expected, object value) =>
        new($"ImageGenerationOptions.AdditionalProperties[\"{key}\"] must be {expected}; got {(value is JsonElement j ? j.GetRawText() : value)} ({value.GetType().Name}).", "options");
}

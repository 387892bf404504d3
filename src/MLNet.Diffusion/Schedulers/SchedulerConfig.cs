using System.Globalization;
using System.Text.Json;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// The contents of a diffusers <c>scheduler/scheduler_config.json</c>. Values are kept as written:
/// a key that the file does not contain takes the default of the scheduler class that reads it,
/// exactly as diffusers' <c>ConfigMixin</c> does, so each scheduler asks for its keys with its own defaults.
/// </summary>
public sealed class SchedulerConfig
{
    private readonly Dictionary<string, JsonElement> _values;

    private SchedulerConfig(Dictionary<string, JsonElement> values, string? source)
    {
        _values = values;
        Source = source;
    }

    /// <summary>An empty configuration: every scheduler uses its class defaults.</summary>
    public static SchedulerConfig Empty { get; } = new(new Dictionary<string, JsonElement>(StringComparer.Ordinal), null);

    /// <summary>The file the configuration was read from, when there is one (used in error messages).</summary>
    public string? Source { get; }

    /// <summary>The diffusers class named by <c>_class_name</c> (for example <c>PNDMScheduler</c>), or null.</summary>
    public string? ClassName => GetString("_class_name", null!);

    /// <summary>The keys present in the file.</summary>
    public IEnumerable<string> Keys => _values.Keys;

    /// <summary>
    /// Reads a configuration file and checks its noise schedule (<see cref="SchedulerMath.ValidateSchedule"/>:
    /// <c>num_train_timesteps</c>, <c>beta_start</c>, <c>beta_end</c>, <c>trained_betas</c> and the ᾱ they give), so
    /// that a schedule whose numbers cannot work is refused here, naming the key, rather than failing later as NaN.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a JSON object, or a schedule number is out of range.</exception>
    public static SchedulerConfig Load(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Scheduler configuration '{path}' was not found. A diffusers model folder has it at scheduler/scheduler_config.json.", path);
        var config = Parse(File.ReadAllText(path), path);
        SchedulerMath.ValidateSchedule(config);
        return config;
    }

    /// <summary>Parses configuration JSON text.</summary>
    /// <param name="json">The JSON object text.</param>
    /// <param name="source">Where the text came from, named in error messages.</param>
    /// <exception cref="InvalidDataException">The text is not a JSON object.</exception>
    public static SchedulerConfig Parse(string json, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        json = QuoteNonFiniteLiterals(json);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Scheduler configuration '{source ?? "(text)"}' is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"Scheduler configuration '{source ?? "(text)"}' must be a JSON object, found {doc.RootElement.ValueKind}.");
            var values = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            foreach (var p in doc.RootElement.EnumerateObject())
                values[p.Name] = p.Value.Clone();
            return new SchedulerConfig(values, source);
        }
    }

    /// <summary>Returns a copy with the given keys set (values are serialized to JSON).</summary>
    public SchedulerConfig With(params (string Key, object? Value)[] overrides)
    {
        var values = new Dictionary<string, JsonElement>(_values, StringComparer.Ordinal);
        foreach (var (key, value) in overrides)
            values[key] = JsonSerializer.SerializeToElement(value);
        return new SchedulerConfig(values, Source);
    }

    /// <summary>
    /// The value of <paramref name="key"/> as JSON text, for display: Python's non-finite literals (<c>-Infinity</c>,
    /// <c>Infinity</c>, <c>NaN</c>), which <see cref="GetDouble"/> reads as numbers, are shown as written.
    /// </summary>
    /// <exception cref="KeyNotFoundException">The file has no such key.</exception>
    public string GetRawText(string key)
    {
        var value = _values[key];
        return value.ValueKind == JsonValueKind.String && value.GetString() is "-Infinity" or "Infinity" or "NaN"
            ? value.GetString()! : value.GetRawText();
    }

    /// <summary>Whether the file sets <paramref name="key"/> to a non-null value.</summary>
    public bool Contains(string key) => _values.TryGetValue(key, out var v) && v.ValueKind != JsonValueKind.Null;

    /// <summary>A number, or <paramref name="defaultValue"/> when the key is absent or null.</summary>
    /// <param name="key">The configuration key.</param>
    /// <param name="defaultValue">The scheduler class's default.</param>
    /// <param name="allowInfinite">Accept ±Infinity (Python's json writes <c>-Infinity</c> for keys such as
    /// DPM-Solver's <c>lambda_min_clipped</c>); NaN is always refused.</param>
    /// <exception cref="InvalidDataException">The value is not a number (or not finite, unless allowed).</exception>
    public double GetDouble(string key, double defaultValue, bool allowInfinite = false)
    {
        if (!_values.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null) return defaultValue;
        double d;
        if (v.ValueKind == JsonValueKind.Number) d = v.GetDouble();
        else if (v.ValueKind == JsonValueKind.String && double.TryParse(v.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed)) d = parsed;
        else throw Bad(key, v, "a number");
        if (double.IsNaN(d) || (!allowInfinite && double.IsInfinity(d))) throw Bad(key, v, "a finite number");
        return d;
    }

    /// <summary>An integer, or <paramref name="defaultValue"/> when the key is absent or null.</summary>
    /// <exception cref="InvalidDataException">The value is not an integer.</exception>
    public int GetInt(string key, int defaultValue)
    {
        if (!_values.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null) return defaultValue;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i)) return i;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
        throw Bad(key, v, "an integer");
    }

    /// <summary>A boolean, or <paramref name="defaultValue"/> when the key is absent or null.</summary>
    /// <exception cref="InvalidDataException">The value is not a boolean.</exception>
    public bool GetBool(string key, bool defaultValue)
    {
        if (!_values.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null) return defaultValue;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(key, v, "true or false"),
        };
    }

    /// <summary>A string, or <paramref name="defaultValue"/> when the key is absent or null.</summary>
    /// <exception cref="InvalidDataException">The value is not a string.</exception>
    public string GetString(string key, string defaultValue)
    {
        if (!_values.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null) return defaultValue;
        if (v.ValueKind != JsonValueKind.String) throw Bad(key, v, "a string");
        return v.GetString()!;
    }

    /// <summary>An array of numbers (for example <c>trained_betas</c>), or null when absent.</summary>
    /// <exception cref="InvalidDataException">The value is not an array of finite numbers.</exception>
    public double[]? GetDoubleArray(string key)
    {
        if (!_values.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Array) throw Bad(key, v, "an array of numbers");
        var result = new double[v.GetArrayLength()];
        int i = 0;
        foreach (var e in v.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !double.IsFinite(e.GetDouble())) throw Bad(key, v, "an array of finite numbers");
            result[i++] = e.GetDouble();
        }
        return result;
    }

    /// <summary>
    /// Python's <c>json</c> module writes the non-standard literals <c>Infinity</c>, <c>-Infinity</c> and <c>NaN</c>;
    /// turn them (outside strings) into strings so the document parses, and let <see cref="GetDouble"/> judge them.
    /// </summary>
    private static string QuoteNonFiniteLiterals(string json)
    {
        if (!json.Contains("Infinity", StringComparison.Ordinal) && !json.Contains("NaN", StringComparison.Ordinal)) return json;
        var sb = new System.Text.StringBuilder(json.Length + 8);
        bool inString = false;
        for (int i = 0; i < json.Length; i++)
        {
            char c = json[i];
            if (inString)
            {
                sb.Append(c);
                if (c == '\\' && i + 1 < json.Length) sb.Append(json[++i]);
                else if (c == '"') inString = false;
                continue;
            }
            if (c == '"') { inString = true; sb.Append(c); continue; }
            foreach (var literal in (ReadOnlySpan<string>)["-Infinity", "Infinity", "NaN"])
            {
                if (string.CompareOrdinal(json, i, literal, 0, literal.Length) == 0)
                {
                    sb.Append('"').Append(literal).Append('"');
                    i += literal.Length - 1;
                    goto next;
                }
            }
            sb.Append(c);
        next:;
        }
        return sb.ToString();
    }

    private InvalidDataException Bad(string key, JsonElement value, string expected)
    {
        var text = value.GetRawText();
        if (text.Length > 80) text = text[..80] + "…";
        return new InvalidDataException($"Scheduler configuration '{Source ?? "(text)"}': key '{key}' is {text}, expected {expected}.");
    }
}

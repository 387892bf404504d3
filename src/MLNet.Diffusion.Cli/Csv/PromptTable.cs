using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Cli.Csv;

/// <summary>One row of a prompt table, with its seed resolved.</summary>
/// <param name="Row">The 0-based data row as ML.NET's text loader numbers them (header, blank lines and <c>//</c> comment lines are not rows).</param>
/// <param name="Prompt">The prompt.</param>
/// <param name="NegativePrompt">The negative prompt (the column's value, else --negative, else empty).</param>
/// <param name="Seed">The seed column's value, else base seed + <paramref name="Row"/>.</param>
internal sealed record PromptRow(int Row, string Prompt, string NegativePrompt, long Seed);

/// <summary>
/// Reads a CSV/TSV table of prompts (first line: column names) with ML.NET's text loader
/// (<c>ml.Data.LoadFromTextFile</c> with quoting and multi-line fields on), after reading its header with
/// <see cref="CsvReader"/> to find the columns by name.
/// </summary>
internal static class PromptTable
{
    /// <summary>Reads <paramref name="path"/>.</summary>
    /// <exception cref="UserException">The file is missing or empty, a named column does not exist (the message lists those that do), or a seed is not a whole number.</exception>
    public static IReadOnlyList<PromptRow> Read(MLContext ml, string path, string promptColumn, string? negativeColumn, string? seedColumn,
        string defaultNegative, long baseSeed, Action<string>? warn = null)
    {
        if (!File.Exists(path)) throw new UserException($"The table '{path}' does not exist.");
        char separator = CsvReader.SeparatorFor(path);
        string[] header;
        int records;
        using (var reader = new StreamReader(path, detectEncodingFromByteOrderMarks: true))
        {
            var all = CsvReader.Read(reader, separator, source: path).Select(r => r.Fields).ToList();
            if (all.Count == 0) throw new UserException($"The table '{path}' is empty; its first line must name the columns.");
            header = all[0];
            records = all.Count - 1;
        }
        int prompt = Find(header, promptColumn, "--prompt-column", path);
        int negative = negativeColumn is null ? -1 : Find(header, negativeColumn, "--negative-column", path);
        int seed = seedColumn is null ? -1 : Find(header, seedColumn, "--seed-column", path);

        var columns = new List<TextLoader.Column> { new("Prompt", DataKind.String, prompt) };
        if (negative >= 0) columns.Add(new("NegativePrompt", DataKind.String, negative));
        if (seed >= 0) columns.Add(new("Seed", DataKind.String, seed));
        var view = ml.Data.LoadFromTextFile(path, new TextLoader.Options
        {
            Columns = [.. columns],
            Separators = [separator],
            HasHeader = true,
            AllowQuoting = true,
            ReadMultilines = true,
            TrimWhitespace = false,
        });

        var rows = new List<PromptRow>();
        using var cursor = view.GetRowCursor(view.Schema);
        var getPrompt = cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema["Prompt"]);
        var getNegative = negative >= 0 ? cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema["NegativePrompt"]) : null;
        var getSeed = seed >= 0 ? cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema["Seed"]) : null;
        ReadOnlyMemory<char> text = default;
        while (cursor.MoveNext())
        {
            int row = rows.Count;
            getPrompt(ref text);
            string promptText = text.ToString();
            string neg = defaultNegative;
            if (getNegative is not null)
            {
                getNegative(ref text);
                if (text.Length > 0) neg = text.ToString();
            }
            long rowSeed = unchecked(baseSeed + row);
            if (getSeed is not null)
            {
                getSeed(ref text);
                var s = text.ToString().Trim();
                if (s.Length > 0 && !long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out rowSeed))
                    throw new UserException($"{path}, row {row}: the seed column '{seedColumn}' holds '{s}', which is not a whole number (leave it empty to use --seed + row).");
            }
            rows.Add(new PromptRow(row, promptText, neg, rowSeed));
        }
        if (rows.Count != records)
            warn?.Invoke($"ML.NET's text loader read {rows.Count} rows from '{Path.GetFileName(path)}', which has {records} records: it skips lines that start with // as comments.");
        return rows;
    }

    /// <summary>The index of <paramref name="name"/> in the header: an exact match, else the only case-insensitive one.</summary>
    private static int Find(string[] header, string name, string option, string path)
    {
        int exact = Array.IndexOf(header, name);
        if (exact >= 0) return exact;
        var loose = Enumerable.Range(0, header.Length).Where(i => string.Equals(header[i].Trim(), name.Trim(), StringComparison.OrdinalIgnoreCase)).ToArray();
        if (loose.Length == 1) return loose[0];
        throw new UserException($"{option}: the table '{Path.GetFileName(path)}' has no column '{name}'; its columns are: {string.Join(", ", header.Select(h => $"'{h}'"))}.");
    }
}

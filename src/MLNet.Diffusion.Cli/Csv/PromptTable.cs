using System.Globalization;

namespace MLNet.Diffusion.Cli.Csv;

/// <summary>One row of a prompt table, with its seed resolved.</summary>
/// <param name="Row">The 0-based data row (the header is not a row; blank lines are skipped).</param>
/// <param name="Prompt">The prompt.</param>
/// <param name="NegativePrompt">The negative prompt (the column's value, else --negative, else empty).</param>
/// <param name="Seed">The seed column's value, else base seed + <paramref name="Row"/>.</param>
internal sealed record PromptRow(int Row, string Prompt, string NegativePrompt, long Seed);

/// <summary>Reads a CSV/TSV table of prompts (first line: column names) into <see cref="PromptRow"/>s.</summary>
internal static class PromptTable
{
    /// <summary>Reads <paramref name="path"/>.</summary>
    /// <exception cref="UserException">The file is missing, a named column does not exist (the message lists those that do), or a seed is not a whole number.</exception>
    public static IReadOnlyList<PromptRow> Read(string path, string promptColumn, string? negativeColumn, string? seedColumn, string defaultNegative, long baseSeed)
    {
        if (!File.Exists(path)) throw new UserException($"The table '{path}' does not exist.");
        using var reader = new StreamReader(path, detectEncodingFromByteOrderMarks: true);
        var records = CsvReader.Read(reader, CsvReader.SeparatorFor(path), source: path).GetEnumerator();
        if (!records.MoveNext()) throw new UserException($"The table '{path}' is empty; its first line must name the columns.");
        var header = records.Current.Fields;
        int prompt = Find(header, promptColumn, "--prompt-column", path);
        int negative = negativeColumn is null ? -1 : Find(header, negativeColumn, "--negative-column", path);
        int seed = seedColumn is null ? -1 : Find(header, seedColumn, "--seed-column", path);

        var rows = new List<PromptRow>();
        while (records.MoveNext())
        {
            var record = records.Current;
            int row = rows.Count;
            string Field(int index) => index >= 0 && index < record.Fields.Length ? record.Fields[index] : "";
            long rowSeed = unchecked(baseSeed + row);
            if (seed >= 0 && Field(seed).Trim() is { Length: > 0 } text
                && !long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out rowSeed))
                throw new UserException($"{path}, line {record.Line}: the seed column '{seedColumn}' holds '{text}', which is not a whole number (leave it empty to use --seed + row).");
            string neg = negative >= 0 && Field(negative).Length > 0 ? Field(negative) : defaultNegative;
            rows.Add(new PromptRow(row, Field(prompt), neg, rowSeed));
        }
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

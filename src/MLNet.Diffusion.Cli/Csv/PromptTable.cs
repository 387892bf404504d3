using System.Globalization;

namespace MLNet.Diffusion.Cli.Csv;

/// <summary>One row of a prompt table, with its seed resolved.</summary>
/// <param name="Row">The 0-based data row (the header, blank lines and <c>//</c> comment lines are not rows).</param>
/// <param name="Prompt">The prompt.</param>
/// <param name="NegativePrompt">The negative prompt (the column's value, else --negative, else empty).</param>
/// <param name="Seed">The seed column's value, else base seed + <paramref name="Row"/>.</param>
internal sealed record PromptRow(int Row, string Prompt, string NegativePrompt, long Seed);

/// <summary>
/// A CSV/TSV table of prompts (first line: column names), read with <see cref="CsvReader"/> one row at a time each time
/// <see cref="Rows"/> is enumerated, so a table of any length costs the memory of one row. Rows are numbered as
/// earlier versions numbered them through ML.NET's text loader (lines that start with <c>//</c> are comments and not
/// rows), so a batch folder made by them resumes with the same row numbers.
/// </summary>
internal sealed class PromptTable
{
    private readonly char _separator;
    private readonly string[] _header;
    private readonly int _prompt, _negative, _seed;
    private readonly string _defaultNegative;
    private readonly long _baseSeed;

    private PromptTable(string path, char separator, string[] header, int prompt, int negative, int seed, string defaultNegative, long baseSeed)
    {
        Path = path;
        _separator = separator;
        _header = header;
        _prompt = prompt;
        _negative = negative;
        _seed = seed;
        _defaultNegative = defaultNegative;
        _baseSeed = baseSeed;
    }

    /// <summary>The table file.</summary>
    public string Path { get; }

    /// <summary>Opens <paramref name="path"/> and finds the named columns in its header.</summary>
    /// <exception cref="UserException">The file is missing or empty, or a named column does not exist (the message lists those that do).</exception>
    public static PromptTable Open(string path, string promptColumn, string? negativeColumn, string? seedColumn, string defaultNegative, long baseSeed)
    {
        if (!File.Exists(path)) throw new UserException($"The table '{path}' does not exist.");
        char separator = CsvReader.SeparatorFor(path);
        string[] header;
        using (var reader = new StreamReader(path, detectEncodingFromByteOrderMarks: true))
            header = Catching(() => new CsvReader(reader, separator, path).Read())?.Fields
                ?? throw new UserException($"The table '{path}' is empty; its first line must name the columns.");
        int prompt = Find(header, promptColumn, "--prompt-column", path);
        int negative = negativeColumn is null ? -1 : Find(header, negativeColumn, "--negative-column", path);
        int seed = seedColumn is null ? -1 : Find(header, seedColumn, "--seed-column", path);
        return new PromptTable(path, separator, header, prompt, negative, seed, defaultNegative, baseSeed);
    }

    /// <summary>
    /// The rows, read from the file as the sequence is enumerated (each enumeration reads the file again).
    /// <paramref name="commentLines"/> is told, at the end, how many comment lines were skipped and the first one's line.
    /// </summary>
    /// <exception cref="UserException">
    /// A record is badly quoted, has a cell over <see cref="CsvReader.DefaultMaxFieldLength"/> characters, has text in
    /// more cells than the header names or no cell for the prompt column, or a seed is not a whole number; the message names the line and
    /// column.
    /// </exception>
    public IEnumerable<PromptRow> Rows(Action<int, int>? commentLines = null)
    {
        using var reader = new StreamReader(Path, detectEncodingFromByteOrderMarks: true);
        var csv = new CsvReader(reader, _separator, Path) { ColumnNames = _header };
        Catching(csv.Read); // the header
        csv.SkipCommentLines = true;
        int row = 0;
        while (Catching(csv.Read) is { } record)
        {
            yield return Parse(csv, record, row);
            row = checked(row + 1);
        }
        commentLines?.Invoke(csv.CommentLines, csv.FirstCommentLine);
    }

    private PromptRow Parse(CsvReader csv, CsvRecord record, int row)
    {
        var f = record.Fields;
        // Cells beyond the header are refused unless empty (a trailing separator): text in them is text the row would lose.
        for (int extra = _header.Length; extra < f.Length; extra++)
        {
            if (f[extra].Length > 0)
                throw new UserException($"{csv.Where(record.Line, extra)}: the record has {f.Length} cells but the header names {_header.Length} columns; quote a cell that holds the separator (\"a, b\").");
        }
        if (_prompt >= f.Length)
            throw new UserException($"{csv.Where(record.Line, _prompt)}: the record has {f.Length} cell(s) and none for the prompt column; a row needs its prompt (an empty cell, \"\", if that is meant).");
        string negative = _negative >= 0 && _negative < f.Length && f[_negative].Length > 0 ? f[_negative] : _defaultNegative;
        long seed = unchecked(_baseSeed + row);
        if (_seed >= 0 && _seed < f.Length)
        {
            var s = f[_seed].Trim();
            if (s.Length > 0 && !long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out seed))
                throw new UserException($"{csv.Where(record.Line, _seed)}: the seed '{(s.Length > 40 ? s[..40] + "…" : s)}' is not a whole number (leave the cell empty to use --seed + row).");
        }
        return new PromptRow(row, f[_prompt], negative, seed);
    }

    /// <summary>The reader's format errors as <see cref="UserException"/>s: a table the user can fix.</summary>
    private static T Catching<T>(Func<T> read)
    {
        try
        {
            return read();
        }
        catch (InvalidDataException e)
        {
            throw new UserException(e.Message);
        }
    }

    /// <summary>The index of <paramref name="name"/> in the header: an exact match, else the only case-insensitive one.</summary>
    private static int Find(string[] header, string name, string option, string path)
    {
        int exact = Array.IndexOf(header, name);
        if (exact >= 0) return exact;
        var loose = Enumerable.Range(0, header.Length).Where(i => string.Equals(header[i].Trim(), name.Trim(), StringComparison.OrdinalIgnoreCase)).ToArray();
        if (loose.Length == 1) return loose[0];
        throw new UserException($"{option}: the table '{System.IO.Path.GetFileName(path)}' has no column '{name}'; its columns are: {string.Join(", ", header.Select(h => $"'{h}'"))}.");
    }
}

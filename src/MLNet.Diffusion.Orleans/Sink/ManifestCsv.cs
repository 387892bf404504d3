using System.Globalization;
using System.Text;
using MLNet.Diffusion.Batch;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// The CLI batch's <c>manifest.csv</c> format, written and read by the job's sink: the columns
/// <c>row,prompt,negative_prompt,seed,settings,file,seconds</c>; RFC 4180 quoting (a field with a comma, quote or line
/// break, or with white space at either end, is quoted, quotes doubled); text cells that a spreadsheet would run as a
/// formula (starting with <c>=</c>, <c>+</c>, <c>-</c>, <c>@</c>, tab or carriage return, after any quotes) get a leading
/// apostrophe. <c>mlnet-diffusion batch</c> resumes a folder a cluster filled, and the other way round.
/// </summary>
internal static class ManifestCsv
{
    /// <summary>The manifest's file name (<see cref="BatchManifestFormat.FileName"/>).</summary>
    public const string FileName = BatchManifestFormat.FileName;

    /// <summary>The header's columns.</summary>
    public static string[] Columns => BatchManifestFormat.Columns;

    /// <summary>The failures file's columns.</summary>
    public static readonly string[] FailureColumns = ["row", "prompt", "seed", "error"];

    /// <summary>A manifest line (with its line feed).</summary>
    public static string Line(GenerationRow row, string settings, string file, double seconds) => Record(
        row.Row.ToString(CultureInfo.InvariantCulture), Guard(row.Prompt), Guard(row.NegativePrompt), row.Seed.ToString(CultureInfo.InvariantCulture),
        Guard(settings), Guard(file), seconds.ToString("F3", CultureInfo.InvariantCulture));

    /// <summary>A failures line (with its line feed).</summary>
    public static string FailureLine(GenerationRow row, string error) => Record(
        row.Row.ToString(CultureInfo.InvariantCulture), Guard(row.Prompt), row.Seed.ToString(CultureInfo.InvariantCulture), Guard(error));

    /// <summary>One CSV line (<see cref="CsvWriter.FormatRecord"/>).</summary>
    public static string Record(params string[] fields) => CsvWriter.FormatRecord(fields);

    /// <summary>
    /// The records of a CSV text (RFC 4180), with whether each ended with a line break: a last record cut off mid-write is
    /// returned unterminated, so the caller can drop it.
    /// </summary>
    public static IEnumerable<(string[] Fields, bool Terminated)> Read(TextReader reader)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        bool quoted = false, any = false;
        int c;
        while ((c = reader.Read()) >= 0)
        {
            any = true;
            if (quoted)
            {
                if (c == '"')
                {
                    if (reader.Peek() == '"') { reader.Read(); field.Append('"'); }
                    else quoted = false;
                }
                else field.Append((char)c);
            }
            else if (c == '"') quoted = true;
            else if (c == ',') { fields.Add(field.ToString()); field.Clear(); }
            else if (c == '\r' && reader.Peek() == '\n') { }
            else if (c == '\n')
            {
                fields.Add(field.ToString());
                field.Clear();
                yield return ([.. fields], true);
                fields.Clear();
                any = false;
            }
            else field.Append((char)c);
        }
        if (any)
        {
            fields.Add(field.ToString());
            yield return ([.. fields], false);
        }
    }

    /// <summary>The cell as written, with the formula guard's apostrophe removed (<see cref="FormulaGuard.Restore"/>).</summary>
    public static string Unguard(string cell) => FormulaGuard.Restore(cell);

    private static string Guard(string cell) => FormulaGuard.Neutralise(cell);
}

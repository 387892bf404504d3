using System.Text;

namespace MLNet.Diffusion.Cli.Csv;

/// <summary>One record of a delimited text file.</summary>
/// <param name="Fields">The field values, unquoted.</param>
/// <param name="Line">The 1-based line on which the record starts.</param>
/// <param name="Terminated">Whether a line break ended the record (false for a last record cut off at the end of the file).</param>
internal sealed record CsvRecord(string[] Fields, int Line, bool Terminated);

/// <summary>
/// A small RFC 4180 reader: fields separated by a separator character (comma or tab); a field in double quotes may hold
/// separators, line breaks and quotes (written twice, <c>""</c>); records end with CRLF, LF or CR. Blank lines are
/// skipped. Lenient where RFC 4180 is silent: text after a closing quote is kept, a quote inside an unquoted field is
/// literal. A UTF-8 byte-order mark is skipped.
/// </summary>
internal static class CsvReader
{
    /// <summary>Reads every record of <paramref name="reader"/>.</summary>
    /// <exception cref="InvalidDataException">A quoted field is not closed before the end of the file (only when <paramref name="allowTruncated"/> is false).</exception>
    public static IEnumerable<CsvRecord> Read(TextReader reader, char separator, bool allowTruncated = false, string source = "the table")
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        int line = 1, recordLine = 1;
        bool quoted = false, inQuotes = false, any = false;
        int c;
        if (reader.Peek() == '\uFEFF') reader.Read();
        while ((c = reader.Read()) >= 0)
        {
            if (inQuotes)
            {
                if (c == '"')
                {
                    if (reader.Peek() == '"')
                    {
                        reader.Read();
                        field.Append('"');
                    }
                    else
                    {
                        inQuotes = false;
                    }
                }
                else
                {
                    if (c == '\n' || (c == '\r' && reader.Peek() != '\n')) line++;
                    field.Append((char)c);
                }
                continue;
            }
            if (c == '"' && field.Length == 0 && !quoted)
            {
                quoted = inQuotes = any = true;
                continue;
            }
            if (c == separator)
            {
                fields.Add(field.ToString());
                field.Clear();
                quoted = false;
                any = true;
                continue;
            }
            if (c == '\r' || c == '\n')
            {
                if (c == '\r' && reader.Peek() == '\n') reader.Read();
                if (any || field.Length > 0)
                {
                    fields.Add(field.ToString());
                    yield return new CsvRecord([.. fields], recordLine, true);
                }
                fields.Clear();
                field.Clear();
                quoted = any = false;
                line++;
                recordLine = line;
                continue;
            }
            field.Append((char)c);
            any = true;
        }
        if (inQuotes && !allowTruncated)
            throw new InvalidDataException($"{source}: the quoted field that starts on line {recordLine} is never closed (a missing \" ?).");
        if (any || field.Length > 0)
        {
            fields.Add(field.ToString());
            yield return new CsvRecord([.. fields], recordLine, false);
        }
    }

    /// <summary>The separator for a file: tab for .tsv and .tab, comma otherwise.</summary>
    public static char SeparatorFor(string path) =>
        Path.GetExtension(path).ToLowerInvariant() is ".tsv" or ".tab" ? '\t' : ',';
}

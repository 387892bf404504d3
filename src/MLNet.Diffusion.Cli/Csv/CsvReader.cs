using System.Globalization;
using System.Text;

namespace MLNet.Diffusion.Cli.Csv;

/// <summary>One record of a delimited text file.</summary>
/// <param name="Fields">The field values, unquoted.</param>
/// <param name="Line">The 1-based line on which the record starts.</param>
/// <param name="Terminated">Whether a line break ended the record (false for a last record cut off at the end of the file).</param>
internal sealed record CsvRecord(string[] Fields, int Line, bool Terminated);

/// <summary>
/// A streaming RFC 4180 reader: fields separated by a separator character (comma or tab); a field in double quotes may
/// hold separators, line breaks and quotes (written twice, <c>""</c>); records end with CRLF, LF or CR. Blank lines are
/// skipped and a UTF-8 byte-order mark is skipped. A quote inside an unquoted field is literal (<c>a "b" c</c>), but
/// anything other than a separator or a line break after a closing quote (<c>"a blue "square</c>, <c>"a red" circle</c>)
/// is refused, naming the line and column: RFC 4180 has no meaning for it, and other readers disagree on it (ML.NET's
/// loader drops the cell). A field longer than <see cref="MaxFieldLength"/> is refused, so memory stays bounded
/// whatever the file holds. One record is in memory at a time.
/// </summary>
internal sealed class CsvReader
{
    /// <summary>The default cap on a field's length: 1 Mi characters (a prompt is 77 tokens; a cell this long is a mistake, such as a quote left open).</summary>
    public const int DefaultMaxFieldLength = 1 << 20;

    private readonly TextReader _reader;
    private readonly char _separator;
    private readonly string _source;
    private readonly List<string> _fields = [];
    private readonly StringBuilder _field = new();
    private int _line = 1;
    private bool _started;

    /// <summary>Reads records from <paramref name="reader"/>.</summary>
    /// <param name="reader">The text; the caller disposes it.</param>
    /// <param name="separator">The field separator (see <see cref="SeparatorFor"/>).</param>
    /// <param name="source">The file's name for messages.</param>
    public CsvReader(TextReader reader, char separator, string source)
    {
        _reader = reader;
        _separator = separator;
        _source = source;
    }

    /// <summary>Whether a last record cut off inside a quoted field is returned (unterminated) instead of refused.</summary>
    public bool AllowTruncated { get; init; }

    /// <summary>The longest field accepted, in characters.</summary>
    public int MaxFieldLength { get; init; } = DefaultMaxFieldLength;

    /// <summary>
    /// Whether a physical line that starts with <c>//</c> where a record would start is skipped as a comment (ML.NET's
    /// text-loader convention). Can be switched on after the header has been read.
    /// </summary>
    public bool SkipCommentLines { get; set; }

    /// <summary>The comment lines skipped so far.</summary>
    public int CommentLines { get; private set; }

    /// <summary>The line of the first comment line skipped, or 0.</summary>
    public int FirstCommentLine { get; private set; }

    /// <summary>Column names for messages (the header), so that errors say <c>column 2 ('prompt')</c>.</summary>
    public IReadOnlyList<string>? ColumnNames { get; set; }

    /// <summary>Reads every record of <paramref name="reader"/> (one at a time, as the sequence is enumerated).</summary>
    /// <exception cref="InvalidDataException">Bad quoting, a field over the length cap, or (unless <paramref name="allowTruncated"/>) a quoted field never closed.</exception>
    public static IEnumerable<CsvRecord> Read(TextReader reader, char separator, bool allowTruncated = false, string source = "the table")
    {
        var csv = new CsvReader(reader, separator, source) { AllowTruncated = allowTruncated };
        while (csv.Read() is { } record) yield return record;
    }

    /// <summary>The separator for a file: tab for .tsv and .tab, comma otherwise.</summary>
    public static char SeparatorFor(string path) =>
        Path.GetExtension(path).ToLowerInvariant() is ".tsv" or ".tab" ? '\t' : ',';

    /// <summary>The next record, or null at the end of the text.</summary>
    /// <exception cref="InvalidDataException">Bad quoting, a field over the length cap, or (unless <see cref="AllowTruncated"/>) a quoted field never closed.</exception>
    public CsvRecord? Read()
    {
        if (!_started)
        {
            _started = true;
            if (_reader.Peek() == '\uFEFF') _reader.Read();
        }
        _fields.Clear();
        _field.Clear();
        int recordLine = _line;
        bool quoted = false, inQuotes = false, any = false;
        int quoteLine = 0;
        int c;
        while ((c = _reader.Read()) >= 0)
        {
            if (inQuotes)
            {
                if (c == '"')
                {
                    if (_reader.Peek() == '"')
                    {
                        _reader.Read();
                        Append('"', recordLine);
                    }
                    else
                    {
                        inQuotes = false;
                        int next = _reader.Peek();
                        if (next >= 0 && next != _separator && next != '\r' && next != '\n') throw TextAfterClosingQuote((char)next);
                    }
                }
                else
                {
                    if (c == '\n' || (c == '\r' && _reader.Peek() != '\n')) _line++;
                    Append((char)c, quoteLine);
                }
                continue;
            }
            if (!any && _field.Length == 0 && c == '/' && SkipCommentLines && _reader.Peek() == '/')
            {
                SkipRestOfLine();
                recordLine = _line;
                continue;
            }
            if (c == '"' && _field.Length == 0 && !quoted)
            {
                quoted = inQuotes = any = true;
                quoteLine = _line;
                continue;
            }
            if (c == _separator)
            {
                _fields.Add(_field.ToString());
                _field.Clear();
                quoted = false;
                any = true;
                continue;
            }
            if (c == '\r' || c == '\n')
            {
                if (c == '\r' && _reader.Peek() == '\n') _reader.Read();
                _line++;
                if (any || _field.Length > 0)
                {
                    _fields.Add(_field.ToString());
                    return new CsvRecord([.. _fields], recordLine, true);
                }
                recordLine = _line; // a blank line
                continue;
            }
            Append((char)c, _line);
            any = true;
        }
        if (inQuotes && !AllowTruncated)
            throw new InvalidDataException($"{Where(quoteLine)}: the quoted field is never closed (a missing \" ?); the file ends inside it.");
        if (any || _field.Length > 0)
        {
            _fields.Add(_field.ToString());
            return new CsvRecord([.. _fields], recordLine, false);
        }
        return null;
    }

    /// <summary>"FILE, line N, column M ('name')" for the field being read.</summary>
    public string Where(int line, int? column = null)
    {
        int index = column ?? _fields.Count;
        var name = ColumnNames is { } names && index < names.Count ? $" ('{names[index]}')" : "";
        return string.Create(CultureInfo.InvariantCulture, $"{_source}, line {line}, column {index + 1}{name}");
    }

    private void Append(char c, int fieldLine)
    {
        if (_field.Length >= MaxFieldLength)
            throw new InvalidDataException($"{Where(fieldLine)}: the field is longer than {MaxFieldLength:N0} characters, the most a cell may hold (a quote left open makes the rest of the file one field; close it, or shorten the cell).");
        _field.Append(c);
    }

    private InvalidDataException TextAfterClosingQuote(char next)
    {
        var text = _field.ToString().Replace("\"", "\"\"", StringComparison.Ordinal); // as written in the file
        if (text.Length > 40) text = text[..40] + "…";
        var shown = next is '\t' ? "a tab" : $"'{next}'";
        return new InvalidDataException($"{Where(_line)}: the quoted field \"{text}\" is followed by {shown}, not by a separator or a line end. "
            + $"In CSV (RFC 4180) a quote inside a quoted field is written twice, with one quote closing the field at its end: \"{text}\"\"{next}…\".");
    }

    private void SkipRestOfLine()
    {
        int c;
        while ((c = _reader.Read()) >= 0 && c != '\r' && c != '\n')
        {
        }
        if (c == '\r' && _reader.Peek() == '\n') _reader.Read();
        if (CommentLines++ == 0) FirstCommentLine = _line;
        _line++;
    }
}

using System.Text;

namespace MLNet.Diffusion.Batch;

/// <summary>Formats RFC 4180 records: a field is quoted when it holds the separator, a quote, a line break or edge spaces.</summary>
internal static class CsvWriter
{
    /// <summary>One record, ending with a line feed.</summary>
    public static string FormatRecord(IEnumerable<string> fields, char separator = ',')
    {
        var s = new StringBuilder();
        bool first = true;
        foreach (var field in fields)
        {
            if (!first) s.Append(separator);
            first = false;
            AppendField(s, field, separator);
        }
        return s.Append('\n').ToString();
    }

    private static void AppendField(StringBuilder s, string field, char separator)
    {
        bool quote = field.Length > 0 && (field.Contains(separator) || field.Contains('"') || field.Contains('\n') || field.Contains('\r')
            || char.IsWhiteSpace(field[0]) || char.IsWhiteSpace(field[^1]));
        if (!quote)
        {
            s.Append(field);
            return;
        }
        s.Append('"').Append(field.Replace("\"", "\"\"", StringComparison.Ordinal)).Append('"');
    }
}

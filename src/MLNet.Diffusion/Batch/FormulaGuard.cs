namespace MLNet.Diffusion.Batch;

/// <summary>
/// Keeps spreadsheet programs from running text cells of a CSV file as formulas (CSV injection). A cell that starts with
/// one of the characters OWASP's CSV Injection page lists — <c>=</c>, <c>+</c>, <c>-</c>, <c>@</c>, tab, carriage return —
/// is written with a single quote in front, as that page advises, so a spreadsheet shows it as text. The mapping is
/// reversible: a cell that already starts with quotes followed by one of those characters gets one quote more, and
/// <see cref="Restore"/> removes exactly one quote from any cell of that shape, so every cell reads back unchanged.
/// </summary>
internal static class FormulaGuard
{
    /// <summary>The cell as written: with a quote in front when it starts (after any quotes) with a formula character.</summary>
    public static string Neutralise(string cell) => NeedsQuote(cell) ? "'" + cell : cell;

    /// <summary>The cell as it was before <see cref="Neutralise"/>.</summary>
    public static string Restore(string cell) => cell.StartsWith('\'') && NeedsQuote(cell) ? cell[1..] : cell;

    /// <summary>Whether the cell is quotes (any number) followed by a formula character.</summary>
    private static bool NeedsQuote(string cell)
    {
        int i = 0;
        while (i < cell.Length && cell[i] == '\'') i++;
        return i < cell.Length && cell[i] is '=' or '+' or '-' or '@' or '\t' or '\r';
    }
}

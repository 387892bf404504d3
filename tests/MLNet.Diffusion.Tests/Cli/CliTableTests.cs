using System.Text;
using CsCheck;
using MLNet.Diffusion.Cli;
using MLNet.Diffusion.Batch;
using MLNet.Diffusion.Cli.Csv;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Cli;

/// <summary>
/// How <c>batch</c> reads its table: RFC 4180, and a table that is not (bad quoting, a cell too long, a row with too many
/// cells or none for the prompt) is refused naming the file, line and column before anything is written — never an
/// empty or cut prompt by accident (issue 12, item 4).
/// </summary>
public class CliTableTests
{
    [Theory]
    [InlineData("prompt,seed\n\"a red circle\",1\n\"a blue \"square,2\n", "line 3, column 1 ('prompt')", "\"a blue \" is followed by 's'", "\"a blue \"\"s…\"")]
    [InlineData("prompt,seed\n\"a red\" circle,1\n", "line 2, column 1 ('prompt')", "\"a red\" is followed by ' '", "\"a red\"\" …\"")]
    [InlineData("id,prompt\n1,\"two\nlines\"x\n", "line 3, column 2 ('prompt')", "\"two\nlines\" is followed by 'x'", "\"two\nlines\"\"x…\"")]
    [InlineData("id\tprompt\n1\t\"tab\"\t\n2\t\"a \"\"quoted\"\" word\" \n", "line 3, column 2 ('prompt')", "\"a \"\"quoted\"\" word\" is followed by ' '", "\"a \"\"quoted\"\" word\"\" …\"")]
    public void BadQuotingIsRefusedNamingTheLineAndColumnBeforeAnythingIsWritten(string text, string where, string what, string fix)
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = dir[text.Contains('\t') ? "prompts.tsv" : "prompts.csv"];
        File.WriteAllText(table, text);
        var result = CliRun.Run("batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2");
        Assert.True(result.ExitCode == 2, result.ToString());
        var line = Assert.Single(result.ErrLines);
        Assert.StartsWith($"error: {table}, {where}: ", line);
        Assert.Contains(CliEnvironment.OneLine(what), line);
        Assert.Contains("a quote inside a quoted field is written twice", line);
        Assert.Contains(CliEnvironment.OneLine(fix), line);
        Assert.False(Directory.Exists(dir["out"]), "nothing is written for a table that is refused");
    }

    [Fact]
    public void ARowWithMoreCellsThanTheHeaderIsRefusedNotCut()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = dir["prompts.csv"];
        File.WriteAllText(table, "prompt,notes\na red circle,x\na blue, square,y\n");
        var result = CliRun.Run("batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2");
        Assert.True(result.ExitCode == 2, result.ToString());
        var line = Assert.Single(result.ErrLines);
        Assert.StartsWith($"error: {table}, line 3, column 3: the record has 3 cells but the header names 2 columns", line);
        Assert.False(Directory.Exists(dir["out"]));
    }

    [Fact]
    public void ARowWithNoCellForThePromptIsRefusedNotAnEmptyPrompt()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = dir["prompts.csv"];
        File.WriteAllText(table, "id,prompt\n1,a red circle\n2\n");
        var result = CliRun.Run("batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2");
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.StartsWith($"error: {table}, line 3, column 2 ('prompt'): the record has 1 cell(s) and none for the prompt column", Assert.Single(result.ErrLines));
    }

    /// <summary>A cell over the cap (here 2 Mi characters in a column batch does not even use) is refused with its line and column, so memory stays bounded.</summary>
    [Fact]
    public void ACellOverTheCapIsRefusedNamingItsLineAndColumn()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = dir["prompts.csv"];
        File.WriteAllText(table, "id,prompt,notes\n1,a red circle,short\n2,a blue square,\"" + new string('x', 2 << 20) + "\"\n");
        var result = CliRun.Run("batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2");
        Assert.True(result.ExitCode == 2, result.ToString());
        var line = Assert.Single(result.ErrLines);
        Assert.StartsWith($"error: {table}, line 3, column 3 ('notes'): the field is longer than {CsvReader.DefaultMaxFieldLength:N0} characters", line);
        Assert.False(Directory.Exists(dir["out"]));
    }

    [Fact]
    public void AQuoteLeftOpenIsRefusedNamingWhereItOpens()
    {
        using var dir = new TempDir();
        var table = dir["prompts.csv"];
        File.WriteAllText(table, "id,prompt\n1,a red circle\n2,\"a blue square\n3,a green triangle\n");
        var result = CliRun.Run("batch", table, "--model", dir.Path, "--out", dir["out"]);
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.StartsWith($"error: {table}, line 3, column 2 ('prompt'): the quoted field is never closed", Assert.Single(result.ErrLines));
    }

    /// <summary>A quoted <c>//</c> cell is a prompt; an unquoted line starting with <c>//</c> is a comment, with a warning (the row numbering of earlier versions).</summary>
    [Fact]
    public void AQuotedDoubleSlashCellIsAPrompt()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = dir["prompts.csv"];
        File.WriteAllText(table, "prompt\n\"// a red circle\"\n// a comment\na blue square\n");
        var result = CliRun.Run("batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("(the first is line 3)", Assert.Single(result.ErrLines));
        Assert.Contains("2 rows, 0 already done", result.Out);
        Assert.Single(Directory.GetFiles(dir["out"], "00000-a-red-circle.png"));
        Assert.Single(Directory.GetFiles(dir["out"], "00001-a-blue-square.png"));
    }

    /// <summary>The strict reader takes back whatever the writer writes: separators, quotes, line breaks, edge spaces.</summary>
    [Fact]
    public void EveryRecordTheWriterWritesReadsBackUnchanged()
    {
        var field = Gen.OneOf(Gen.String[Gen.Char["a,\"\t\r\n =+-@' é"], 0, 12], Gen.String.Where(s => !s.StartsWith('\uFEFF')));
        var record = field.Array[2, 6];
        Gen.Select(record.Array[1, 8], Gen.OneOf(Gen.Const(','), Gen.Const('\t'))).Sample((records, separator) =>
        {
            var text = new StringBuilder();
            foreach (var r in records) text.Append(CsvWriter.FormatRecord(r, separator));
            var back = CsvReader.Read(new StringReader(text.ToString()), separator).Select(r => r.Fields).ToArray();
            Assert.Equal(records.Length, back.Length);
            for (int i = 0; i < records.Length; i++) Assert.Equal(records[i], back[i]);
        }, iter: 2000);
    }

    /// <summary>The formula guard reads back what it writes, and what it writes never starts with a formula character.</summary>
    [Fact]
    public void TheFormulaGuardRoundTripsAndNeverLeavesAFormula()
    {
        Gen.OneOf(Gen.String[Gen.Char["'=+-@\t\ra1"], 0, 6], Gen.String).Sample(cell =>
        {
            var written = FormulaGuard.Neutralise(cell);
            Assert.Equal(cell, FormulaGuard.Restore(written));
            Assert.False(written.Length > 0 && written[0] is '=' or '+' or '-' or '@' or '\t' or '\r', written);
        }, iter: 5000);
    }
}

using System.Collections;
using System.Globalization;
using System.Text;
using MLNet.Diffusion.Batch;
using MLNet.Diffusion.Cli.Csv;

namespace MLNet.Diffusion.Cli.Output;

/// <summary>One line of the manifest: a finished row.</summary>
internal sealed record ManifestEntry(int Row, string Prompt, string NegativePrompt, long Seed, string Settings, string File, double Seconds)
{
    /// <summary>
    /// The line's fields, as <see cref="Manifest.Columns"/> orders them. Text cells go through <see cref="FormulaGuard"/>
    /// (a prompt such as <c>=HYPERLINK(…)</c> is written <c>'=HYPERLINK(…)</c>); numbers are written as numbers.
    /// </summary>
    public string[] Fields => [Row.ToString(CultureInfo.InvariantCulture), FormulaGuard.Neutralise(Prompt), FormulaGuard.Neutralise(NegativePrompt),
        Seed.ToString(CultureInfo.InvariantCulture), FormulaGuard.Neutralise(Settings), FormulaGuard.Neutralise(File), Seconds.ToString("F3", CultureInfo.InvariantCulture)];

    /// <summary>The entry a record holds, or null when it is not a whole, well-formed line (its file is not checked).</summary>
    public static ManifestEntry? Parse(CsvRecord record)
    {
        var f = record.Fields;
        if (!record.Terminated || f.Length != Manifest.Columns.Length) return null;
        if (!int.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out int row)) return null;
        if (!long.TryParse(f[3], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long seed)) return null;
        if (!double.TryParse(f[6], NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds)) return null;
        return new ManifestEntry(row, FormulaGuard.Restore(f[1]), FormulaGuard.Restore(f[2]), seed, FormulaGuard.Restore(f[4]), FormulaGuard.Restore(f[5]), seconds);
    }
}

/// <summary>
/// <c>manifest.csv</c> beside a batch's images: the record of finished rows. A line is appended and flushed to disk
/// right after its image file is in place, so a row counts as done exactly when its line is in the manifest and its
/// file exists. Opening an existing manifest drops what an interruption or a user can leave behind — a last line cut
/// off mid-write, lines whose image file is gone, a second line for the same row — by rewriting the file atomically
/// (temporary file + rename) when anything was dropped. The file is streamed, never held: in memory are a bit per table
/// row (done or not) and a 4-byte fingerprint per finished row (to notice rows made from other prompts or settings).
/// </summary>
internal sealed class Manifest : IDisposable
{
    /// <summary>The manifest's file name (<see cref="BatchManifestFormat.FileName"/>).</summary>
    public const string FileName = BatchManifestFormat.FileName;

    /// <summary>The header line's columns (<see cref="BatchManifestFormat.Columns"/>).</summary>
    public static string[] Columns => BatchManifestFormat.Columns;

    private readonly FileStream _stream;
    private readonly State _state;

    private Manifest(string path, FileStream stream, State state, int dropped, int removedTemporaryFiles)
    {
        Path = path;
        _stream = stream;
        _state = state;
        Dropped = dropped;
        RemovedTemporaryFiles = removedTemporaryFiles;
    }

    /// <summary>The manifest file.</summary>
    public string Path { get; }

    /// <summary>How many of the table's rows are done.</summary>
    public int DoneCount => _state.DoneCount;

    /// <summary>Lines dropped when opening (cut off, file missing, duplicate or malformed).</summary>
    public int Dropped { get; }

    /// <summary>Temporary manifests of an interrupted rewrite, deleted when opening.</summary>
    public int RemovedTemporaryFiles { get; }

    /// <summary>A copy of the done rows, indexed by table row.</summary>
    public BitArray DoneRows() => new(_state.Done);

    /// <summary>Whether table row <paramref name="row"/> is done.</summary>
    public bool IsDone(int row) => row >= 0 && row < _state.Done.Length && _state.Done[row];

    /// <summary>
    /// Whether done row <paramref name="row"/> was made from this prompt, seed and settings (compared by a 32-bit
    /// fingerprint: a changed row goes unnoticed with probability 2⁻³²).
    /// </summary>
    public bool Matches(int row, string prompt, long seed, string settings) =>
        IsDone(row) && _state.Fingerprints![row] == Fingerprint(prompt, seed, settings);

    /// <summary>
    /// Opens (or creates) the manifest in the locked folder for a table of <paramref name="tableRows"/> rows: deletes
    /// temporary manifests left by an interrupted rewrite, then reads it and drops what an interruption left (see the
    /// class summary). Only the lock's holder may do this. Lines for rows beyond the table are kept but not tracked.
    /// </summary>
    /// <exception cref="UserException">A file named manifest.csv is there but was not written by this tool, or it holds a badly quoted line.</exception>
    /// <exception cref="OutputException">The manifest cannot be read or written.</exception>
    public static Manifest Open(OutputFolderLock folder, int tableRows)
    {
        var directory = folder.Directory;
        var path = System.IO.Path.Combine(directory, FileName);
        try
        {
            int removed = RemoveStrayTemporaryFiles(directory);
            State state;
            int dropped = 0;
            if (File.Exists(path))
            {
                state = Scan(path, directory, tableRows, keep: null, out dropped);
                if (dropped > 0) state = Rewrite(path, directory, tableRows); // reads it again, writing the lines it keeps
            }
            else
            {
                state = new State(tableRows);
                WriteAtomically(path, writer => { });
            }
            var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
            return new Manifest(path, stream, state, dropped, removed);
        }
        catch (Exception e) when (OutputException.IsFileSystemFailure(e))
        {
            throw OutputException.Writing(path, e);
        }
    }

    /// <summary>Appends a finished row and flushes it to disk.</summary>
    /// <exception cref="OutputException">The line could not be written.</exception>
    public void Append(ManifestEntry entry)
    {
        var bytes = Encoding.UTF8.GetBytes(CsvWriter.FormatRecord(entry.Fields));
        try
        {
            _stream.Write(bytes);
            _stream.Flush(flushToDisk: true);
        }
        catch (Exception e) when (OutputException.IsFileSystemFailure(e))
        {
            throw OutputException.Writing(Path, e);
        }
        _state.Add(entry);
    }

    /// <summary>Closes the manifest.</summary>
    public void Dispose() => _stream.Dispose();

    /// <summary>Reads the manifest once: the rows done, and how many lines would be dropped; <paramref name="keep"/> gets each kept entry.</summary>
    private static State Scan(string path, string directory, int tableRows, Action<ManifestEntry>? keep, out int dropped)
    {
        var state = new State(tableRows);
        dropped = 0;
        using var reader = new StreamReader(path, Encoding.UTF8);
        var csv = new CsvReader(reader, ',', path) { AllowTruncated = true };
        try
        {
            var header = csv.Read();
            if (header is null)
            {
                dropped = 1; // an empty file: the header is written again
                return state;
            }
            if (!(header.Terminated && header.Fields.AsSpan().SequenceEqual(Columns)))
                throw new UserException($"'{path}' is not a manifest written by mlnet-diffusion (its first line should be {string.Join(",", Columns)}); choose another --out folder.");
            csv.ColumnNames = Columns;
            while (csv.Read() is { } record)
            {
                var entry = ManifestEntry.Parse(record);
                if (entry is null || !FileExists(directory, entry.File) || (entry.Row < tableRows && state.Done[entry.Row]))
                {
                    dropped++;
                    continue;
                }
                state.Add(entry);
                keep?.Invoke(entry);
            }
            return state;
        }
        catch (InvalidDataException e)
        {
            throw new UserException($"{e.Message} Fix or delete that line of the manifest (its row is then made again).");
        }
    }

    /// <summary>Whether <paramref name="file"/> is a plain file name (<see cref="FileNames.IsPlain"/>: never a path that leads elsewhere) that exists in the folder.</summary>
    private static bool FileExists(string directory, string file) =>
        FileNames.IsPlain(file) && File.Exists(System.IO.Path.Combine(directory, file));

    /// <summary>Writes the header and the lines <see cref="Scan"/> keeps to a temporary file, then renames it over the manifest.</summary>
    private static State Rewrite(string path, string directory, int tableRows)
    {
        State state = null!;
        WriteAtomically(path, writer => state = Scan(path, directory, tableRows, entry => writer.Write(CsvWriter.FormatRecord(entry.Fields)), out _));
        return state;
    }

    private static void WriteAtomically(string path, Action<TextWriter> writeLines)
    {
        var temporary = path + $".{Guid.NewGuid():N}.tmp";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                using (var writer = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true))
                {
                    writer.Write(CsvWriter.FormatRecord(Columns));
                    writeLines(writer);
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    private static int RemoveStrayTemporaryFiles(string directory)
    {
        int removed = 0;
        foreach (var file in Directory.EnumerateFiles(directory, FileName + ".*.tmp"))
        {
            File.Delete(file);
            removed++;
        }
        return removed;
    }

    /// <summary>Within one process, equal for equal prompt, seed and settings (string hashes are randomized per process, never stored).</summary>
    private static int Fingerprint(string prompt, long seed, string settings) => HashCode.Combine(prompt, seed, settings);

    /// <summary>The rows of the table that are done, with their fingerprints.</summary>
    private sealed class State(int tableRows)
    {
        public BitArray Done { get; } = new(tableRows);

        public int[]? Fingerprints { get; private set; }

        public int DoneCount { get; private set; }

        public void Add(ManifestEntry entry)
        {
            if (entry.Row >= Done.Length || Done[entry.Row]) return;
            Done[entry.Row] = true;
            (Fingerprints ??= new int[Done.Length])[entry.Row] = Fingerprint(entry.Prompt, entry.Seed, entry.Settings);
            DoneCount++;
        }
    }
}

using System.Globalization;
using System.Text;
using MLNet.Diffusion.Cli.Csv;

namespace MLNet.Diffusion.Cli.Output;

/// <summary>One line of the manifest: a finished row.</summary>
internal sealed record ManifestEntry(int Row, string Prompt, string NegativePrompt, long Seed, string Settings, string File, double Seconds)
{
    public string[] Fields => [Row.ToString(CultureInfo.InvariantCulture), Prompt, NegativePrompt, Seed.ToString(CultureInfo.InvariantCulture),
        Settings, File, Seconds.ToString("F3", CultureInfo.InvariantCulture)];
}

/// <summary>
/// <c>manifest.csv</c> beside a batch's images: the record of finished rows. A line is appended and flushed to disk
/// right after its image file is in place, so a row counts as done exactly when its line is in the manifest and its
/// file exists. Opening an existing manifest drops what an interruption or a user can leave behind — a last line cut
/// off mid-write, lines whose image file is gone, a second line for the same row — by rewriting the file atomically
/// (temporary file + rename) when anything was dropped.
/// </summary>
internal sealed class Manifest : IDisposable
{
    /// <summary>The manifest's file name.</summary>
    public const string FileName = "manifest.csv";

    /// <summary>The header line's columns.</summary>
    public static readonly string[] Columns = ["row", "prompt", "negative_prompt", "seed", "settings", "file", "seconds"];

    private readonly FileStream _stream;
    private readonly Dictionary<int, ManifestEntry> _done;

    private Manifest(string path, FileStream stream, Dictionary<int, ManifestEntry> done, int dropped, int removedTemporaryFiles)
    {
        Path = path;
        _stream = stream;
        _done = done;
        Dropped = dropped;
        RemovedTemporaryFiles = removedTemporaryFiles;
    }

    /// <summary>The manifest file.</summary>
    public string Path { get; }

    /// <summary>Finished rows by row number.</summary>
    public IReadOnlyDictionary<int, ManifestEntry> Done => _done;

    /// <summary>Lines dropped when opening (cut off, file missing, duplicate or malformed).</summary>
    public int Dropped { get; }

    /// <summary>Temporary manifests of an interrupted rewrite, deleted when opening.</summary>
    public int RemovedTemporaryFiles { get; }

    /// <summary>
    /// Opens (or creates) the manifest in the locked folder: deletes temporary manifests left by an interrupted rewrite,
    /// then reads it and drops what an interruption left (see the class summary). Only the lock's holder may do this.
    /// </summary>
    /// <exception cref="UserException">A file named manifest.csv is there but was not written by this tool.</exception>
    /// <exception cref="OutputException">The manifest cannot be read or written.</exception>
    public static Manifest Open(OutputFolderLock folder)
    {
        var directory = folder.Directory;
        var path = System.IO.Path.Combine(directory, FileName);
        try
        {
            int removed = RemoveStrayTemporaryFiles(directory);
            var done = new Dictionary<int, ManifestEntry>();
            int dropped = 0;
            if (File.Exists(path))
            {
                List<CsvRecord> records;
                using (var reader = new StreamReader(path, Encoding.UTF8))
                    records = CsvReader.Read(reader, ',', allowTruncated: true, source: path).ToList();
                if (records.Count > 0 && !(records[0].Terminated && records[0].Fields.SequenceEqual(Columns)))
                    throw new UserException($"'{path}' is not a manifest written by mlnet-diffusion (its first line should be {string.Join(",", Columns)}); choose another --out folder.");
                if (records.Count == 0) dropped++; // an empty file: write the header
                foreach (var record in records.Skip(1))
                {
                    if (TryParse(record, directory, out var entry) && !done.ContainsKey(entry.Row)) done.Add(entry.Row, entry);
                    else dropped++;
                }
            }
            if (dropped > 0 || !File.Exists(path)) Rewrite(path, done.Values.OrderBy(e => e.Row));
            var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
            return new Manifest(path, stream, done, dropped, removed);
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
        _done[entry.Row] = entry;
    }

    private static bool TryParse(CsvRecord record, string directory, out ManifestEntry entry)
    {
        entry = null!;
        var f = record.Fields;
        if (!record.Terminated || f.Length != Columns.Length) return false;
        if (!int.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out int row)) return false;
        if (!long.TryParse(f[3], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long seed)) return false;
        if (!double.TryParse(f[6], NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds)) return false;
        var file = f[5];
        // Only plain file names in the folder count (never a path that leads elsewhere).
        if (file.Length == 0 || file != System.IO.Path.GetFileName(file) || file is "." or ".." || !File.Exists(System.IO.Path.Combine(directory, file))) return false;
        entry = new ManifestEntry(row, f[1], f[2], seed, f[4], file, seconds);
        return true;
    }

    private static void Rewrite(string path, IEnumerable<ManifestEntry> entries)
    {
        var text = new StringBuilder(CsvWriter.FormatRecord(Columns));
        foreach (var entry in entries) text.Append(CsvWriter.FormatRecord(entry.Fields));
        var temporary = path + $".{Guid.NewGuid():N}.tmp";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                stream.Write(new UTF8Encoding(false).GetBytes(text.ToString()));
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

    /// <summary>Closes the manifest.</summary>
    public void Dispose() => _stream.Dispose();
}

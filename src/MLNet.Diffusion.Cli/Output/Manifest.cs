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

    /// <summary>The lock file that keeps a second run out of the same folder while one is writing.</summary>
    public const string LockFileName = FileName + ".lock";

    private readonly FileStream _lock;
    private readonly FileStream _stream;
    private readonly Dictionary<int, ManifestEntry> _done;

    private Manifest(string path, FileStream fileLock, FileStream stream, Dictionary<int, ManifestEntry> done, int dropped)
    {
        Path = path;
        _lock = fileLock;
        _stream = stream;
        _done = done;
        Dropped = dropped;
    }

    /// <summary>The manifest file.</summary>
    public string Path { get; }

    /// <summary>Finished rows by row number.</summary>
    public IReadOnlyDictionary<int, ManifestEntry> Done => _done;

    /// <summary>Lines dropped when opening (cut off, file missing, duplicate or malformed).</summary>
    public int Dropped { get; }

    /// <summary>Opens (or creates) the manifest in <paramref name="directory"/>, holding its lock until disposed.</summary>
    /// <exception cref="UserException">Another run is writing to the folder, or a file named manifest.csv is there but was not written by this tool.</exception>
    public static Manifest Open(string directory)
    {
        Directory.CreateDirectory(directory);
        var path = System.IO.Path.Combine(directory, FileName);
        FileStream fileLock;
        try
        {
            // Exclusive (an OS lock, released if the process dies); the file is deleted when the run ends.
            fileLock = new FileStream(System.IO.Path.Combine(directory, LockFileName), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (IOException)
        {
            throw new UserException($"Another batch run is writing to '{directory}' (it holds {LockFileName}); wait for it to end or choose another --out folder.");
        }
        try
        {
            return Open(directory, path, fileLock);
        }
        catch
        {
            fileLock.Dispose();
            throw;
        }
    }

    private static Manifest Open(string directory, string path, FileStream fileLock)
    {
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
        return new Manifest(path, fileLock, stream, done, dropped);
    }

    /// <summary>Appends a finished row and flushes it to disk.</summary>
    public void Append(ManifestEntry entry)
    {
        var bytes = Encoding.UTF8.GetBytes(CsvWriter.FormatRecord(entry.Fields));
        _stream.Write(bytes);
        _stream.Flush(flushToDisk: true);
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

    /// <summary>Deletes temporary manifests left by an interrupted rewrite.</summary>
    public static int RemoveStrayTemporaryFiles(string directory)
    {
        if (!Directory.Exists(directory)) return 0;
        int removed = 0;
        foreach (var file in Directory.EnumerateFiles(directory, FileName + ".*.tmp"))
        {
            File.Delete(file);
            removed++;
        }
        return removed;
    }

    public void Dispose()
    {
        _stream.Dispose();
        _lock.Dispose();
    }
}

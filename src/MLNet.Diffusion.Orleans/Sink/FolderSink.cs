using System.Collections;
using System.Globalization;
using System.Text;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// A job's output folder on shared storage, written as the CLI's batch writes it: each image goes to a temporary file in
/// the folder, is flushed to disk and renamed over <c>NNNNN.png</c>; then its manifest line is appended and flushed. A row
/// is committed exactly when its line is in the manifest and its file exists, and it is committed once: a second result for
/// a committed row (an item made twice after a re-issue) is dropped by <see cref="Commit"/>, which decides at once. The
/// writing itself runs on a background writer, off the job grain's turn, as group commits: it takes every image queued,
/// writes them in parallel (each flushed and renamed), then appends their lines with one flush. A crash loses at most the
/// queued rows, which a restarted job makes again. Failed rows get a line in <c>failures.csv</c>. Opening reads the
/// manifest back (dropping a cut-off last line and lines whose file is gone), so a job started again over the same folder
/// goes on where it stopped. One job grain writes a folder at a time.
/// </summary>
internal sealed class FolderSink : IJobSink
{
    /// <summary>The failures file's name.</summary>
    public const string FailuresFileName = "failures.csv";

    private const string TemporarySuffix = ".partial.png";

    private readonly string _directory;
    private readonly FileStream _manifest;
    private readonly FileStream _failures;
    private readonly BitArray _committed;
    private readonly BitArray _failed;
    private readonly int _digits;
    private readonly System.Threading.Channels.Channel<Pending> _queue =
        System.Threading.Channels.Channel.CreateUnbounded<Pending>(new() { SingleReader = true, SingleWriter = true });
    private readonly Task _writer;
    private int _written, _queued;
    private long _queuedBytes;
    private volatile string? _error;

    private sealed record Pending(GenerationRow Row, byte[] Png, string Settings, double Seconds);

    private FolderSink(string directory, FileStream manifest, FileStream failures, BitArray committed, int digits)
    {
        _directory = directory;
        _manifest = manifest;
        _failures = failures;
        _committed = committed;
        _failed = new BitArray(committed.Length);
        _digits = digits;
        foreach (bool done in committed) if (done) _written++;
        _writer = Task.Run(WriteLoop);
    }

    /// <summary>Rows whose image and manifest line are on disk (including those found when opening).</summary>
    public int CommittedCount => Volatile.Read(ref _written);

    /// <summary>Rows accepted by <see cref="Commit"/> and not yet on disk.</summary>
    public int PendingWrites => Volatile.Read(ref _queued);

    /// <summary>Image bytes accepted by <see cref="Commit"/> and not yet on disk (held in memory until then).</summary>
    public long PendingBytes => Interlocked.Read(ref _queuedBytes);

    /// <summary>Why the writer stopped (a full disk, a folder removed), naming the file; null while it works.</summary>
    public string? Error => _error;

    /// <summary>Rows recorded as failed since opening.</summary>
    public int FailedCount { get; private set; }

    /// <summary>Whether table row <paramref name="row"/> is committed.</summary>
    public bool IsCommitted(int row) => _committed[row];

    /// <summary>Whether table row <paramref name="row"/> is committed or failed.</summary>
    public bool IsSettled(int row) => _committed[row] || _failed[row];

    /// <summary>Opens (or creates) the folder for a table whose row indices are below <paramref name="tableRows"/>.</summary>
    /// <exception cref="IOException">The folder or its manifest cannot be read or written (the message names the file).</exception>
    /// <exception cref="InvalidDataException">A manifest.csv is there that this format did not write.</exception>
    public static FolderSink Open(string directory, int tableRows)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        directory = Path.GetFullPath(directory);
        Directory.CreateDirectory(directory);
        foreach (var stray in Directory.EnumerateFiles(directory, "*" + TemporarySuffix)) File.Delete(stray);
        var committed = new BitArray(tableRows);
        var manifestPath = Path.Combine(directory, ManifestCsv.FileName);
        if (File.Exists(manifestPath)) ReadBack(manifestPath, directory, committed);
        else WriteAtomically(manifestPath, ManifestCsv.Record(ManifestCsv.Columns));
        var failuresPath = Path.Combine(directory, FailuresFileName);
        if (!File.Exists(failuresPath)) WriteAtomically(failuresPath, ManifestCsv.Record(ManifestCsv.FailureColumns));
        var manifest = new FileStream(manifestPath, FileMode.Append, FileAccess.Write, FileShare.Read);
        var failures = new FileStream(failuresPath, FileMode.Append, FileAccess.Write, FileShare.Read);
        return new FolderSink(directory, manifest, failures, committed, Math.Max(5, tableRows.ToString(CultureInfo.InvariantCulture).Length));
    }

    /// <summary>
    /// Takes <paramref name="row"/>'s image for writing unless the row is already taken or failed; returns whether it took
    /// it. The writer puts it on disk (see the class summary): <see cref="CommittedCount"/> counts it then.
    /// </summary>
    public bool Commit(GenerationRow row, byte[] png, string settings, double seconds)
    {
        if (_committed[row.Row] || _failed[row.Row]) return false;
        _committed[row.Row] = true;
        Interlocked.Increment(ref _queued);
        Interlocked.Add(ref _queuedBytes, png.Length);
        _queue.Writer.TryWrite(new Pending(row, png, settings, seconds));
        return true;
    }

    /// <summary>Waits until every image taken so far is on disk (or the writer failed: see <see cref="Error"/>).</summary>
    public async Task DrainAsync()
    {
        while (PendingWrites > 0 && _error is null) await Task.Delay(5);
    }

    private async Task WriteLoop()
    {
        var batch = new List<Pending>();
        while (await _queue.Reader.WaitToReadAsync())
        {
            while (batch.Count < 1024 && _queue.Reader.TryRead(out var next)) batch.Add(next);
            if (_error is null)
            {
                try
                {
                    var files = new string[batch.Count];
                    Parallel.For(0, batch.Count, i => files[i] = WriteImage(batch[i].Row, batch[i].Png));
                    var lines = new StringBuilder();
                    for (int i = 0; i < batch.Count; i++) lines.Append(ManifestCsv.Line(batch[i].Row, batch[i].Settings, files[i], batch[i].Seconds));
                    Append(_manifest, lines.ToString());
                    Interlocked.Add(ref _written, batch.Count);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or AggregateException)
                {
                    var inner = e is AggregateException a ? a.InnerExceptions[0] : e;
                    _error = $"Cannot write the output folder '{_directory}': {inner.Message} Free space or fix the folder, then start the job again (committed rows are kept).";
                }
            }
            long bytes = 0;
            foreach (var pending in batch) bytes += pending.Png.Length;
            Interlocked.Add(ref _queuedBytes, -bytes);
            Interlocked.Add(ref _queued, -batch.Count);
            batch.Clear();
        }
    }

    /// <summary>Writes one image atomically (temporary file, flushed, renamed); returns its file name.</summary>
    private string WriteImage(GenerationRow row, byte[] png)
    {
        var file = row.Row.ToString("D" + _digits, CultureInfo.InvariantCulture) + ".png";
        var target = Path.Combine(_directory, file);
        var temporary = Path.Combine(_directory, $".{file}.{Guid.NewGuid():N}{TemporarySuffix}");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                stream.Write(png);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, target, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
        return file;
    }

    /// <summary>Records <paramref name="row"/> as failed with <paramref name="error"/>, once.</summary>
    public void Fail(GenerationRow row, string error)
    {
        if (_committed[row.Row] || _failed[row.Row]) return;
        Append(_failures, ManifestCsv.FailureLine(row, error));
        _failed[row.Row] = true;
        FailedCount++;
    }

    /// <summary>Lets the writer finish what it took, then closes the files.</summary>
    public void Dispose()
    {
        _queue.Writer.TryComplete();
        _writer.Wait();
        _manifest.Dispose();
        _failures.Dispose();
    }

    private static void Append(FileStream stream, string line)
    {
        stream.Write(Encoding.UTF8.GetBytes(line));
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Marks the rows the manifest holds whose file exists; rewrites the manifest without the lines it drops.</summary>
    private static void ReadBack(string path, string directory, BitArray committed)
    {
        var kept = new StringBuilder();
        int dropped = 0;
        using (var reader = new StreamReader(path, Encoding.UTF8))
        {
            bool header = true;
            foreach (var (fields, terminated) in ManifestCsv.Read(reader))
            {
                if (header)
                {
                    if (!terminated || !fields.AsSpan().SequenceEqual(ManifestCsv.Columns))
                        throw new InvalidDataException($"'{path}' is not a generation manifest (its first line should be {string.Join(",", ManifestCsv.Columns)}); choose another output folder.");
                    header = false;
                    continue;
                }
                if (terminated && fields.Length == ManifestCsv.Columns.Length
                    && int.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out int row) && row < committed.Length && !committed[row]
                    && ManifestCsv.Unguard(fields[5]) is var file && file.Length > 0 && file == Path.GetFileName(file) && File.Exists(Path.Combine(directory, file)))
                {
                    committed[row] = true;
                    kept.Append(ManifestCsv.Record(fields));
                }
                else dropped++;
            }
        }
        if (dropped > 0) WriteAtomically(path, ManifestCsv.Record(ManifestCsv.Columns) + kept);
    }

    private static void WriteAtomically(string path, string text)
    {
        var temporary = path + $".{Guid.NewGuid():N}.tmp";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                stream.Write(new UTF8Encoding(false).GetBytes(text));
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }
}

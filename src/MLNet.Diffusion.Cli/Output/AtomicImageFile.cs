using Microsoft.ML.Data;

namespace MLNet.Diffusion.Cli.Output;

/// <summary>
/// Writes images so that a reader never sees a half-written file: the PNG goes to a temporary file in the target
/// folder (named <c>.NAME.RANDOM.partial.png</c>), is flushed to disk, and is then renamed over the target in one step.
/// An interrupted write leaves at most a temporary file, which <see cref="RemoveStrayTemporaryFiles"/> deletes under the
/// folder's lock. A failed write is an <see cref="OutputException"/> naming the file.
/// </summary>
internal static class AtomicImageFile
{
    /// <summary>The suffix of temporary files (they keep .png last: the encoder picks the format by extension).</summary>
    public const string TemporarySuffix = ".partial.png";

    /// <summary>Saves <paramref name="image"/> as <paramref name="path"/>, replacing any file there, atomically.</summary>
    /// <exception cref="OutputException">The folder or the file could not be written.</exception>
    public static void Save(MLImage image, string path)
    {
        var full = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(full)!;
        var temporary = Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}{TemporarySuffix}");
        try
        {
            Directory.CreateDirectory(directory);
            image.Save(temporary);
            using (var stream = new FileStream(temporary, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
                stream.Flush(flushToDisk: true);
            File.Move(temporary, full, overwrite: true);
        }
        catch (Exception e) when (OutputException.IsFileSystemFailure(e))
        {
            TryDelete(temporary);
            throw OutputException.Writing(full, e);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    /// <summary>Whether <paramref name="fileName"/> is one of this writer's temporary files.</summary>
    public static bool IsTemporary(string fileName) =>
        fileName.StartsWith('.') && fileName.EndsWith(TemporarySuffix, StringComparison.Ordinal);

    /// <summary>
    /// Deletes temporary files left in the locked folder by an interrupted run; returns how many. Only the holder of the
    /// folder's lock may do this: another run's temporary file is in flight, not stray.
    /// </summary>
    public static int RemoveStrayTemporaryFiles(OutputFolderLock folder)
    {
        int removed = 0;
        foreach (var file in Directory.EnumerateFiles(folder.Directory, "*" + TemporarySuffix))
        {
            if (!IsTemporary(Path.GetFileName(file))) continue;
            if (TryDelete(file)) removed++;
        }
        return removed;
    }

    private static bool TryDelete(string path)
    {
        try
        {
            File.Delete(path);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }
}

namespace MLNet.Diffusion.Cli.Output;

/// <summary>
/// The lock a batch run holds on its output folder: <c>manifest.csv.lock</c>, opened exclusively (an OS lock that ends
/// with the process, so a killed run never blocks the next one) and deleted when the run ends. Whatever changes files a
/// run did not write itself — deleting stray temporary files, dropping cut-off manifest lines — takes a held lock as its
/// argument, so a run that is refused here has changed nothing in the folder.
/// </summary>
internal sealed class OutputFolderLock : IDisposable
{
    /// <summary>The lock file's name.</summary>
    public const string FileName = "manifest.csv.lock";

    private readonly FileStream _lock;

    private OutputFolderLock(string directory, FileStream fileLock)
    {
        Directory = directory;
        _lock = fileLock;
    }

    /// <summary>The locked folder (a full path).</summary>
    public string Directory { get; }

    /// <summary>Creates <paramref name="directory"/> if needed and locks it.</summary>
    /// <exception cref="UserException">Another run holds the lock.</exception>
    /// <exception cref="OutputException">The folder or the lock file cannot be created.</exception>
    public static OutputFolderLock Acquire(string directory)
    {
        directory = Path.GetFullPath(directory);
        var path = Path.Combine(directory, FileName);
        try
        {
            System.IO.Directory.CreateDirectory(directory);
            var fileLock = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            return new OutputFolderLock(directory, fileLock);
        }
        catch (IOException e) when (IsHeldElsewhere(e))
        {
            throw new UserException($"Another batch run is writing to '{directory}' (it holds {FileName}); wait for it to end or choose another --out folder.");
        }
        catch (Exception e) when (OutputException.IsFileSystemFailure(e))
        {
            throw OutputException.Writing(path, e);
        }
    }

    /// <summary>
    /// Whether opening the lock file failed because another process holds it: flock's EWOULDBLOCK on Unix (11 on Linux,
    /// 35 on macOS, which .NET reports as the HResult), a sharing or lock violation on Windows.
    /// </summary>
    private static bool IsHeldElsewhere(IOException e) =>
        e.HResult is 11 or 35 or unchecked((int)0x80070020) or unchecked((int)0x80070021);

    /// <summary>Releases the lock and deletes the lock file.</summary>
    public void Dispose() => _lock.Dispose();
}

namespace MLNet.Diffusion.Cli.Output;

/// <summary>
/// A file in the output folder could not be read or written while running: a full disk, a file or folder removed or
/// replaced by another program, no permission. The tool reports it as one line with exit code
/// <see cref="Program.IoError"/>, never as a usage error: the command line was right, and whatever was finished before
/// the failure stays finished (a rerun of the same command continues).
/// </summary>
internal sealed class OutputException : Exception
{
    private OutputException(string message, Exception inner)
        : base(message, inner)
    {
    }

    /// <summary>Whether <paramref name="e"/> is a failure of the file system (what <see cref="Writing"/> and <see cref="Reading"/> wrap).</summary>
    public static bool IsFileSystemFailure(Exception e) => e is IOException or UnauthorizedAccessException;

    /// <summary>Writing <paramref name="path"/> failed with <paramref name="e"/>.</summary>
    public static OutputException Writing(string path, Exception e) =>
        new($"Could not write '{path}': {e.Message} Files finished before it are complete; fix the folder (free space, permissions, a file or folder moved away) and run the same command again.", e);

    /// <summary>Reading <paramref name="path"/> failed with <paramref name="e"/>.</summary>
    public static OutputException Reading(string path, Exception e) =>
        new($"Could not read '{path}': {e.Message} Fix the folder (permissions, a file or folder moved away) and run the same command again.", e);
}

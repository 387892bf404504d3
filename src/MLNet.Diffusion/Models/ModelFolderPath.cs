namespace MLNet.Diffusion.Models;

/// <summary>
/// How a model folder is recognised whatever its spelling, so that everything that shares loaded models (the DI
/// provider, the ML.NET transforms' cache) loads one folder once.
/// </summary>
internal static class ModelFolderPath
{
    /// <summary>Folders compare as the file system does: case-insensitively on Windows and macOS.</summary>
    public static readonly StringComparer Comparer =
        OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;

    /// <summary>The full path with no trailing separator: the key that spellings of one folder share.</summary>
    public static string Normalize(string path) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
}

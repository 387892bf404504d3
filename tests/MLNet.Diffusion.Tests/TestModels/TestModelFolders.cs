namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>What every test-model factory does with a folder once its graphs are written: a temporary folder that is
/// deleted when a write fails, and a broken folder with one piece removed.</summary>
internal static class TestModelFolders
{
    /// <summary>Writes a model into <paramref name="folder"/>'s path with <paramref name="write"/>; disposes (deletes) the
    /// folder when writing fails, so a failed test leaves nothing behind.</summary>
    public static TFolder WriteInto<TFolder>(TFolder folder, string path, Action<string> write) where TFolder : IDisposable
    {
        try
        {
            write(path);
        }
        catch
        {
            folder.Dispose();
            throw;
        }
        return folder;
    }

    /// <summary>Deletes <paramref name="relativePath"/> (a component folder or a file) from the model folder
    /// <paramref name="root"/>; refuses a path outside it or one that is not there (<paramref name="model"/> names the
    /// model in that message).</summary>
    public static string Remove(string root, string relativePath, string model)
    {
        string target = Path.GetFullPath(Path.Combine(root, relativePath));
        if (!target.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new ArgumentException($"'{relativePath}' is not inside the model folder.", nameof(relativePath));
        if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
        else if (File.Exists(target)) File.Delete(target);
        else throw new ArgumentException($"The {model} has no '{relativePath}' to delete.", nameof(relativePath));
        return root;
    }
}

using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>What every test-model factory does with a folder once its graphs are written: a temporary folder that is
/// deleted when a write fails, and a broken folder with one piece removed.</summary>
internal static class TestModelFolders
{
    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes a configuration file (indented, non-ASCII text as written), creating its folder.</summary>
    public static void WriteJson(string path, JsonObject value)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, value.ToJsonString(s_json));
    }

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

/// <summary>A temporary folder holding a test model written with <typeparamref name="TOptions"/>; disposing deletes it.</summary>
public abstract class TempTestModelFolder<TOptions> : IDisposable
{
    /// <summary>Creates a new temporary folder whose name starts with <paramref name="prefix"/>.</summary>
    protected TempTestModelFolder(TOptions options, string prefix)
    {
        Options = options;
        Path = Directory.CreateTempSubdirectory(prefix).FullName;
    }

    /// <summary>The model folder.</summary>
    public string Path { get; }

    /// <summary>The options the model was written with.</summary>
    public TOptions Options { get; }

    /// <summary>Deletes the folder (ignoring files that are still open).</summary>
    public void Dispose()
    {
        try
        {
            if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

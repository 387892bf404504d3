// Shared by the samples (linked into each project, not copied): finds the repository and the model folder.
using System.Diagnostics;
using MLNet.Diffusion.ModelBuilder.Demo;

namespace MLNet.Diffusion.Samples;

internal static class SampleModel
{
    /// <summary>The repository root (the folder holding MLNet.Diffusion.sln), or the current folder.</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>
    /// The model folder to use: <paramref name="given"/> when not null, else the built-in demo model in the repository's
    /// <c>.demo-model/</c>, built there on first use.
    /// </summary>
    public static string Resolve(string? given)
    {
        if (given is not null) return Path.GetFullPath(given);
        string dir = Path.Combine(RepoRoot, ".demo-model");
        var sw = Stopwatch.StartNew();
        if (DemoModelBuilder.EnsureBuilt(dir))
            Console.WriteLine($"Built the demo model in {dir} ({sw.Elapsed.TotalSeconds:F1} s).");
        return dir;
    }

    /// <summary>An output folder under the repository's <c>out/</c>, created if missing.</summary>
    public static string OutputFolder(string name)
    {
        string dir = Path.Combine(RepoRoot, "out", name);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A file-name-safe form of a prompt.</summary>
    public static string Slug(string s) =>
        new string(s.ToLowerInvariant().Select(c => char.IsLetterOrDigit(c) ? c : '-').ToArray()).Trim('-');

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MLNet.Diffusion.sln"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }
}

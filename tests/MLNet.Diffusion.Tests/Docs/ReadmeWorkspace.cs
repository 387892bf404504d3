using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Samples;

namespace MLNet.Diffusion.Tests.Docs;

/// <summary>
/// What the README's C# blocks find when they run: the built-in demo model in a temporary cache folder
/// (<c>MLNET_DIFFUSION_CACHE</c>, built once here), and a fresh working folder per block holding the files the blocks
/// name, as a user would have them: <c>prompts.csv</c>, <c>classifier.onnx</c>, <c>sketch.png</c>, <c>photo.png</c> and
/// <c>mask.png</c>.
/// </summary>
public sealed class ReadmeWorkspace : IDisposable
{
    /// <summary>
    /// The prompts the README's ML.NET block loads: a header, a quoted prompt holding a comma and a quoted prompt
    /// spanning two lines (RFC 4180), each with a seed.
    /// </summary>
    public const string PromptsCsv =
        "Prompt,Seed\n" +
        "a red circle on a white background,1\n" +
        "\"a large blue square, in the center\",2\n" +
        "\"a small yellow star\non a black background\",3\n";

    /// <summary>The side of the square images the README's classifier takes (<c>ResizeImages</c> to 64×64).</summary>
    public const int ClassifierSide = 64;

    private readonly DirectoryInfo _root;
    private readonly string _inputs;
    private readonly string? _previousCache = Environment.GetEnvironmentVariable(DemoModel.CacheVariable);

    public ReadmeWorkspace()
    {
        _root = Directory.CreateTempSubdirectory("mlnd-readme-");
        Environment.SetEnvironmentVariable(DemoModel.CacheVariable, Path.Combine(_root.FullName, "cache"));
        DemoModel.EnsureBuilt();

        _inputs = Directory.CreateDirectory(Path.Combine(_root.FullName, "inputs")).FullName;
        File.WriteAllText(Path.Combine(_inputs, "prompts.csv"), PromptsCsv);
        DemoColorClassifier.Write(Path.Combine(_inputs, "classifier.onnx"), ClassifierSide);
        using (var sketch = SampleSupport.WobblyBlob(128, 64, 64, 36, (220, 40, 40)))
            sketch.Save(Path.Combine(_inputs, "sketch.png"));
        using (var photo = SampleSupport.WobblyBlob(128, 40, 40, 30, (40, 60, 220), seed: 2))
            photo.Save(Path.Combine(_inputs, "photo.png"));
        using (var mask = SampleSupport.RectangleMask(128, 128, 0, 0, 64, 64))
            mask.Save(Path.Combine(_inputs, "mask.png"));
    }

    /// <summary>The repository's README.md, found from the test binaries' folder upwards.</summary>
    public static string ReadmePath => Path.Combine(RepositoryRoot(), "README.md");

    /// <summary>The README's C# blocks.</summary>
    internal static IReadOnlyList<ReadmeCodeBlock> ReadBlocks() => ReadmeCodeBlock.Parse(File.ReadAllText(ReadmePath), "README.md");

    /// <summary>A new folder holding a copy of the input files, for block <paramref name="index"/> to run in.</summary>
    public string NewWorkingDirectory(int index)
    {
        var folder = Directory.CreateDirectory(Path.Combine(_root.FullName, $"block-{index}-{Guid.NewGuid():N}"));
        foreach (var file in Directory.EnumerateFiles(_inputs))
            File.Copy(file, Path.Combine(folder.FullName, Path.GetFileName(file)));
        return folder.FullName;
    }

    public void Dispose()
    {
        Environment.SetEnvironmentVariable(DemoModel.CacheVariable, _previousCache);
        try { _root.Delete(recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "README.md")) && File.Exists(Path.Combine(dir.FullName, "MLNet.Diffusion.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException(
            $"No folder above {AppContext.BaseDirectory} holds README.md and MLNet.Diffusion.sln: run the tests from a checkout of the repository.");
    }
}

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary>A job's output folder as a test reads it: the manifest's lines and the failures file's lines.</summary>
internal sealed class OutputFolder : IDisposable
{
    public OutputFolder() => Directory.CreateDirectory(Path);

    /// <summary>The folder (a new temporary one).</summary>
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "mlnd-orleans-" + Guid.NewGuid().ToString("N"));

    /// <summary>The manifest's records after its header (each checked to be a whole line of 7 fields).</summary>
    public List<string[]> ManifestLines() => Lines(ManifestCsv.FileName, ManifestCsv.Columns);

    /// <summary>The failures file's records after its header.</summary>
    public List<string[]> FailureLines() => Lines(FolderSink.FailuresFileName, ManifestCsv.FailureColumns);

    /// <summary>Files an interrupted write would leave.</summary>
    public string[] TemporaryFiles() => Directory.GetFiles(Path, "*.partial.png");

    private List<string[]> Lines(string name, string[] header)
    {
        using var reader = new StreamReader(System.IO.Path.Combine(Path, name));
        var records = ManifestCsv.Read(reader).ToList();
        Assert.Equal(header, records[0].Fields);
        Assert.All(records, r => Assert.True(r.Terminated, $"{name} ends with a cut-off line"));
        Assert.All(records, r => Assert.Equal(header.Length, r.Fields.Length));
        return [.. records.Skip(1).Select(r => r.Fields)];
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

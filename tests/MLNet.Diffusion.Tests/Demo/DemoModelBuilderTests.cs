using System.Text.Json;
using MLNet.Diffusion.ModelBuilder.Demo;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.Demo;

[Collection(DemoCollection.Name)]
public class DemoModelBuilderTests(DemoModelFixture model, ITestOutputHelper output)
{
    private static readonly string[] Files =
    [
        "model_index.json", "scheduler/scheduler_config.json",
        "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json",
        "text_encoder/model.onnx", "text_encoder/config.json", "unet/model.onnx", "unet/config.json",
        "vae_encoder/model.onnx", "vae_encoder/config.json", "vae_decoder/model.onnx", "vae_decoder/config.json",
        "controlnet/model.onnx", DemoModelBuilder.OutlineControlNetFolder + "/model.onnx",
        "README.md", DemoModelBuilder.StampFile,
    ];

    [Fact]
    public void FolderHasStableDiffusionLayoutAndIsSmall()
    {
        foreach (var f in Files) Assert.True(File.Exists(Path.Combine(model.Folder, f)), f);
        long size = DemoModelBuilder.FolderSize(model.Folder);
        output.WriteLine($"demo model folder: {size / 1048576.0:F2} MiB");
        Assert.True(size < 5 * 1024 * 1024);
        using var vae = JsonDocument.Parse(File.ReadAllText(Path.Combine(model.Folder, "vae_decoder", "config.json")));
        Assert.Equal(DemoVae.ScalingFactor, vae.RootElement.GetProperty("scaling_factor").GetSingle());
        using var unet = JsonDocument.Parse(File.ReadAllText(Path.Combine(model.Folder, "unet", "config.json")));
        Assert.Equal(DemoUnet.LatentSize, unet.RootElement.GetProperty("sample_size").GetInt32());
        Assert.Equal(4, unet.RootElement.GetProperty("in_channels").GetInt32());
        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(model.Folder, "model_index.json")));
        Assert.Equal("PNDMScheduler", index.RootElement.GetProperty("scheduler")[1].GetString());
    }

    [Fact]
    public void EnsureBuiltRebuildsOnlyForAnotherVersionAndGivesTheSameBytes()
    {
        Assert.False(DemoModelBuilder.EnsureBuilt(model.Folder));

        // A copy stamped by another builder version is rebuilt in place; the rebuild is byte-identical.
        var copy = model.Scratch("other-version");
        foreach (var f in Files)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(copy, f))!);
            File.Copy(Path.Combine(model.Folder, f), Path.Combine(copy, f));
        }
        File.WriteAllText(Path.Combine(copy, DemoModelBuilder.StampFile), "MLNet.Diffusion demo model, builder demo-0\n");
        File.WriteAllText(Path.Combine(copy, "unet", "model.onnx"), "stale");
        Assert.True(DemoModelBuilder.EnsureBuilt(copy));
        Assert.True(DemoModelBuilder.IsCurrent(copy));
        var built = Directory.EnumerateFiles(copy, "*", SearchOption.AllDirectories).Select(p => Path.GetRelativePath(copy, p)).Order().ToList();
        Assert.Equal(Files.Select(f => f.Replace('/', Path.DirectorySeparatorChar)).Order(), built);
        foreach (var f in Files)
            Assert.True(File.ReadAllBytes(Path.Combine(model.Folder, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(copy, f))), $"{f} differs between builds");
        // No temporary siblings or lock files are left behind.
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(Path.GetDirectoryName(copy)!),
            p => Path.GetFileName(p).StartsWith('.') || p.EndsWith(".lock", StringComparison.Ordinal));
    }

    [Fact]
    public void BuildRefusesAFolderThatIsNotADemoModel()
    {
        var other = model.Scratch("someone-elses");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, "notes.txt"), "keep me");
        Assert.Throws<IOException>(() => DemoModelBuilder.Build(other));
        Assert.Equal("keep me", File.ReadAllText(Path.Combine(other, "notes.txt")));
    }

    [Theory]
    [InlineData("")]
    [InlineData("demo")]
    [InlineData("demo --out")]
    [InlineData("render --out x")]
    [InlineData("demo --out x --extra")]
    public void CommandLineRejectsBadArguments(string commandLine)
    {
        var args = commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var error = new StringWriter();
        var previous = Console.Error;
        Console.SetError(error);
        try
        {
            Assert.Equal(2, MLNet.Diffusion.ModelBuilder.Program.Main(args));
        }
        finally
        {
            Console.SetError(previous);
        }
        Assert.Contains("Usage:", error.ToString());
    }
}

using MLNet.Diffusion.Cli;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.Cli;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>
/// Issue 12: ONNX Runtime 1.31 writes a device id and a telemetry database to <c>~/.cache/Microsoft/DeveloperTools/.onnxruntime/</c>
/// and uploads events unless told not to. The library turns it off by default (<see cref="DiffusionRuntimeOptions.EnableOnnxRuntimeTelemetry"/>
/// opts in), so a generation writes nothing outside its output folder. ONNX Runtime's environment is process-wide, so the
/// runs are child processes with their own home, temporary and working folders.
/// </summary>
public class OnnxRuntimeTelemetryTests
{
    private static readonly string TelemetryFolder = Path.Combine(".cache", "Microsoft", "DeveloperTools", ".onnxruntime");

    /// <summary>Runs <c>generate</c> with HOME, TMPDIR and the working folder inside <paramref name="root"/>; returns the output folder.</summary>
    private static string Generate(TempDir root, string model, IReadOnlyDictionary<string, string?> extra)
    {
        foreach (var name in new[] { "home", "tmp", "work" }) Directory.CreateDirectory(root[name]);
        string output = Path.Combine(root["work"], "out");
        var environment = new Dictionary<string, string?>(extra)
        {
            ["HOME"] = root["home"],
            ["XDG_CACHE_HOME"] = null,
            ["TMPDIR"] = root["tmp"],
            [MLNet.Diffusion.DemoModel.CacheVariable] = null,
        };
        var (code, stderr) = CliProcess.Run(["generate", "a red circle", "--model", model, "--out", output, "--steps", "2", "--seed", "1"], root["work"], environment);
        Assert.True(code == Program.Success, $"exit {code}\n{stderr}");
        Assert.True(stderr.Trim().Length == 0, stderr);
        return output;
    }

    private static string[] FilesUnder(string folder) =>
        Directory.EnumerateFileSystemEntries(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToArray();

    [SkippableFact]
    public void AGenerationWritesNothingOutsideItsOutputFolder()
    {
        Skip.If(OperatingSystem.IsWindows(), "ONNX Runtime's Windows telemetry is ETW and writes no files");
        using var model = TestModelFactory.CreateTemp();
        var before = FilesUnder(model.Path).Select(f => (f, File.GetLastWriteTimeUtc(f))).ToArray();
        using var root = new TempDir("mlnd-telemetry-");
        string output = Generate(root, model.Path, new Dictionary<string, string?>());
        var written = FilesUnder(root.Path).Where(f => !f.StartsWith(output, StringComparison.Ordinal)).ToArray();
        Assert.Equal([root["home"], root["tmp"], root["work"]], written);
        Assert.Single(Directory.GetFiles(output, "*.png"));
        Assert.Equal(before, FilesUnder(model.Path).Select(f => (f, File.GetLastWriteTimeUtc(f))).ToArray());
    }

    [SkippableFact]
    public void OptingInLetsOnnxRuntimeWriteItsTelemetryFolder()
    {
        // The control for the test above: the same run, opted in, makes ONNX Runtime create its folder in HOME. Uploads go to
        // a proxy that refuses every connection, so the test sends nothing.
        Skip.If(OperatingSystem.IsWindows(), "ONNX Runtime's Windows telemetry is ETW and writes no files");
        using var model = TestModelFactory.CreateTemp();
        using var root = new TempDir("mlnd-telemetry-");
        const string Nowhere = "http://127.0.0.1:9";
        Generate(root, model.Path, new Dictionary<string, string?>
        {
            [ModelLocator.TelemetryVariable] = "1",
            ["https_proxy"] = Nowhere, ["HTTPS_PROXY"] = Nowhere, ["http_proxy"] = Nowhere, ["HTTP_PROXY"] = Nowhere,
            ["all_proxy"] = Nowhere, ["ALL_PROXY"] = Nowhere, ["no_proxy"] = null, ["NO_PROXY"] = null,
        });
        Assert.True(Directory.Exists(Path.Combine(root["home"], TelemetryFolder)),
            $"ONNX Runtime wrote no telemetry folder; found: {string.Join(", ", FilesUnder(root.Path))}");
    }

    [Fact]
    public void TheTelemetrySettingIsProcessWideAndTheLibraryTurnsItOffByDefault()
    {
        // In this test process the first factory decided; every test loads models with the default options.
        _ = new OnnxSessionFactory(new DiffusionRuntimeOptions());
        Assert.False(OnnxRuntimeEnvironment.TelemetryEnabled);
        if (!OperatingSystem.IsWindows()) Assert.Equal("1", OnnxRuntimeEnvironment.GetNativeVariable(OnnxRuntimeEnvironment.TelemetryVariable));
        Assert.False(new DiffusionRuntimeOptions().EnableOnnxRuntimeTelemetry);
        Assert.True(new DiffusionRuntimeOptions { EnableOnnxRuntimeTelemetry = true }.Clone().EnableOnnxRuntimeTelemetry);
    }
}

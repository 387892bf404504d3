using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Cli;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.Cli;
using MLNet.Diffusion.Tests.ImageToImage;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>
/// Issue 12, point 5: a model that fails while running (ONNX Runtime refuses a call) is one line naming the component
/// file and what failed, with its own exit code, and ONNX Runtime prints nothing of its own.
/// </summary>
public class RuntimeFaultTests
{
    private const string Prompt = "a red circle";

    /// <summary>The test model with one component replaced by a graph that keeps the contract but fails when it runs.</summary>
    private static TempModelFolder WithFaultyComponent(string component, OnnxGraphBuilder graph)
    {
        var folder = TestModelFactory.CreateTemp();
        foreach (var file in Directory.GetFiles(Path.Combine(folder.Path, component), "*.onnx*")) File.Delete(file);
        graph.Save(Path.Combine(folder.Path, component, "model.onnx"));
        return folder;
    }

    /// <summary>A text encoder whose embedding table has 10 rows: every real token id (BOS is 49406) lies beyond it.</summary>
    internal static OnnxGraphBuilder SmallTableTextEncoder()
    {
        const int Rows = 10, Width = 768;
        var g = new OnnxGraphBuilder("small_table_text_encoder");
        var ids = g.Input("input_ids", OnnxElementType.Int32, "batch", "sequence");
        var table = g.Initializer("token_embedding", new float[Rows * Width], Rows, Width);
        var hidden = g.Gather(table, g.Cast(ids, OnnxElementType.Int64));
        g.Identity(hidden, "last_hidden_state");
        g.Output("last_hidden_state", OnnxElementType.Float, "batch", "sequence", Width);
        return g;
    }

    /// <summary>A UNet that asks for a [2²⁹, 2²⁹] float tensor (2⁶⁰ bytes, more than any 64-bit address space) at run time; the
    /// size depends on the input, so ONNX Runtime cannot fold it away when the model loads.</summary>
    private static OnnxGraphBuilder HugeAllocationUnet()
    {
        var g = new OnnxGraphBuilder("huge_allocation_unet");
        var sample = g.Input("sample", OnnxElementType.Float, "batch", 4, "height", "width");
        g.Input("timestep", OnnxElementType.Float, "batch");
        g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "sequence", 768);
        var batch = g.Slice(g.Node("Shape", [sample]), [0], [1], [0]);
        var side = g.Node("Max", [batch, g.Longs(1L << 29)]);
        var huge = g.Node("ConstantOfShape", [g.Concat(0, side, side)]);
        var total = g.Reshape(g.ReduceSum(huge, [0, 1]), 1, 1, 1, 1);
        g.Identity(g.Add(sample, total), "out_sample");
        g.Output("out_sample", OnnxElementType.Float, "batch", 4, "height", "width");
        return g;
    }

    /// <summary>A graph from <paramref name="input"/> to <paramref name="output"/> (rank 4) whose Reshape to [7, 5] fails for any real size.</summary>
    private static OnnxGraphBuilder BadReshape(string name, string input, string output, int inChannels, int outChannels)
    {
        var g = new OnnxGraphBuilder(name);
        var x = g.Input(input, OnnxElementType.Float, "batch", inChannels, "height", "width");
        var broken = g.Reshape(g.Reshape(x, 7, 5), 1, 1, 7, 5);
        var y = g.Concat(1, Enumerable.Repeat(broken, outChannels).ToArray());
        g.Identity(y, output);
        g.Output(output, OnnxElementType.Float, "batch", outChannels, "height", "width");
        return g;
    }

    private static void AssertNamesTheFile(ModelRunException e, string component)
    {
        Assert.Equal(component, e.ComponentName);
        Assert.Equal($"{component}/model.onnx", e.ComponentFile);
        Assert.Contains(Path.Combine(component, "model.onnx"), e.Message);
        Assert.IsType<OnnxRuntimeException>(e.InnerException);
        Assert.False(string.IsNullOrWhiteSpace(e.RuntimeMessage));
        Assert.Contains(e.RuntimeMessage, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void ATokenIdBeyondTheEmbeddingTableNamesTheTextEncoderAndTheInputs()
    {
        using var folder = WithFaultyComponent("text_encoder", SmallTableTextEncoder());
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var e = Assert.Throws<ModelRunException>(() => pipeline.EncodeText([Prompt]));
        AssertNamesTheFile(e, "text_encoder");
        Assert.Contains("input_ids int32 [1, 77]", e.Message);
        Assert.Contains("Gather", e.RuntimeMessage);
        Assert.Equal(1, pipeline.TextEncoder.RunCount); // it ran and failed; the pipeline stays usable
        Assert.Throws<ModelRunException>(() => pipeline.Generate(Prompt, 1, new GenerationOptions { Steps = 2 }));
    }

    [Theory]
    [InlineData(true, false)]  // IO binding (the default)
    [InlineData(false, false)] // InferenceSession.Run with arrays
    [InlineData(true, true)]   // fixed buffers, the CUDA-graph path, on the CPU
    public void AUNetThatAsksForMoreMemoryThanExistsFailsAsAModelRunOnEveryRunPath(bool ioBinding, bool fixedBuffers)
    {
        using var folder = WithFaultyComponent("unet", HugeAllocationUnet());
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { UseIoBinding = ioBinding, ForceFixedBuffers = fixedBuffers });
        var e = Assert.Throws<ModelRunException>(() => pipeline.Generate(Prompt, 1, new GenerationOptions { Steps = 2 }));
        AssertNamesTheFile(e, "unet");
        Assert.Contains("could not get the memory", e.Message);
        if (!ioBinding) Assert.Contains("sample float [2, 4, 8, 8]", e.Message);
    }

    [Fact]
    public void AVaeDecoderThatFailsWhileRunningIsNamed()
    {
        using var folder = WithFaultyComponent("vae_decoder", BadReshape("bad_vae_decoder", "latent_sample", "sample", 4, 3));
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var e = Assert.Throws<ModelRunException>(() => pipeline.Decode(new float[4 * 8 * 8], 1, 8, 8));
        AssertNamesTheFile(e, "vae_decoder");
        Assert.Contains("latent_sample float [1, 4, 8, 8]", e.Message);
        Assert.Contains("Reshape", e.RuntimeMessage);
    }

    [Fact]
    public void AVaeEncoderThatFailsWhileRunningIsNamed()
    {
        using var folder = WithFaultyComponent("vae_encoder", BadReshape("bad_vae_encoder", "sample", "latent_sample", 3, 4));
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var image = ImageToImageTestKit.BlockImage(64, 64);
        var e = Assert.Throws<ModelRunException>(() => pipeline.EncodeImage(image, 64, 64));
        AssertNamesTheFile(e, "vae_encoder");
        Assert.Contains("sample float [1, 3, 64, 64]", e.Message);
    }

    [Fact]
    public void CancellingARunIsStillCancellationNotAModelFailure()
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { UnetSlowdown = 400 });
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        Assert.ThrowsAny<OperationCanceledException>(() => pipeline.Generate(Prompt, 1, new GenerationOptions { Steps = 50 }, cancellationToken: cancellation.Token));
    }

    // ---- the CLI ------------------------------------------------------------------------------------------

    [Fact]
    public void TheCliReportsARuntimeFaultAsOneLineWithItsOwnExitCode()
    {
        using var folder = WithFaultyComponent("text_encoder", SmallTableTextEncoder());
        using var dir = new TempDir();
        var result = CliRun.Run("generate", Prompt, "--model", folder.Path, "--out", dir["out"], "--steps", "2", "--seed", "1");
        Assert.True(result.ExitCode == Program.ModelFailure, result.ToString());
        Assert.True(result.ErrLines.Length == 1, result.ToString());
        Assert.StartsWith("error: The text_encoder model '", result.ErrLines[0]);
        Assert.Contains("text_encoder/model.onnx", result.ErrLines[0]);
        Assert.Contains("Gather", result.ErrLines[0]);
        Assert.False(Directory.Exists(dir["out"]) && Directory.EnumerateFiles(dir["out"]).Any(), "nothing is written");
    }

    [Fact]
    public void TheCliProcessPrintsNoOnnxRuntimeLogLines()
    {
        // ONNX Runtime's own log lines go to the process's standard error from native code, which only a child process shows.
        using var folder = WithFaultyComponent("text_encoder", SmallTableTextEncoder());
        using var dir = new TempDir();
        var (code, stderr) = CliProcess.Run(["generate", Prompt, "--model", folder.Path, "--out", dir["out"], "--steps", "2", "--seed", "1"], dir.Path);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(code == Program.ModelFailure, $"exit {code}\n{stderr}");
        Assert.True(lines.Length == 1, stderr);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains("text_encoder/model.onnx", lines[0]);
        Assert.DoesNotContain("onnxruntime:", stderr); // the native log format: "[E:onnxruntime:, sequential_executor.cc:…]"
    }

    // ---- ONNX Runtime's log lines go to the library's logger -----------------------------------------------

    [Fact]
    public void NativeLogLinesReachTheRegisteredLoggerAtDebugLevel()
    {
        var logger = new ListLogger();
        string id = OnnxRuntimeEnvironment.Initialize(new DiffusionRuntimeOptions { Logger = logger });
        OnnxRuntimeEnvironment.Forward(IntPtr.Zero, OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR, "onnxruntime", id, "sequential_executor.cc:516", "Non-zero status code returned while running Gather node.");
        OnnxRuntimeEnvironment.Forward(IntPtr.Zero, OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR, "onnxruntime", "someone-else", "x.cc:1", "not ours");
        var entry = Assert.Single(logger.Entries);
        Assert.Equal(LogLevel.Debug, entry.Level);
        Assert.Contains("Gather node", entry.Message);
    }

    [SkippableFact]
    public void WhenTheLibraryCreatedTheEnvironmentAFailedRunIsLoggedNotPrinted()
    {
        // Whether this process's ONNX Runtime environment is the library's depends on which test touched ONNX Runtime first.
        var logger = new ListLogger();
        using var folder = WithFaultyComponent("text_encoder", SmallTableTextEncoder());
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { Logger = logger });
        Skip.IfNot(OnnxRuntimeEnvironment.OwnsEnvironment, "another test created ONNX Runtime's environment first");
        Assert.Throws<ModelRunException>(() => pipeline.EncodeText([Prompt]));
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Debug && e.Message.Contains("Gather", StringComparison.Ordinal));
    }

    private sealed class ListLogger : ILogger
    {
        public List<(LogLevel Level, string Message)> Entries { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Entries) Entries.Add((logLevel, formatter(state, exception)));
        }
    }
}

/// <summary>Runs <c>mlnet-diffusion</c> as a child process (<c>dotnet MLNet.Diffusion.Cli.dll</c>), with its own environment.</summary>
internal static class CliProcess
{
    /// <summary>Variables that make ONNX Runtime switch its telemetry off by itself (its CI detection and its own switch):
    /// removed from the child's environment so that only the library's setting decides.</summary>
    public static readonly string[] TelemetryVariables =
    [
        "ORT_DISABLE_TELEMETRY", "ORT_RUNNING_UNIT_TESTS", "CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS",
        "JENKINS_URL", "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
        "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI",
    ];

    /// <summary>Runs the tool in <paramref name="workingDirectory"/> and returns its exit code and standard error.</summary>
    public static (int ExitCode, string Stderr) Run(string[] args, string workingDirectory, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "MLNet.Diffusion.Cli.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var name in TelemetryVariables) start.Environment.Remove(name);
        if (environment is not null)
            foreach (var (name, value) in environment)
            {
                if (value is null) start.Environment.Remove(name);
                else start.Environment[name] = value;
            }
        using var process = Process.Start(start)!;
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, d) => { if (d.Data is not null) lock (stderr) stderr.AppendLine(d.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"mlnet-diffusion {string.Join(' ', args)} did not finish in 3 minutes.");
        }
        process.WaitForExit();
        lock (stderr) return (process.ExitCode, stderr.ToString());
    }
}

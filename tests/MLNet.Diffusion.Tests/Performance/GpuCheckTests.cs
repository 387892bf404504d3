using MLNet.Diffusion.Benchmarks;

namespace MLNet.Diffusion.Tests.Performance;

/// <summary>
/// The benchmarks' <c>gpu-check</c> mode (compiled into this assembly from tests/MLNet.Diffusion.Benchmarks/GpuCheck.cs) where
/// CUDA cannot be used: the tests run with ONNX Runtime's CPU package, which has no CUDA provider, so the check must stop with
/// its exit code and a message that says what is missing and how to fix it, having measured nothing.
/// </summary>
public class GpuCheckTests
{
    [Fact]
    public void WithoutCudaTheCheckExitsWithItsCodeAndSaysWhatIsMissingAndHowToFixIt()
    {
        var output = new StringWriter();
        int code = GpuCheck.Run([], output);
        string text = output.ToString();
        Assert.Equal(GpuCheck.ExitNoCuda, code);
        Assert.Equal(3, code);
        Assert.StartsWith("gpu-check: CUDA cannot be used, so nothing was measured.", text);
        Assert.Contains("What failed: CUDA device 0 could not be used:", text);             // the library's own reason (FallbackToCpu = false)
        Assert.Contains("execution providers in this build: CPUExecutionProvider.", text);
        Assert.Contains("eng/gpu-check.sh", text);                                          // the fix: build with the GPU package
        Assert.Contains("-p:Ort=gpu", text);
        Assert.DoesNotContain("| model |", text);                                           // no table: nothing was run
    }

    [Fact]
    public void ADeviceNumberIsPassedToTheLibrary()
    {
        var output = new StringWriter();
        Assert.Equal(GpuCheck.ExitNoCuda, GpuCheck.Run(["--device", "1", "--quick"], output));
        Assert.Contains("CUDA device 1 could not be used", output.ToString());
    }

    [Fact]
    public void TheDryRunOnTheCpuMeasuresEveryRowAndCountsNoCopies()
    {
        var output = new StringWriter();
        Assert.Equal(0, GpuCheck.Run(["--cpu", "--quick"], output));
        var rows = output.ToString().Split('\n').Where(l => l.StartsWith("| synthetic", StringComparison.Ordinal)).ToArray();
        Assert.Equal(6 + 4, rows.Length); // 2 models × 3 run paths, then 2 models × batch sizes 1 and 2
        Assert.Contains(rows, r => r.Contains("[Cpu, SessionRun]", StringComparison.Ordinal));
        Assert.Contains(rows, r => r.Contains("[Cpu, IoBinding]", StringComparison.Ordinal));
        Assert.Contains(rows, r => r.Contains("[Cpu, FixedBuffers]", StringComparison.Ordinal));
        Assert.All(rows.Take(6), r => Assert.Contains("| 0 (0 B) | 0 (0 B) | none logged |", r)); // host memory: nothing crosses
        Assert.DoesNotContain("failed", output.ToString());
    }

    [Theory]
    [InlineData("--bogus")]
    [InlineData("--steps", "1")]
    [InlineData("--device", "-1")]
    [InlineData("--runs")]
    public void ArgumentsItDoesNotTakeExitWithUsage(params string[] args)
    {
        var output = new StringWriter();
        Assert.Equal(GpuCheck.ExitUsage, GpuCheck.Run(args, output));
        Assert.Contains($"gpu-check: '{args[0]}' is not an option or lacks a valid value. Usage: gpu-check", output.ToString());
    }

    [Fact]
    public void WithTheCudaProviderBuiltInTheFixNamesTheDriverAndTheCudaLibraries()
    {
        string text = GpuCheck.NoCudaMessage("CUDA device 0 could not be used: Failed to load shared library libonnxruntime_providers_cuda.so",
            ["CUDAExecutionProvider", "CPUExecutionProvider"]);
        Assert.Contains("What failed: CUDA device 0 could not be used: Failed to load shared library", text);
        Assert.Contains("nvidia-smi", text);
        Assert.Contains("CUDA 13 (libcudart.so.13", text);
        Assert.Contains("cuDNN 9", text);
        Assert.Contains("LD_LIBRARY_PATH", text);
        Assert.DoesNotContain("-p:Ort=gpu", text);
    }
}

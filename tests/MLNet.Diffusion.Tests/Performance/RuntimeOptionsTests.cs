using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Performance;

public class RuntimeOptionsTests
{
    [Fact]
    public void IntraOpThreadsDefaultToThePhysicalCores()
    {
        var factory = new OnnxSessionFactory(new DiffusionRuntimeOptions());
        Assert.InRange(factory.IntraOpThreads, 1, Environment.ProcessorCount);
        Assert.Equal(CpuTopology.PhysicalCores, factory.IntraOpThreads);
        Assert.Equal(3, new OnnxSessionFactory(new DiffusionRuntimeOptions { IntraOpThreads = 3 }).IntraOpThreads);
    }

    [Fact]
    public void OnnxRuntimePinsItsDefaultPoolOnlyWhenTheProcessHasTheWholeMachine()
    {
        Assert.Equal(CpuTopology.WholeMachine, new OnnxSessionFactory(new DiffusionRuntimeOptions()).PinnedByOnnxRuntime);
        Assert.False(new OnnxSessionFactory(new DiffusionRuntimeOptions { IntraOpThreads = 1 }).PinnedByOnnxRuntime);
        if (OperatingSystem.IsLinux() && CpuTopology.LinuxOnlineCpus() is int online)
            Assert.Equal(Environment.ProcessorCount >= online && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOTNET_PROCESSOR_COUNT")), CpuTopology.WholeMachine);
    }

    [Theory]
    [InlineData("0-3,6\n", 5)]
    [InlineData("0\n", 1)]
    [InlineData("0-1", 2)]
    [InlineData("0-63,128-191", 128)]
    [InlineData("3-1", null)]
    [InlineData("a-b", null)]
    [InlineData("", null)]
    public void OnlineCpusAreReadFromSysfsRanges(string text, int? expected)
    {
        var root = Directory.CreateTempSubdirectory("mlnd-online-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(root, "online"), text);
            Assert.Equal(expected, CpuTopology.LinuxOnlineCpus(root));
            Assert.Null(CpuTopology.LinuxOnlineCpus(Path.Combine(root, "missing")));
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void PhysicalCoresCountDistinctCoresOfOnlineCpus()
    {
        var root = Directory.CreateTempSubdirectory("mlnd-sysfs-").FullName;
        try
        {
            // Two packages; package 0 has cores 0 and 1 with two threads each; cpu5 is offline.
            (string Cpu, string Package, string Core, string? Online)[] cpus =
                [("cpu0", "0", "0", null), ("cpu1", "0", "1", "1"), ("cpu2", "0", "0", "1"), ("cpu3", "0", "1", "1"), ("cpu4", "1", "0", "1"), ("cpu5", "1", "1", "0")];
            foreach (var (cpu, package, core, online) in cpus)
            {
                Directory.CreateDirectory(Path.Combine(root, cpu, "topology"));
                File.WriteAllText(Path.Combine(root, cpu, "topology", "physical_package_id"), package + "\n");
                File.WriteAllText(Path.Combine(root, cpu, "topology", "core_id"), core + "\n");
                if (online is not null) File.WriteAllText(Path.Combine(root, cpu, "online"), online + "\n");
            }
            Directory.CreateDirectory(Path.Combine(root, "cpufreq")); // not a CPU
            Assert.Equal(3, CpuTopology.LinuxPhysicalCores(root));
            Assert.Null(CpuTopology.LinuxPhysicalCores(Path.Combine(root, "missing")));
        }
        finally
        {
            Directory.Delete(root, true);
        }
    }

    [Fact]
    public void CudaGraphNeedsIoBinding()
    {
        var e = Assert.Throws<ArgumentException>(() => new OnnxSessionFactory(new DiffusionRuntimeOptions { EnableCudaGraph = true, UseIoBinding = false }));
        Assert.Contains("UseIoBinding", e.Message);
    }

    [Fact]
    public void RunPathFollowsTheOptionsAndCudaGraphIsIgnoredOnTheCpu()
    {
        using var folder = TestModelFactory.CreateTemp();
        string model = Path.Combine(folder.Path, "unet", "model.onnx");
        using (var unet = new UNet(model, new OnnxSessionFactory(new DiffusionRuntimeOptions())))
            Assert.Equal(UNetRunPath.IoBinding, unet.RunPath);
        using (var unet = new UNet(model, new OnnxSessionFactory(new DiffusionRuntimeOptions { UseIoBinding = false })))
            Assert.Equal(UNetRunPath.SessionRun, unet.RunPath);
        using (var unet = new UNet(model, new OnnxSessionFactory(new DiffusionRuntimeOptions { EnableCudaGraph = true })))
        {
            Assert.False(unet.CudaGraph);
            Assert.Equal(UNetRunPath.IoBinding, unet.RunPath);
        }
    }

    [Fact]
    public void CudaGraphFallsBackWithTheReasonWhenCudaIsMissing()
    {
        using var folder = TestModelFactory.CreateTemp();
        var logger = new Support.ListLogger();
        var sessions = new OnnxSessionFactory(new DiffusionRuntimeOptions { Device = ExecutionDevice.Cuda, EnableCudaGraph = true, Logger = logger });
        using var unet = new UNet(Path.Combine(folder.Path, "unet", "model.onnx"), sessions);
        if (unet.Device == ExecutionDevice.Cuda) return; // a machine with CUDA: nothing to fall back from
        Assert.False(unet.CudaGraph);
        Assert.Equal(UNetRunPath.IoBinding, unet.RunPath);
        Assert.NotNull(sessions.FallbackReason);
    }
}

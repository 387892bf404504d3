using System.Globalization;

namespace MLNet.Diffusion.Runtime;

/// <summary>
/// The number of physical cores this process may use, for ONNX Runtime's intra-op thread pool. Hyper-threads
/// share a core's floating-point units, so one thread per physical core is the fastest setting for the
/// convolution- and GEMM-bound UNet (more threads only contend); a container's CPU quota is respected.
/// </summary>
internal static class CpuTopology
{
    private static readonly Lazy<int> s_physicalCores = new(Detect);

    private static readonly Lazy<bool> s_wholeMachine = new(DetectWholeMachine);

    /// <summary>Physical cores available to the process (at least 1).</summary>
    public static int PhysicalCores => s_physicalCores.Value;

    /// <summary>
    /// Whether the process may run on every online CPU of the machine (no affinity mask, no container CPU quota
    /// smaller than the machine). ONNX Runtime's own default thread pool (IntraOpNumThreads not set) starts one thread
    /// per physical core of the whole machine and pins each to its core, which is only right in that case.
    /// Outside Linux the machine's CPU count is not read, and the answer is true unless
    /// <c>DOTNET_PROCESSOR_COUNT</c> limits the process.
    /// </summary>
    public static bool WholeMachine => s_wholeMachine.Value;

    private static bool DetectWholeMachine()
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOTNET_PROCESSOR_COUNT"))) return false;
        if (!OperatingSystem.IsLinux()) return true;
        int? online = LinuxOnlineCpus();
        return online is not null && Environment.ProcessorCount >= online.Value;
    }

    /// <summary>The online logical CPUs, from <c>/sys/devices/system/cpu/online</c> (ranges such as <c>0-3,6</c>); null if unreadable.</summary>
    internal static int? LinuxOnlineCpus(string root = "/sys/devices/system/cpu")
    {
        try
        {
            string path = Path.Combine(root, "online");
            if (!File.Exists(path)) return null;
            int count = 0;
            foreach (var part in File.ReadAllText(path).Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var bounds = part.Split('-');
                if (!int.TryParse(bounds[0], NumberStyles.None, CultureInfo.InvariantCulture, out int first)) return null;
                int last = first;
                if (bounds.Length == 2 && !int.TryParse(bounds[1], NumberStyles.None, CultureInfo.InvariantCulture, out last)) return null;
                if (bounds.Length > 2 || last < first) return null;
                count += last - first + 1;
            }
            return count > 0 ? count : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static int Detect()
    {
        int logical = Math.Max(1, Environment.ProcessorCount); // respects affinity and cgroup CPU limits
        int? physical = OperatingSystem.IsLinux() ? LinuxPhysicalCores() : null;
        // Elsewhere assume two hardware threads per core when there is more than one logical processor;
        // ONNX Runtime's own default (used when IntraOpNumThreads is not set) makes the same choice from cpuinfo.
        return Math.Clamp(physical ?? (logical > 1 ? logical / 2 : 1), 1, logical);
    }

    /// <summary>Distinct (package, core) pairs among the online CPUs, from sysfs; null if it cannot be read.</summary>
    internal static int? LinuxPhysicalCores(string root = "/sys/devices/system/cpu")
    {
        try
        {
            if (!Directory.Exists(root)) return null;
            var cores = new HashSet<(string, string)>();
            foreach (var cpu in Directory.EnumerateDirectories(root, "cpu*"))
            {
                string name = Path.GetFileName(cpu);
                if (name.Length <= 3 || !int.TryParse(name.AsSpan(3), NumberStyles.None, CultureInfo.InvariantCulture, out _)) continue;
                string online = Path.Combine(cpu, "online");
                if (File.Exists(online) && File.ReadAllText(online).Trim() == "0") continue;
                string core = Path.Combine(cpu, "topology", "core_id"), package = Path.Combine(cpu, "topology", "physical_package_id");
                if (!File.Exists(core)) continue;
                cores.Add((File.Exists(package) ? File.ReadAllText(package).Trim() : "0", File.ReadAllText(core).Trim()));
            }
            return cores.Count > 0 ? cores.Count : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

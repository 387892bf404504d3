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

    /// <summary>Physical cores available to the process (at least 1).</summary>
    public static int PhysicalCores => s_physicalCores.Value;

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

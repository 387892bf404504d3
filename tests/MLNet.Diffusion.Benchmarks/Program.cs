using BenchmarkDotNet.Running;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// <c>dotnet run -c Release --project tests/MLNet.Diffusion.Benchmarks -- [report | threads | probe | memory | batch-memory | vae-tiling | guidance | controlnet | server-load | cluster-overhead | gpu-check | BenchmarkDotNet arguments]</c>:
/// BenchmarkDotNet's switcher (e.g. <c>--filter *</c>), or <c>report</c> for the measurements BenchmarkDotNet does not
/// make (overhead outside ONNX Runtime, allocations per step, peak working set), <c>threads</c> (the demo model under
/// three thread-pool settings), <c>probe</c> (stage timings), <c>memory</c> (one child process of <c>report</c>), or
/// <c>batch-memory</c> (the <c>batch</c> command's peak working set over tables of 1 000 and 1 000 000 rows), or
/// <c>vae-tiling</c> (peak working set of a VAE decode at 1024², 2048² and 4096², tiled against whole), or <c>guidance</c>
/// (UNet rows and time per image with guidance limited to an interval or ended early), or <c>controlnet</c> (a ControlNet
/// step's host time outside ONNX Runtime and managed bytes per step), or <c>server-load</c> (the HTTP server under
/// concurrent clients on loopback), or <c>cluster-overhead</c> (images/s of <c>batch</c> in-process against <c>batch --cluster</c>
/// through a one-silo localhost cluster, interleaved).
/// </summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "report") return Report.Run(args[1..]);
        if (args.Length > 0 && args[0] == "memory") return PeakMemory.RunChild(args[1..]);
        if (args.Length > 0 && args[0] == "probe") return Report.Probe();
        if (args.Length > 0 && args[0] == "batch-memory") return BatchMemory.Run(args[1..]);
        if (args.Length > 0 && args[0] == "threads") return Report.Threads();
        if (args.Length > 0 && args[0] == "guidance") return GuidanceRows.Run(args[1..]);
        if (args.Length > 0 && args[0] == "controlnet") return ControlNetOverhead.Run(args[1..]);
        if (args.Length > 0 && args[0] == "vae-tiling") return VaeTilingMemory.Run(args[1..]);
        if (args.Length > 0 && args[0] == "gpu-check") return GpuCheck.Run(args[1..]);
        if (args.Length > 0 && args[0] == "vae-tiling-child") return VaeTilingMemory.RunChild(args[1..]);
        if (args.Length > 0 && args[0] is "memory-check" or "memory-check-child") return MemoryCheck.Dispatch(args);
        if (args.Length > 0 && args[0] == "server-load") return ServerLoad.Run(args[1..]);
        if (args.Length > 0 && args[0] == "cluster-overhead") return ClusterOverhead.Run(args[1..]);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, new ShortRunConfig());
        return 0;
    }
}

using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// <c>memory-check [--steps N]</c>: the peak working set of one generation, predicted by <see cref="MemoryPredictor"/> and
/// measured in a fresh child process (Linux <c>VmHWM</c>), for the demo model, the synthetic SD 1.5-shaped and the
/// SDXL-shaped synthetic models at several sizes and batch 1 and 2, with and without
/// <see cref="DiffusionRuntimeOptions.LowMemory"/>. Also the working set after the generation (the pipeline still
/// loaded), which shows what the CPU arena keeps. Prints one Markdown table and returns 1 when a prediction misses the
/// measured peak by more than <see cref="Tolerance"/>.
/// </summary>
public static class MemoryCheck
{
    /// <summary>The largest accepted |predicted − measured| / measured peak.</summary>
    public const double Tolerance = 0.15;

    /// <summary><c>memory-check [--steps N]</c>, or the child process of one case (<c>memory-check-child</c>).</summary>
    public static int Dispatch(string[] args) => args[0] == "memory-check-child" ? RunChild(args[1..]) : Run(args[1..]);

    /// <summary>Runs every case and prints the table.</summary>
    public static int Run(string[] args)
    {
        int steps = Option(args, "--steps") is { } s ? int.Parse(s, CultureInfo.InvariantCulture) : 2;
        // Sizes marked * were not among those the coefficients were fitted to.
        var cases = new List<(string Name, string Folder, MemoryPredictor.Shape Shape, int[] Sizes)>
        {
            ("demo", ModelFolders.Demo, MemoryPredictor.Shape.Demo, [256]),
            ("synthetic SD 1.5", ModelFolders.SyntheticSd15, MemoryPredictor.Shape.Synthetic(ModelFolders.SyntheticSd15Options.Channels, 1), [256, 384, 448, 512]),
            ("synthetic SDXL", ModelFolders.SyntheticSdxl, MemoryPredictor.Shape.Synthetic(ModelFolders.SyntheticSdxlOptions.Channels, 2), [512, 768, 896, 1024]),
        };
        int[] unfitted = [448, 896];
        Console.WriteLine($"Peak working set of one generation ({steps} steps, guidance 7.5, Euler), each in a fresh process; base = the process before any model loads.");
        Console.WriteLine();
        Console.WriteLine("| model | size | batch | mode | base | predicted peak | measured peak | error | after generation |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        int misses = 0;
        foreach (var (name, folder, shape, sizes) in cases)
        {
            var weights = MemoryPredictor.Weights.Of(folder);
            foreach (int size in sizes)
                foreach (int batch in new[] { 1, 2 })
                    foreach (bool low in new[] { false, true })
                    {
                        var m = Child(folder, size, batch, low, steps);
                        if (m is null)
                        {
                            Console.WriteLine($"| {name} | {size} | {batch} | {(low ? "low memory" : "default")} | (child failed) | | | | |");
                            misses++;
                            continue;
                        }
                        long predicted = MemoryPredictor.Peak(m.Value.Base, weights, shape, size, size, batch, guided: true, low);
                        double error = (predicted - m.Value.Peak) / (double)m.Value.Peak;
                        if (Math.Abs(error) > Tolerance) misses++;
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"| {name} | {size}²{(unfitted.Contains(size) ? " *" : "")} | {batch} | {(low ? "low memory" : "default")} | {Mb(m.Value.Base)} | {Mb(predicted)} | {Mb(m.Value.Peak)} | {error * 100:+0.0;-0.0;0.0} % | {Mb(m.Value.After)} |"));
                    }
        }
        Console.WriteLine();
        Console.WriteLine("* a size the coefficients were not fitted to. After generation: the working set once the call returns, the pipeline still loaded.");
        Arena(steps);
        Console.WriteLine(misses == 0 ? $"Every prediction is within {Tolerance:P0} of the measured peak." : $"{misses} case(s) outside {Tolerance:P0} or failed.");
        return misses == 0 ? 0 : 1;
    }

    private readonly record struct Measured(long Base, long Peak, long After, long Milliseconds);

    private static Measured? Child(string folder, int size, int batch, bool lowMemory, int steps) => Child(folder, size, batch, lowMemory ? "1" : "0", steps);

    private static Measured? Child(string folder, int size, int batch, string mode, int steps)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Environment.ProcessPath!.EndsWith("dotnet", StringComparison.Ordinal)) start.ArgumentList.Add(typeof(MemoryCheck).Assembly.Location);
        foreach (var a in new[] { "memory-check-child", folder, Invariant(size), Invariant(batch), mode, Invariant(steps) })
            start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        var error = child.StandardError.ReadToEndAsync();
        string output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        var parts = output.Trim().Split(' ');
        if (child.ExitCode != 0 || parts.Length != 4)
        {
            Console.Error.WriteLine($"memory-check child failed ({child.ExitCode}): {output.Trim()} {error.Result.Trim()}");
            return null;
        }
        var v = parts.Select(p => long.Parse(p, CultureInfo.InvariantCulture)).ToArray();
        return new Measured(v[0], v[1], v[2], v[3]);
    }

    /// <summary>The child: loads the model, generates <c>batch</c> images in one call, prints "base peak after" in bytes.</summary>
    public static int RunChild(string[] args)
    {
        string folder = args[0];
        int size = int.Parse(args[1], CultureInfo.InvariantCulture), batch = int.Parse(args[2], CultureInfo.InvariantCulture);
        bool lowMemory = args[3] == "1";
        bool? arena = args[3] == "2" ? false : null; // 2: every component loaded, no CPU arena
        int steps = int.Parse(args[4], CultureInfo.InvariantCulture);
        _ = OrtEnv.Instance(); // the native runtime is part of the base
        GC.Collect();
        long before = PeakMemory.Current("VmRSS");
        using var pipeline = StableDiffusionPipeline.Load(folder, new DiffusionRuntimeOptions { LowMemory = lowMemory, CpuMemoryArena = arena });
        var options = new GenerationOptions { Steps = steps, Scheduler = "euler", GuidanceScale = 7.5f, Width = size, Height = size };
        var requests = Enumerable.Range(0, batch).Select(i => new ImagePrompt("a red circle", 1 + i)).ToArray();
        var clock = Stopwatch.StartNew();
        foreach (var image in pipeline.Generate(requests, options)) image.Image.Dispose();
        long ms = clock.ElapsedMilliseconds;
        long peak = PeakMemory.Current("VmHWM");
        GC.Collect();
        long after = PeakMemory.Current("VmRSS");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{before} {peak} {after} {ms}"));
        return 0;
    }

    /// <summary>What the CPU arena and the per-stage loading each give back: the largest cases with every component
    /// loaded and the arena on (default), every component loaded and the arena off, and low-memory mode; peak, working
    /// set once the call returns, and the call's wall time.</summary>
    private static void Arena(int steps)
    {
        Console.WriteLine();
        Console.WriteLine("| model | size | batch | mode | peak | after generation | generation time |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
        foreach (var (name, folder, size, batch) in new[] { ("synthetic SD 1.5", ModelFolders.SyntheticSd15, 512, 2), ("synthetic SDXL", ModelFolders.SyntheticSdxl, 1024, 1) })
            foreach (var (mode, label) in new[] { ("0", "default (arena on)"), ("2", "arena off"), ("1", "low memory") })
            {
                var m = Child(folder, size, batch, mode, steps);
                Console.WriteLine(m is not { } r ? $"| {name} | {size}² | {batch} | {label} | (child failed) | | |"
                    : string.Create(CultureInfo.InvariantCulture, $"| {name} | {size}² | {batch} | {label} | {Mb(r.Peak)} | {Mb(r.After)} | {r.Milliseconds / 1000.0:F2} s |"));
            }
        Console.WriteLine();
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static string Mb(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:F0} MiB");
}

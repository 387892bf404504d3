using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.ModelBuilder.Synthetic;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// Peak working set of one generation, measured in a fresh child process (Linux <c>VmHWM</c>, else
/// <see cref="Process.PeakWorkingSet64"/>): the working set after the runtime and ONNX Runtime's native library
/// are loaded but before any model is, then the peak after loading the pipeline and generating one image. A mode runs the
/// child with <see cref="DiffusionRuntimeOptions.WithoutT5"/> (<c>no-t5</c>: SD3 with zeros in T5's place; its model
/// files are counted without <c>text_encoder_3/</c>) or <see cref="DiffusionRuntimeOptions.LowMemory"/> (<c>low-memory</c>).
/// </summary>
public static class PeakMemory
{
    /// <summary>Runs the child process and prints one table row.</summary>
    public static void Measure(string name, string folder, int size, int steps, string mode = "default")
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!, ChildArguments(folder, size, steps, mode)) { RedirectStandardOutput = true };
        using var child = Process.Start(start)!;
        string output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        var parts = output.Trim().Split(' ');
        if (child.ExitCode != 0 || parts.Length != 2)
        {
            Console.WriteLine($"| {name} | (child failed: {output.Trim()}) | | | |");
            return;
        }
        long before = long.Parse(parts[0], CultureInfo.InvariantCulture), peak = long.Parse(parts[1], CultureInfo.InvariantCulture);
        long model = SyntheticModelFolder.ModelBytes(folder);
        if (mode == "no-t5" && Directory.Exists(Path.Combine(folder, "text_encoder_3"))) model -= SyntheticModelFolder.ModelBytes(Path.Combine(folder, "text_encoder_3"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {Mb(model)} | {Mb(before)} | {Mb(peak)} | {Mb(peak - before - model)} |"));
    }

    private static string ChildArguments(string folder, int size, int steps, string mode)
    {
        string dll = typeof(PeakMemory).Assembly.Location;
        string prefix = Environment.ProcessPath!.EndsWith("dotnet", StringComparison.Ordinal) ? $"\"{dll}\" " : "";
        return string.Create(CultureInfo.InvariantCulture, $"{prefix}memory \"{folder}\" {size} {steps} {mode}");
    }

    /// <summary>The child: prints "bytes-before bytes-peak".</summary>
    public static int RunChild(string[] args)
    {
        string folder = args[0];
        int size = int.Parse(args[1], CultureInfo.InvariantCulture), steps = int.Parse(args[2], CultureInfo.InvariantCulture);
        string mode = args.Length > 3 ? args[3] : "default";
        var runtime = new DiffusionRuntimeOptions { WithoutT5 = mode == "no-t5", LowMemory = mode == "low-memory" };
        _ = OrtEnv.Instance(); // load the native runtime before the baseline reading
        GC.Collect();
        long before = Current("VmRSS");
        using (var pipeline = StableDiffusionPipeline.Load(folder, runtime))
        {
            var options = new GenerationOptions { Steps = steps, Scheduler = Report.SchedulerFor(folder), GuidanceScale = 7.5f, Width = size, Height = size };
            pipeline.Generate("a red circle", 1, options).Image.Dispose();
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{before} {Current("VmHWM")}"));
        return 0;
    }

    /// <summary>This process's <c>VmRSS</c> (working set) or <c>VmHWM</c> (its peak), in bytes.</summary>
    internal static long Current(string key)
    {
        if (OperatingSystem.IsLinux())
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(key + ":", StringComparison.Ordinal))
                    return long.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
        using var self = Process.GetCurrentProcess();
        return key == "VmHWM" ? self.PeakWorkingSet64 : self.WorkingSet64;
    }

    private static string Mb(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:F1} MiB");
}

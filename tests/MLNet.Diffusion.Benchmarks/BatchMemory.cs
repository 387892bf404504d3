using MLNet.Diffusion.ModelBuilder.Demo;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// <c>batch-memory [--rows 1000,1000000] [--cli PATH]</c>: the peak working set of the <c>mlnet-diffusion batch</c>
/// process (the built tool, run as a child) over tables of growing length, to show whether memory grows with the
/// number of rows. Two cases per length, each at 1 step on the demo model: <b>resumed</b>, a manifest holding every row
/// but the last 16 (its lines point at one existing file, which is all a manifest line needs), so the run reads the
/// whole table and manifest and generates 16 images; and <b>fresh</b>, no manifest, the run stopped (killed) once 16
/// rows are in its manifest, so every row is pending. The peak is Linux's <c>VmHWM</c> of the child, read every 20 ms
/// while it runs (elsewhere <see cref="Process.PeakWorkingSet64"/>). <c>--cli</c> measures another build of the tool
/// (for example the one before a change).
/// </summary>
public static class BatchMemory
{
    private const int Generated = 16;

    /// <summary>Runs the cases and prints one Markdown table.</summary>
    public static int Run(string[] args)
    {
        int[] lengths = Option(args, "--rows") is { } list
            ? list.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray()
            : [1_000, 1_000_000];
        string cli = Option(args, "--cli") ?? DefaultCli();
        if (!File.Exists(cli)) throw new FileNotFoundException($"The tool's build '{cli}' does not exist; build src/MLNet.Diffusion.Cli in the same configuration, or pass --cli PATH.");
        string model = ModelFolders.Demo;
        Console.WriteLine($"Tool: {cli}");
        Console.WriteLine();
        Console.WriteLine("| rows | case | table | manifest at start | peak working set of `batch` | wall |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
        foreach (int rows in lengths)
        {
            foreach (bool resumed in new[] { true, false })
            {
                var dir = Directory.CreateTempSubdirectory("mlnd-batch-memory-").FullName;
                try
                {
                    Measure(cli, model, dir, rows, resumed);
                }
                finally
                {
                    Directory.Delete(dir, recursive: true);
                }
            }
        }
        return 0;
    }

    private static void Measure(string cli, string model, string dir, int rows, bool resumed)
    {
        var table = Path.Combine(dir, "prompts.csv");
        var outDir = Path.Combine(dir, "out");
        WriteTable(table, rows);
        long manifestBytes = resumed ? WriteManifest(outDir, rows - Generated) : 0;

        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { cli, "batch", table, "--model", model, "--out", outDir, "--steps", "1", "--batch-size", "4", "--seed", "1" })
            start.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var child = Process.Start(start)!;
        var stderr = new StringBuilder();
        child.OutputDataReceived += (_, _) => { };
        child.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        long peak = 0;
        string outcome = "";
        while (!child.HasExited)
        {
            peak = Math.Max(peak, PeakOf(child));
            if (!resumed && ManifestLines(outDir) >= Generated)
            {
                peak = Math.Max(peak, PeakOf(child));
                child.Kill(entireProcessTree: true);
                outcome = $", killed after {Generated} images";
                break;
            }
            Thread.Sleep(20);
        }
        child.WaitForExit();
        if (outcome.Length == 0 && child.ExitCode != 0) outcome = $", exit {child.ExitCode}: {stderr.ToString().Trim()}";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {rows:N0} | {(resumed ? $"resumed, {rows - Generated:N0} done" : "fresh")}{outcome} | {Mb(new FileInfo(table).Length)} | {Mb(manifestBytes)} | {Mb(peak)} | {clock.Elapsed.TotalSeconds:F1} s |"));
    }

    /// <summary>Prompts of about 50 characters and a notes column, as a hand-made prompt table has.</summary>
    private static void WriteTable(string path, int rows)
    {
        string[] colors = ["red", "blue", "green", "yellow"], shapes = ["circle", "square", "triangle", "star"];
        using var writer = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 16);
        writer.Write("id,prompt,notes\n");
        for (int i = 0; i < rows; i++)
            writer.Write(string.Create(CultureInfo.InvariantCulture, $"{i},\"a {colors[i % 4]} {shapes[i / 4 % 4]} on a white background, number {i}\",note {i}\n"));
    }

    /// <summary>A manifest whose rows 0 … done − 1 are finished, as the tool writes it (all lines name one existing image).</summary>
    private static long WriteManifest(string outDir, int done)
    {
        Directory.CreateDirectory(outDir);
        File.WriteAllBytes(Path.Combine(outDir, "done.png"), []);
        string[] colors = ["red", "blue", "green", "yellow"], shapes = ["circle", "square", "triangle", "star"];
        var path = Path.Combine(outDir, "manifest.csv");
        using (var writer = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 16))
        {
            writer.Write("row,prompt,negative_prompt,seed,settings,file,seconds\n");
            for (int i = 0; i < done; i++)
                writer.Write(string.Create(CultureInfo.InvariantCulture,
                    $"{i},\"a {colors[i % 4]} {shapes[i / 4 % 4]} on a white background, number {i}\",,{1 + i},model=demo size={DemoDataset.ImageSize}x{DemoDataset.ImageSize} steps=1 guidance=7.5 scheduler=EulerDiscreteScheduler,done.png,0.010\n"));
        }
        return new FileInfo(path).Length;
    }

    private static int ManifestLines(string outDir)
    {
        try
        {
            using var stream = new FileStream(Path.Combine(outDir, "manifest.csv"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            int lines = 0, b;
            while ((b = stream.ReadByte()) >= 0) if (b == '\n') lines++;
            return lines - 1;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>The child's peak working set so far.</summary>
    private static long PeakOf(Process child)
    {
        try
        {
            if (OperatingSystem.IsLinux())
            {
                foreach (var line in File.ReadLines($"/proc/{child.Id}/status"))
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                        return long.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
                return 0;
            }
            child.Refresh();
            return child.PeakWorkingSet64;
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or UnauthorizedAccessException)
        {
            return 0; // the child has just exited
        }
    }

    /// <summary>The tool built beside this benchmark: src/MLNet.Diffusion.Cli/bin/CONFIG/TFM/MLNet.Diffusion.Cli.dll.</summary>
    private static string DefaultCli()
    {
        var here = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string tfm = here.Name, configuration = here.Parent!.Name;
        for (var d = here; d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "MLNet.Diffusion.sln")))
                return Path.Combine(d.FullName, "src", "MLNet.Diffusion.Cli", "bin", configuration, tfm, "MLNet.Diffusion.Cli.dll");
        return Path.Combine(AppContext.BaseDirectory, "MLNet.Diffusion.Cli.dll");
    }

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static string Mb(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:F1} MiB");
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using MLNet.Diffusion.Batch;
using MLNet.Diffusion.Cli.Csv;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Tests.TestModels;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.Cli;

/// <summary><c>batch</c>: an image per row, a manifest, and resuming after cancellation or a killed process.</summary>
public class CliBatchTests(ITestOutputHelper output)
{
    private const int Rows = 20;

    [Fact]
    public void TwentyRowsGiveTwentyImagesAndATwentyRowManifest()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = WriteTable(dir, Rows);
        var result = CliRun.Ok("batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2", "--batch-size", "4", "--seed", "100");

        Assert.Equal(Rows, PngFiles(dir["out"]).Length);
        var manifest = ReadManifest(dir["out"]);
        Assert.Equal(Rows, manifest.Count);
        Assert.Equal(Enumerable.Range(0, Rows), manifest.Select(m => m.Row).Order());
        foreach (var entry in manifest)
        {
            Assert.Equal(Prompt(entry.Row), entry.Prompt);
            Assert.Equal(100 + entry.Row, entry.Seed); // no seed column: --seed + row
            Assert.True(File.Exists(Path.Combine(dir["out"], entry.File)));
            Assert.Contains("steps=2", entry.Settings);
            Assert.True(entry.Seconds >= 0);
        }
        // A row's seconds are its batch's time shared among its rows, written rounded: a fast row may read 0.
        Assert.True(manifest.Sum(m => m.Seconds) > 0, "no row recorded any time");
        Assert.Contains("20 image(s)", result.Out);

        // A rerun has nothing to do and changes nothing.
        var before = Snapshot(dir["out"]);
        var again = CliRun.Ok("batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2", "--seed", "100");
        Assert.Contains("are done", again.Out);
        Assert.Equal(before, Snapshot(dir["out"]));
    }

    [Fact]
    public void QuotedFieldsWithCommasQuotesAndLineBreaksAndASeedColumnAreRead()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = dir["prompts.tsv"];
        File.WriteAllText(table, "id\ttext\tavoid\tseed\r\n"
            + "a\t\"a red circle, small\"\t\t7\r\n"
            + "b\t\"a \"\"blue\"\" square\nin a corner\"\tred\t\r\n"
            + "\r\n"
            + "c\ta green\ttriangle\t-3\r\n");
        CliRun.Ok("batch", table, "--prompt-column", "text", "--negative-column", "avoid", "--seed-column", "seed", "--seed", "50",
            "--model", model.Path, "--out", dir["out"], "--steps", "2");
        var manifest = ReadManifest(dir["out"]).OrderBy(m => m.Row).ToArray();
        Assert.Equal(["a red circle, small", "a \"blue\" square\nin a corner", "a green"], manifest.Select(m => m.Prompt));
        Assert.Equal(["", "red", "triangle"], manifest.Select(m => m.NegativePrompt));
        Assert.Equal([7L, 51L, -3L], manifest.Select(m => m.Seed)); // row 1's empty seed cell: --seed + row
        Assert.Equal(3, PngFiles(dir["out"]).Length);
    }

    [Fact]
    public void LinesThatMLNetTakesForCommentsAreReportedNotLostSilently()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = dir["prompts.csv"];
        File.WriteAllText(table, "prompt\na red circle\n// a line ML.NET's loader skips\na blue square\n");
        var result = CliRun.Run("batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2");
        Assert.True(result.ExitCode == 0, result.ToString());
        var warning = Assert.Single(result.ErrLines);
        Assert.StartsWith("warning: ", warning);
        Assert.Contains("1 line(s) starting with // (the first is line 3) are comments", warning);
        Assert.Equal(["a red circle", "a blue square"], ReadManifest(dir["out"]).OrderBy(m => m.Row).Select(m => m.Prompt));
    }

    [Fact]
    public void AMissingColumnIsOneLineNamingTheColumnsThatExist()
    {
        using var dir = new TempDir();
        var table = WriteTable(dir, 2);
        var result = CliRun.Run("batch", table, "--prompt-column", "caption", "--model", dir.Path);
        Assert.Equal(2, result.ExitCode);
        var line = Assert.Single(result.ErrLines);
        Assert.Contains("'caption'", line);
        Assert.Contains("'id', 'prompt', 'notes'", line);
    }

    [Fact]
    public void CancelledAfterSomeRowsThenRerunFinishesWithoutRedoingFinishedRows()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = WriteTable(dir, Rows);
        string[] args = ["batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2", "--batch-size", "2"];
        using var cancel = new CancellationTokenSource();
        int written = 0;
        var first = CliRun.Run(args, cancel.Token, null, _ =>
        {
            if (++written == 5) cancel.Cancel(); // Ctrl+C in the middle of the third batch's writes
        });
        Assert.True(first.ExitCode == 130, first.ToString());
        Assert.Contains("Run the same command again", first.Err);

        var manifest = ReadManifest(dir["out"]);
        // The batch being written when Ctrl+C came is finished (its images are made); nothing after it starts.
        Assert.Equal(6, manifest.Count);
        Assert.Equal(6, PngFiles(dir["out"]).Length);
        Assert.Empty(TemporaryFiles(dir["out"]));
        var before = Snapshot(dir["out"]);

        var second = CliRun.Run(args, CancellationToken.None, null);
        Assert.True(second.ExitCode == 0, second.ToString());
        Assert.Contains("6 already done", second.Out);
        AssertComplete(dir["out"], Rows);
        AssertUnchanged(before, Snapshot(dir["out"]));
    }

    [Fact]
    public void ASecondRunIntoTheSameFolderIsRefusedWhileOneIsWriting()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = WriteTable(dir, 4);
        string[] args = ["batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2"];
        CliResult? second = null;
        var first = CliRun.Run(args, CancellationToken.None, null, _ => second ??= CliRun.Run(args));
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.NotNull(second);
        Assert.Equal(2, second.ExitCode);
        Assert.Contains("Another batch run", Assert.Single(second.ErrLines));
        AssertComplete(dir["out"], 4);
        Assert.False(File.Exists(Path.Combine(dir["out"], OutputFolderLock.FileName)), "the lock file goes when the run ends");
    }

    /// <summary>
    /// Issue 12, item 2: refused second runs used to delete the running batch's in-flight temporary file (their clean-up
    /// ran before the lock), killing it with "Could not find file …partial.png". Refused runs start over and over on
    /// three threads for the whole of a batch; the batch ends with every row once, and every refused run exits 2 with
    /// the one-line refusal.
    /// </summary>
    [Fact]
    public void RefusedSecondRunsDuringABatchLeaveItsFilesAlone()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        const int rows = 24;
        var table = WriteTable(dir, rows);
        // 256x256 images: the PNG write, when the temporary file exists, is a good part of each row's time.
        string[] args = ["batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2", "--size", "256x256", "--batch-size", "1"];
        var refused = new System.Collections.Concurrent.ConcurrentBag<CliResult>();
        using var started = new ManualResetEventSlim();
        using var stop = new CancellationTokenSource();
        using var stopped = new CountdownEvent(3);
        var attackers = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            started.Wait();
            while (!stop.IsCancellationRequested) refused.Add(CliRun.Run(args));
            stopped.Signal();
        })).ToArray();
        foreach (var attacker in attackers) attacker.Start();
        int written = 0;
        var first = CliRun.Run(args, CancellationToken.None, null, _ =>
        {
            started.Set();
            if (++written < rows) return;
            // The last image is written and the run still holds the folder: let the refused runs in flight end first.
            stop.Cancel();
            stopped.Wait();
        });
        stop.Cancel();
        foreach (var attacker in attackers) attacker.Join();

        Assert.True(first.ExitCode == 0, first.ToString());
        AssertComplete(dir["out"], rows);
        output.WriteLine($"{refused.Count} refused runs");
        Assert.True(refused.Count >= 6, $"only {refused.Count} refused runs happened during the batch");
        Assert.All(refused, r =>
        {
            Assert.True(r.ExitCode == 2, r.ToString());
            Assert.StartsWith("error: Another batch run is writing to", Assert.Single(r.ErrLines));
        });
        Assert.False(File.Exists(Path.Combine(dir["out"], OutputFolderLock.FileName)), "the lock file goes when the run ends");
    }

    /// <summary>
    /// An I/O failure in the middle of a run (here the output folder is replaced by a file after the third image) is
    /// its own exit code, <see cref="MLNet.Diffusion.Cli.Program.IoError"/>, with one line naming the file; it used to be
    /// reported as a usage error or a crash.
    /// </summary>
    [Fact]
    public void AnOutputFolderThatFailsDuringARunIsTheIoErrorCodeWithOneLine()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = WriteTable(dir, 8);
        var outDir = dir["out"];
        int written = 0;
        var result = CliRun.Run(["batch", table, "--model", model.Path, "--out", outDir, "--steps", "2", "--batch-size", "1"], CancellationToken.None, null, _ =>
        {
            if (++written != 3) return;
            Directory.Move(outDir, dir["moved"]);
            File.WriteAllText(outDir, "not a folder");
        });
        Assert.True(result.ExitCode == MLNet.Diffusion.Cli.Program.IoError, result.ToString());
        var line = Assert.Single(result.ErrLines);
        Assert.StartsWith($"error: Could not write '{Path.Combine(outDir, "00003-")}", line);
        Assert.Contains("run the same command again", line);
        Assert.Equal(3, ReadManifest(dir["moved"]).Count);
    }

    /// <summary>
    /// A rerun warns about finished rows whose prompt, seed or settings are no longer the table's (the manifest keeps a
    /// fingerprint per finished row, not its line); rows run again are not counted.
    /// </summary>
    [Fact]
    public void ARerunCountsTheFinishedRowsWhosePromptOrSettingsChanged()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = WriteTable(dir, 5);
        string[] args = ["batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2"];
        CliRun.Ok(args);
        var manifest = ReadManifest(dir["out"]);
        File.Delete(Path.Combine(dir["out"], manifest.Single(m => m.Row == 4).File)); // row 4 runs again
        File.WriteAllText(table, File.ReadAllText(table).Replace(Prompt(1), "a changed prompt", StringComparison.Ordinal).Replace(Prompt(4), "another", StringComparison.Ordinal));

        var same = CliRun.Run(args);
        Assert.True(same.ExitCode == 0, same.ToString());
        Assert.StartsWith("warning: 1 finished row(s)", Assert.Single(same.ErrLines));

        File.Delete(Path.Combine(dir["out"], manifest.Single(m => m.Row == 0).File));
        var otherSteps = CliRun.Run([.. args[..^1], "3"]);
        Assert.True(otherSteps.ExitCode == 0, otherSteps.ToString());
        Assert.StartsWith("warning: 4 finished row(s)", Assert.Single(otherSteps.ErrLines)); // rows 1-4; row 0 is made again
    }

    /// <summary>
    /// Issue 12: prompts that a spreadsheet would run as formulas (OWASP's CSV-injection list: =, +, -, @, tab, carriage
    /// return) are written to manifest.csv behind a single quote; numbers (a negative seed) are not; the manifest still
    /// reads back exactly, so a rerun finds the rows done and made from the same prompts.
    /// </summary>
    [Fact]
    public void FormulaPromptsAreNeutralisedInTheManifestAndStillResume()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        string[] prompts = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-3+4", "@SUM(A1)", "\tindented", "\rafter a return", "'=already quoted", "'plain quote", "a red circle"];
        var table = dir["prompts.csv"];
        File.WriteAllText(table, "prompt,seed\n" + string.Concat(prompts.Select((p, i) => CsvWriter.FormatRecord([p, i == 0 ? "-5" : ""]))));
        string[] args = ["batch", table, "--seed-column", "seed", "--model", model.Path, "--out", dir["out"], "--steps", "2"];
        CliRun.Ok(args);

        using (var reader = new StreamReader(Path.Combine(dir["out"], Manifest.FileName)))
        {
            var raw = CsvReader.Read(reader, ',').Skip(1).OrderBy(r => int.Parse(r.Fields[0], CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(["'=HYPERLINK(\"http://x\",\"y\")", "'+1+2", "'-3+4", "'@SUM(A1)", "'\tindented", "'\rafter a return", "''=already quoted", "'plain quote", "a red circle"],
                raw.Select(r => r.Fields[1]));
            Assert.Equal("-5", raw[0].Fields[3]);
            Assert.All(raw, r => Assert.DoesNotMatch("^[=+\\-@\t\r]", r.Fields[4] + r.Fields[5]));
        }
        var manifest = ReadManifest(dir["out"]).OrderBy(m => m.Row).ToArray();
        Assert.Equal(prompts, manifest.Select(m => m.Prompt));
        Assert.Equal(-5, manifest[0].Seed);

        File.Delete(Path.Combine(dir["out"], manifest[3].File));
        var rerun = CliRun.Run(args);
        Assert.True(rerun.ExitCode == 0, rerun.ToString());
        Assert.Empty(rerun.ErrLines); // no "made with other prompts" warning: every prompt read back as written
        Assert.Contains($"{prompts.Length - 1} already done", rerun.Out);
        Assert.Contains("1 image(s)", rerun.Out);
        AssertComplete(dir["out"], prompts.Length);
    }

    [Fact]
    public void ARerunRepairsWhatACrashCanLeave()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = WriteTable(dir, 8);
        string[] args = ["batch", table, "--model", model.Path, "--out", dir["out"], "--steps", "2"];
        CliRun.Ok(args);
        var manifestPath = Path.Combine(dir["out"], Manifest.FileName);
        var lines = File.ReadAllLines(manifestPath);
        // A crash can leave: a last line cut off mid-write, an image renamed into place before its line was written,
        // a temporary file that never got renamed. A user can delete an image.
        var row6 = ReadManifest(dir["out"]).Single(m => m.Row == 6);
        var row7 = ReadManifest(dir["out"]).Single(m => m.Row == 7);
        File.WriteAllText(manifestPath, string.Join("\n", lines.Take(7)) + "\n" + lines[7][..10]); // header + rows 0–5, row 6 cut off, row 7 gone
        File.WriteAllBytes(Path.Combine(dir["out"], $".{row7.File}.0123456789abcdef{AtomicImageFile.TemporarySuffix}"), [0x89, 0x50]);
        var row2 = ReadManifest(dir["out"]).Single(m => m.Row == 2);
        File.Delete(Path.Combine(dir["out"], row2.File));
        var kept = Snapshot(dir["out"]).Where(kv => kv.Key != row6.File && kv.Key != row7.File).ToDictionary();

        var rerun = CliRun.Ok(args);
        Assert.Contains("Removed 1 temporary file", rerun.Out);
        Assert.Contains("Dropped 2 manifest line(s)", rerun.Out); // the cut-off line and row 2's
        AssertComplete(dir["out"], 8);
        AssertUnchanged(kept, Snapshot(dir["out"]));
    }

    /// <summary>
    /// The real thing: the built tool runs as a child process and is killed (no chance to clean up) once a few rows are in the
    /// manifest; a rerun finishes the table, every row is in the manifest once, and the finished images are untouched.
    /// </summary>
    [Fact]
    public void KilledProcessThenRerunFinishesWithEveryRowOnceAndNoPartialFiles()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        var table = WriteTable(dir, Rows);
        var outDir = dir["out"];
        // Large latents and many steps make each row take long enough (~0.1–0.3 s) to be killed part-way.
        string[] args = ["batch", table, "--model", model.Path, "--out", outDir, "--steps", "60", "--size", "256x256", "--batch-size", "1"];

        var clock = Stopwatch.StartNew();
        using (var child = StartCli(args))
        {
            var seen = new List<string>();
            int count;
            while ((count = ManifestLineCount(outDir)) < 4 && !child.HasExited && clock.Elapsed < TimeSpan.FromMinutes(2))
            {
                if (seen.Count == 0 || !seen[^1].StartsWith($"{count}@", StringComparison.Ordinal)) seen.Add($"{count}@{clock.Elapsed.TotalSeconds:F2}");
                Thread.Sleep(5);
            }
            output.WriteLine($"seen {string.Join(" ", seen)}; {count} at {clock.Elapsed.TotalSeconds:F2}");
            if (child.HasExited) Assert.Fail($"the tool ended before it could be killed (exit {child.ExitCode}): {child.StandardError.ReadToEnd()}");
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
        }
        output.WriteLine($"killed after {clock.Elapsed.TotalSeconds:F2} s");
        var finished = ReadManifest(outDir);
        Assert.InRange(finished.Count, 4, Rows - 1);
        var before = Snapshot(outDir).Where(kv => finished.Any(m => m.File == kv.Key)).ToDictionary();

        var rerun = RunCliToEnd(args);
        Assert.True(rerun.ExitCode == 0, rerun.ToString());
        AssertComplete(outDir, Rows);
        AssertUnchanged(before, Snapshot(outDir));
        Assert.False(File.Exists(Path.Combine(outDir, OutputFolderLock.FileName)), "the rerun removes the killed run's lock file");
        output.WriteLine(rerun.Out);
    }

    /// <summary>
    /// Issue 8's "killed at random moments": the child process is killed repeatedly, each time at a random delay
    /// (seeded, so a failure reproduces) after its first finished row, which falls in a UNet batch, in a PNG write or
    /// between an image and its manifest line; after the kills a rerun completes the table with every row once and no
    /// partial files.
    /// </summary>
    [Fact]
    public void RepeatedKillsAtRandomMomentsStillEndWithEveryRowOnce()
    {
        using var model = TestModelFactory.CreateTemp();
        using var dir = new TempDir();
        const int rows = 2 * Rows;
        var table = WriteTable(dir, rows);
        var outDir = dir["out"];
        string[] args = ["batch", table, "--model", model.Path, "--out", outDir, "--steps", "100", "--size", "256x256", "--batch-size", "1"];
        var random = new Random(20261129);
        int kills = 0;
        for (int cycle = 0; cycle < 4 && (ManifestLineCount(outDir) < rows); cycle++)
        {
            int before = ManifestLineCount(outDir);
            using var child = StartCli(args);
            // Wait for this run to finish one row (start-up time varies with load) and time the next, then kill it at
            // a random moment within the following two rows' time (a row's time varies with load and thread settings).
            var clock = Stopwatch.StartNew();
            while (ManifestLineCount(outDir) <= before && !child.HasExited && clock.Elapsed < TimeSpan.FromMinutes(2)) Thread.Sleep(2);
            var row = Stopwatch.StartNew();
            while (ManifestLineCount(outDir) <= before + 1 && !child.HasExited && clock.Elapsed < TimeSpan.FromMinutes(2)) Thread.Sleep(2);
            Thread.Sleep(TimeSpan.FromMilliseconds(random.NextDouble() * 2 * row.Elapsed.TotalMilliseconds));
            if (child.HasExited) { child.WaitForExit(); continue; }
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
            kills++;
            output.WriteLine($"cycle {cycle}: killed with {ManifestLineCount(outDir)} manifest line(s)");
        }
        Assert.True(kills >= 3, $"only {kills} kills happened; the table finished too fast to test");
        Assert.True(ManifestLineCount(outDir) >= kills, "each killed run finished at least one row before its kill");
        var rerun = RunCliToEnd(args);
        Assert.True(rerun.ExitCode == 0, rerun.ToString());
        AssertComplete(outDir, rows);
        Assert.Empty(TemporaryFiles(outDir));
        Assert.False(File.Exists(Path.Combine(outDir, OutputFolderLock.FileName)), "the rerun removes the killed run's lock file");
    }

    // ---- helpers -------------------------------------------------------------------------------------------------

    private static string Prompt(int row) => $"a {(row % 2 == 0 ? "red" : "blue")} shape, number {row}";

    private static string WriteTable(TempDir dir, int rows)
    {
        var path = dir["prompts.csv"];
        var s = new StringBuilder("id,prompt,notes\n");
        for (int i = 0; i < rows; i++) s.Append(CultureInfo.InvariantCulture, $"{i},\"{Prompt(i)}\",note {i}\n");
        File.WriteAllText(path, s.ToString());
        return path;
    }

    private static string[] PngFiles(string dir) =>
        Directory.GetFiles(dir, "*.png").Where(f => !AtomicImageFile.IsTemporary(Path.GetFileName(f))).ToArray();

    private static string[] TemporaryFiles(string dir) =>
        Directory.GetFiles(dir).Where(f => Path.GetFileName(f).StartsWith('.') || f.EndsWith(".tmp", StringComparison.Ordinal)).ToArray();

    private static List<ManifestEntry> ReadManifest(string dir)
    {
        using var reader = new StreamReader(Path.Combine(dir, Manifest.FileName));
        var records = CsvReader.Read(reader, ',', allowTruncated: true).ToList();
        Assert.Equal(Manifest.Columns, records[0].Fields);
        return records.Skip(1).Where(r => r.Terminated).Select(r => ManifestEntry.Parse(r) ?? throw new InvalidDataException($"manifest line {r.Line} is malformed")).ToList();
    }

    private static int ManifestLineCount(string dir)
    {
        try
        {
            using var stream = new FileStream(Path.Combine(dir, Manifest.FileName), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream);
            return Math.Max(0, reader.ReadToEnd().Count(c => c == '\n') - 1);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>Every row once in the manifest, its file there, one PNG per row, no temporary files.</summary>
    private static void AssertComplete(string dir, int rows)
    {
        var manifest = ReadManifest(dir);
        Assert.Equal(Enumerable.Range(0, rows), manifest.Select(m => m.Row).Order());
        Assert.Equal(rows, manifest.Select(m => m.File).Distinct().Count());
        Assert.All(manifest, m => Assert.True(File.Exists(Path.Combine(dir, m.File)), m.File));
        Assert.Equal(rows, PngFiles(dir).Length);
        Assert.Empty(TemporaryFiles(dir));
        var text = File.ReadAllText(Path.Combine(dir, Manifest.FileName));
        Assert.EndsWith("\n", text);
    }

    private static Dictionary<string, (DateTime Written, string Hash)> Snapshot(string dir) =>
        PngFiles(dir).ToDictionary(f => Path.GetFileName(f), f => (File.GetLastWriteTimeUtc(f), Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))));

    private static void AssertUnchanged(Dictionary<string, (DateTime Written, string Hash)> before, Dictionary<string, (DateTime Written, string Hash)> after)
    {
        Assert.NotEmpty(before);
        foreach (var (file, state) in before)
        {
            Assert.True(after.TryGetValue(file, out var now), $"{file} disappeared");
            Assert.True(state == now, $"{file} was rewritten: {state} → {now}");
        }
    }

    /// <summary>The tool's own build output (src/MLNet.Diffusion.Cli/bin/CONFIG/TFM), else the copy beside the tests.</summary>
    private static string CliDll()
    {
        var testDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string tfm = testDir.Name, configuration = testDir.Parent!.Name;
        for (var d = testDir; d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "src", "MLNet.Diffusion.Cli", "bin", configuration, tfm, "MLNet.Diffusion.Cli.dll");
            if (File.Exists(Path.Combine(d.FullName, "MLNet.Diffusion.sln")) && File.Exists(candidate)) return candidate;
        }
        return Path.Combine(AppContext.BaseDirectory, "MLNet.Diffusion.Cli.dll");
    }

    private static Process StartCli(string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(CliDll());
        foreach (var a in args) start.ArgumentList.Add(a);
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { }; // drain stdout so the child never blocks on a full pipe
        process.BeginOutputReadLine();
        return process;
    }

    private static CliResult RunCliToEnd(string[] args)
    {
        using var process = StartCliCapturing(args, out var stdout, out var stderr);
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), "the rerun did not finish in 3 minutes");
        process.WaitForExit();
        return new CliResult(process.ExitCode, stdout.ToString(), stderr.ToString());
    }

    private static Process StartCliCapturing(string[] args, out StringBuilder stdout, out StringBuilder stderr)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(CliDll());
        foreach (var a in args) start.ArgumentList.Add(a);
        var process = Process.Start(start)!;
        var o = new StringBuilder();
        var e = new StringBuilder();
        process.OutputDataReceived += (_, d) => { if (d.Data is not null) lock (o) o.AppendLine(d.Data); };
        process.ErrorDataReceived += (_, d) => { if (d.Data is not null) lock (e) e.AppendLine(d.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        stdout = o;
        stderr = e;
        return process;
    }
}

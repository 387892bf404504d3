using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MLNet.Diffusion.Orleans;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// <c>cluster-overhead [--rows 160] [--steps 10] [--batch-size 8] [--runs 3]</c>: the same table three ways, demo model,
/// interleaved, each run into a fresh output folder: <c>mlnet-diffusion batch</c> in this process (today's local path: each
/// image encoded and written, flushed, before the next); the engine in this process with the cluster job's own folder
/// writer (the same engine calls, PNG encoding and group-commit writes, no Orleans: the path the cluster's overhead is
/// measured against); and <c>batch --cluster localhost:PORT</c> to a one-silo localhost cluster in this process (one CPU
/// worker; the client reaches it over loopback TCP and its run includes connecting). Prints images/s of each run, their
/// medians and the cluster path's overhead in percent of each in-process path.
/// </summary>
internal static class ClusterOverhead
{
    public static int Run(string[] args)
    {
        int rows = Option(args, "--rows", 160), steps = Option(args, "--steps", 10), batch = Option(args, "--batch-size", 8), runs = Option(args, "--runs", 3);
        return RunAsync(rows, steps, batch, runs).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(int rows, int steps, int batchSize, int runs)
    {
        DemoModel.EnsureBuilt();
        var root = Directory.CreateTempSubdirectory("mlnd-cluster-overhead-");
        try
        {
            var table = Path.Combine(root.FullName, "prompts.csv");
            string[] prompts = ["a red circle", "a blue square", "a green triangle", "a yellow star", "a purple circle on white"];
            File.WriteAllLines(table, ["prompt", .. Enumerable.Range(0, rows).Select(i => $"\"{prompts[i % prompts.Length]}, {i.ToString(CultureInfo.InvariantCulture)}\"")]);
            var warmTable = Path.Combine(root.FullName, "warm.csv");
            File.WriteAllLines(warmTable, ["prompt", .. Enumerable.Range(0, 2 * batchSize).Select(i => $"\"{prompts[i % prompts.Length]}\"")]);
            int gateway = FreePort();
            var worker = new WorkerHostOptions { SiloPort = FreePort(), GatewayPort = gateway, LogLevel = Microsoft.Extensions.Logging.LogLevel.Error };
            using var silo = WorkerHost.Create(worker);
            await silo.StartAsync();
            try
            {
                string[] common = ["batch", table, "--steps", Text(steps), "--batch-size", Text(batchSize), "--seed", "7"];
                string[] cluster = ["--cluster", $"localhost:{Text(gateway)}"];
                // Warm-up: the model loaded in this process (the local path) and in the worker grain, the engine's first calls.
                string[] warm = ["batch", warmTable, .. common[2..]];
                Time([.. warm, "--out", Path.Combine(root.FullName, "warm-local")]);
                Time([.. warm, .. cluster, "--out", Path.Combine(root.FullName, "warm-cluster")]);
                // Fixed costs: a table whose rows are all done already (the client connects, the job reads the manifest, ends).
                Console.WriteLine($"a run with nothing to do: in-process {Time([.. warm, "--out", Path.Combine(root.FullName, "warm-local")]):F2} s, " +
                    $"cluster {Time([.. warm, .. cluster, "--out", Path.Combine(root.FullName, "warm-cluster")]):F2} s");
                using var pipeline = StableDiffusionPipeline.Load(DemoModel.EnsureBuilt());
                var tableRows = Enumerable.Range(0, rows).Select(i => new GenerationRow { Row = i, Prompt = $"{prompts[i % prompts.Length]}, {Text(i)}", Seed = 7 + i }).ToArray();
                SameWriter(pipeline, tableRows[..Math.Min(rows, 2 * batchSize)], steps, batchSize, Path.Combine(root.FullName, "warm-writer"));
                string[] names = ["batch in-process", "engine + job writer", "batch --cluster"];
                var rates = names.Select(_ => new List<double>()).ToArray();
                for (int round = 0; round < runs; round++)
                {
                    // Interleaved (the order turned each round) so that a slow moment of a shared machine hits every path.
                    for (int k = 0; k < names.Length; k++)
                    {
                        int path = (k + round) % names.Length;
                        var outDir = Path.Combine(root.FullName, $"path{Text(path)}-{Text(round)}");
                        double seconds = path switch
                        {
                            0 => Time([.. common, "--out", outDir]),
                            1 => SameWriter(pipeline, tableRows, steps, batchSize, outDir),
                            _ => Time([.. common, .. cluster, "--out", outDir]),
                        };
                        rates[path].Add(rows / seconds);
                        Console.WriteLine($"round {round + 1}: {names[path],-20} {rows / seconds:F2} images/s");
                    }
                }
                Console.WriteLine($"{rows} rows, {steps} steps, batch size {batchSize}, demo model, {Environment.ProcessorCount} cores; medians: " +
                    string.Join("; ", names.Select((n, i) => $"{n} {Median(rates[i]):F2} images/s ({Join(rates[i])})")));
                Console.WriteLine($"cluster overhead: {(1 - Median(rates[2]) / Median(rates[1])) * 100:F1} % against the engine with the same writer, " +
                    $"{(1 - Median(rates[2]) / Median(rates[0])) * 100:F1} % against batch in-process");
                return 0;
            }
            finally
            {
                await silo.StopAsync();
            }
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    /// <summary>
    /// The cluster worker's work without Orleans: engine calls of <paramref name="batchSize"/> rows, PNG encoding, and the job's
    /// folder writer (group commits off the generating thread); returns the seconds until every row is on disk.
    /// </summary>
    private static double SameWriter(StableDiffusionPipeline pipeline, GenerationRow[] rows, int steps, int batchSize, string outDir)
    {
        var clock = Stopwatch.StartNew();
        using var sink = FolderSink.Open(outDir, rows.Length);
        var options = new GenerationOptions { Steps = steps };
        var settings = new JobSettings { Steps = steps }.Describe(pipeline);
        foreach (var batch in rows.Chunk(batchSize))
        {
            var images = pipeline.Generate([.. batch.Select(r => new ImagePrompt(r.Prompt, r.Seed))], options);
            for (int i = 0; i < batch.Length; i++)
            {
                using var image = images[i];
                sink.Commit(batch[i], PngBytes.Of(image.Image), settings, 0);
            }
        }
        sink.DrainAsync().GetAwaiter().GetResult();
        if (sink.Error is { } error) throw new IOException(error);
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>Runs the tool in this process; returns the seconds it took (it must exit 0: every row made).</summary>
    private static double Time(string[] args)
    {
        var output = new StringWriter();
        var clock = Stopwatch.StartNew();
        int code = MLNet.Diffusion.Cli.Program.Run(args, output, output);
        double seconds = clock.Elapsed.TotalSeconds;
        if (code != 0) throw new InvalidOperationException($"mlnet-diffusion {string.Join(' ', args)} exited {code}: {output}");
        return seconds;
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

    private static string Join(List<double> values) => string.Join(", ", values.Select(v => v.ToString("F2", CultureInfo.InvariantCulture)));

    private static string Text(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static int Option(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        if (i < 0) return fallback;
        if (i + 1 < args.Length && int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out int value) && value > 0) return value;
        throw new ArgumentException($"{name} needs a whole number above 0.");
    }
}

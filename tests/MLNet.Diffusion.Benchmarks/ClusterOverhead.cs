using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MLNet.Diffusion.Orleans;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// <c>cluster-overhead [--rows 160] [--steps 10] [--batch-size 8] [--runs 3]</c>: the same table through
/// <c>mlnet-diffusion batch</c> in this process (the local path) and through <c>batch --cluster localhost:PORT</c> to a
/// one-silo localhost cluster in this process (one CPU worker; the client reaches it over loopback TCP, as a client on
/// the machine would), demo model, interleaved, each run into a fresh output folder. Prints images/s of each run, their
/// medians and the overhead of the cluster path in percent of the local one. Both paths write the same folder format
/// (images written atomically, manifest.csv); the cluster path's run includes connecting the client.
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
                var local = new List<double>();
                var clustered = new List<double>();
                for (int round = 0; round < runs; round++)
                {
                    // Interleaved (and the order swapped each round) so that a slow moment of a shared machine hits both paths.
                    var order = round % 2 == 0 ? new[] { false, true } : [true, false];
                    foreach (bool viaCluster in order)
                    {
                        var outDir = Path.Combine(root.FullName, (viaCluster ? "cluster" : "local") + Text(round));
                        double rate = rows / Time(viaCluster ? [.. common, .. cluster, "--out", outDir] : [.. common, "--out", outDir]);
                        (viaCluster ? clustered : local).Add(rate);
                        Console.WriteLine($"round {round + 1}: {(viaCluster ? "cluster   " : "in-process")} {rate:F2} images/s");
                    }
                }
                double overhead = (1 - Median(clustered) / Median(local)) * 100;
                Console.WriteLine($"{rows} rows, {steps} steps, batch size {batchSize}, demo model, {Environment.ProcessorCount} cores: " +
                    $"in-process median {Median(local):F2} images/s ({Join(local)}); 1-silo localhost cluster median {Median(clustered):F2} images/s ({Join(clustered)}); " +
                    $"overhead {overhead:F1} %");
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

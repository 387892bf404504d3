using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MLNet.Diffusion.Cli;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary><c>mlnet-diffusion worker</c> and <c>mlnet-diffusion batch --cluster</c>, run in-process on free ports.</summary>
public sealed class CliClusterTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Batch_with_cluster_fills_the_folder_through_a_worker_and_a_second_run_finds_every_row_done()
    {
        using var folder = new OutputFolder();
        var table = Path.Combine(folder.Path, "prompts.csv");
        File.WriteAllText(table, "prompt\n" + string.Concat(Enumerable.Range(0, 12).Select(i => $"\"a red circle, {i.ToString(CultureInfo.InvariantCulture)}\"\n")));
        var outDir = Path.Combine(folder.Path, "images");
        int siloPort = FreePort(), gatewayPort = FreePort();
        using var stopWorker = new CancellationTokenSource();
        var workerOut = new StringWriter();
        var worker = Task.Run(() => Program.Run(["worker", "--silo-port", Text(siloPort), "--gateway-port", Text(gatewayPort)], workerOut, workerOut, stopWorker.Token));
        try
        {
            var started = DateTime.UtcNow;
            while (!workerOut.ToString().Contains("Worker silo", StringComparison.Ordinal))
            {
                Assert.False(worker.IsCompleted, "the worker stopped: " + workerOut);
                Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(30), "the worker did not start: " + workerOut);
                await Task.Delay(50);
            }
            string[] batch = ["batch", table, "--cluster", $"localhost:{Text(gatewayPort)}", "--steps", "4", "--batch-size", "4", "--seed", "7", "--out", outDir];

            var (code, text) = Run(batch);
            output.WriteLine(text);
            Assert.Equal(0, code);
            var lines = File.ReadAllLines(Path.Combine(outDir, "manifest.csv"));
            Assert.Equal(13, lines.Length);
            Assert.Equal(12, Directory.GetFiles(outDir, "*.png").Length);

            var (again, secondText) = Run(batch);
            Assert.Equal(0, again);
            Assert.Contains("All 12 rows done", secondText, StringComparison.Ordinal);
            Assert.Equal(lines, File.ReadAllLines(Path.Combine(outDir, "manifest.csv")));

            // The local batch reads the folder the cluster filled as its own: every row done, nothing made again.
            var (local, localText) = Run([.. batch.Where((_, i) => i is not 2 and not 3)]);
            Assert.Equal(0, local);
            Assert.Contains("All 12 rows of prompts.csv are done", localText, StringComparison.Ordinal);
        }
        finally
        {
            await stopWorker.CancelAsync();
            Assert.Equal(0, await worker.WaitAsync(TimeSpan.FromSeconds(60)));
        }
    }

    [Fact]
    public void Batch_refuses_a_cluster_it_cannot_connect_to_by_name()
    {
        var (code, text) = Run(["batch", "missing.csv", "--cluster", "mongodb://somewhere"]);
        Assert.Equal(Program.UsageError, code);
        Assert.Contains("mongodb://somewhere", text, StringComparison.Ordinal);
        Assert.Contains("redis://", text, StringComparison.Ordinal);
        Assert.Contains("adonet:", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("mongodb://db:27017", "not a cluster connection")]
    [InlineData("adonet:Npgsql", "--connection-string")] // no connection string
    [InlineData("adonet:Oracle.DataAccess.Client", "adonet:Npgsql")]
    [InlineData("localhost:30001", "--primary-port")]
    public void Worker_refuses_a_bad_cluster_option_before_it_starts(string cluster, string expected)
    {
        var (code, text) = Run(["worker", "--cluster", cluster], variables: _ => null);
        Assert.Equal(Program.UsageError, code);
        Assert.Contains(expected, text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--connection-string", "Host=db")]
    [InlineData("--cluster-id", "other")]
    [InlineData("--connect-timeout", "5")]
    public void Batch_refuses_a_cluster_option_without_cluster(string option, string value)
    {
        var (code, text) = Run(["batch", "prompts.csv", option, value]);
        Assert.Equal(Program.UsageError, code);
        Assert.Contains($"{option} applies to a cluster, and no --cluster was given", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Worker_refuses_a_primary_port_with_redis_clustering()
    {
        var (code, text) = Run(["worker", "--cluster", "redis://cache1:6379", "--primary-port", "11111"]);
        Assert.Equal(Program.UsageError, code);
        Assert.Contains("--primary-port", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Worker_refuses_an_advertised_address_that_is_not_an_ip_address()
    {
        var (code, text) = Run(["worker", "--cluster", "redis://cache1:6379", "--advertise", "gpu-box-1"]);
        Assert.Equal(Program.UsageError, code);
        Assert.Contains("gpu-box-1", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("redis://127.0.0.1:{0},connectTimeout=1000", null)]
    [InlineData("adonet:Npgsql", "Host=127.0.0.1;Port={0};Timeout=2;Username=orleans;Password=x;Database=orleans")]
    public void Worker_whose_membership_store_does_not_answer_exits_69_within_its_connect_timeout(string cluster, string? connectionString)
    {
        int port = ClosedPort();
        string[] args = ["worker", "--cluster", string.Format(CultureInfo.InvariantCulture, cluster, port), "--silo-port", Text(FreePort()), "--gateway-port", Text(FreePort()), "--connect-timeout", "10"];
        if (connectionString is not null) args = [.. args, "--connection-string", string.Format(CultureInfo.InvariantCulture, connectionString, port)];
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var (code, text) = Run(args);

        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s: {text}");
        Assert.Equal(Program.ClusterUnavailable, code);
        Assert.Contains("Cannot reach cluster", text, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), $"it took {clock.Elapsed.TotalSeconds:F0} s to give up"); // a generous bound over the 10 s timeout
    }

    [Fact]
    public void Batch_whose_cluster_does_not_answer_exits_69_within_its_connect_timeout()
    {
        using var folder = new OutputFolder();
        var table = Path.Combine(folder.Path, "prompts.csv");
        File.WriteAllText(table, "prompt\na red circle\n");
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var (code, text) = Run(["batch", table, "--cluster", $"redis://127.0.0.1:{Text(ClosedPort())},connectTimeout=1000", "--connect-timeout", "5", "--out", Path.Combine(folder.Path, "out")]);

        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s: {text}");
        Assert.Equal(Program.ClusterUnavailable, code);
        Assert.Contains("Redis", text, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), $"it took {clock.Elapsed.TotalSeconds:F0} s to give up");
    }

    [Fact]
    public void The_connection_string_of_an_adonet_cluster_comes_from_the_environment_when_not_on_the_command_line()
    {
        var environment = new CliEnvironment(TextWriter.Null, TextWriter.Null, default,
            name => name == ClusterConnection.ConnectionStringVariable ? "Host=db;Database=orleans" : null);
        var connection = MLNet.Diffusion.Cli.Commands.ClusterArguments.Resolve("adonet:npgsql", null, null, environment);
        Assert.Equal("Npgsql", connection.Invariant);
        Assert.Equal("Host=db;Database=orleans", connection.StoreConnectionString);
    }

    private static (int Code, string Text) Run(string[] args, Func<string, string?>? variables = null)
    {
        var writer = new StringWriter();
        int code = Program.Run(args, new CliEnvironment(writer, writer, default, variables));
        return (code, writer.ToString());
    }

    /// <summary>A loopback port nothing listens on (taken, then given back).</summary>
    private static int ClosedPort() => FreePort();

    private static string Text(int port) => port.ToString(CultureInfo.InvariantCulture);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

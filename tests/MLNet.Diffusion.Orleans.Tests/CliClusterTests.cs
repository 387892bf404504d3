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
        var (code, text) = Run(["batch", "missing.csv", "--cluster", "redis://somewhere"]);
        Assert.Equal(Program.UsageError, code);
        Assert.Contains("redis://somewhere", text, StringComparison.Ordinal);
        Assert.Contains("localhost", text, StringComparison.Ordinal);
    }

    private static (int Code, string Text) Run(string[] args)
    {
        var writer = new StringWriter();
        int code = Program.Run(args, writer, writer);
        return (code, writer.ToString());
    }

    private static string Text(int port) => port.ToString(CultureInfo.InvariantCulture);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// <c>server-load [--requests 200] [--concurrency 16] [--steps 4] [--max-queue 16] [--max-concurrency 1]</c>: the HTTP
/// server on Kestrel at 127.0.0.1 (a free port) over the demo model, loaded by <c>--concurrency</c> clients that send
/// <c>--requests</c> OpenAI <c>/v1/images/generations</c> requests in all (one 256² image each, no retries). Reports
/// the answers by status (anything but 200 and 429 is an error), p50/p99 latency of the 200s, images per second, and
/// the process working set and managed heap before the run (after a warm-up) and after it.
/// </summary>
internal static class ServerLoad
{
    public static int Run(string[] args)
    {
        int requests = Option(args, "--requests", 200), concurrency = Option(args, "--concurrency", 16), steps = Option(args, "--steps", 4);
        int maxQueue = Option(args, "--max-queue", 16), maxConcurrency = Option(args, "--max-concurrency", 1);
        return RunAsync(requests, concurrency, steps, maxQueue, maxConcurrency).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(int requests, int concurrency, int steps, int maxQueue, int maxConcurrency)
    {
        string demo = DemoModel.EnsureBuilt();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddDiffusionServer(o =>
        {
            o.Models["demo"] = demo;
            o.MaxQueueLength = maxQueue;
            o.MaxConcurrency = maxConcurrency;
        });
        await using var app = builder.Build();
        app.MapDiffusionApi();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        using var client = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromMinutes(10) };
        string body = $$"""{"model": "demo", "prompt": "a red circle on a white background", "steps": {{steps}}, "seed": 1}""";

        // Warm-up: the first calls create ONNX Runtime's arenas and the server's first buffers.
        for (int i = 0; i < 3; i++) (await Post(client, body)).Dispose();
        var (workingSetBefore, heapBefore) = Memory();

        var latencies = new List<double>();
        var statuses = new Dictionary<HttpStatusCode, int>();
        int next = 0;
        var wall = Stopwatch.StartNew();
        var clients = Enumerable.Range(0, concurrency).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) <= requests)
            {
                var clock = Stopwatch.StartNew();
                using var response = await Post(client, body);
                await response.Content.ReadAsByteArrayAsync();
                double ms = clock.Elapsed.TotalMilliseconds;
                lock (statuses)
                {
                    statuses[response.StatusCode] = statuses.GetValueOrDefault(response.StatusCode) + 1;
                    if (response.StatusCode == HttpStatusCode.OK) latencies.Add(ms);
                }
            }
        })).ToArray();
        await Task.WhenAll(clients);
        wall.Stop();
        var (workingSetAfter, heapAfter) = Memory();
        await app.StopAsync();

        latencies.Sort();
        int ok = statuses.GetValueOrDefault(HttpStatusCode.OK), tooMany = statuses.GetValueOrDefault(HttpStatusCode.TooManyRequests);
        int errors = statuses.Where(s => s.Key is not (HttpStatusCode.OK or HttpStatusCode.TooManyRequests)).Sum(s => s.Value);
        var c = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(c, $"server-load: {requests} requests, {concurrency} concurrent, demo model 256², {steps} steps, server --max-concurrency {maxConcurrency} --max-queue {maxQueue}, {Environment.ProcessorCount} cores"));
        Console.WriteLine("| 200 | 429 | other | p50 ms | p99 ms | images/s | working set before → after MiB | managed heap before → after MiB |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        Console.WriteLine(string.Create(c, $"| {ok} | {tooMany} | {errors} | {Percentile(latencies, 0.50):F0} | {Percentile(latencies, 0.99):F0} | {ok / wall.Elapsed.TotalSeconds:F2} | {workingSetBefore:F0} → {workingSetAfter:F0} | {heapBefore:F1} → {heapAfter:F1} |"));
        foreach (var (status, count) in statuses.Where(s => s.Key is not (HttpStatusCode.OK or HttpStatusCode.TooManyRequests)))
            Console.WriteLine($"unexpected: {(int)status} × {count}");
        return errors == 0 ? 0 : 1;
    }

    private static Task<HttpResponseMessage> Post(HttpClient client, string body) =>
        client.PostAsync("/v1/images/generations", new StringContent(body, Encoding.UTF8, "application/json"));

    /// <summary>Working set and managed heap (after a full collection), MiB.</summary>
    private static (double WorkingSet, double Heap) Memory()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var process = Process.GetCurrentProcess();
        return (process.WorkingSet64 / 1048576.0, GC.GetTotalMemory(true) / 1048576.0);
    }

    /// <summary>The nearest-rank percentile of sorted values.</summary>
    private static double Percentile(List<double> sorted, double p) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];

    private static int Option(string[] args, string name, int fallback)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? int.Parse(args[at + 1], CultureInfo.InvariantCulture) : fallback;
    }
}

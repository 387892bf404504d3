using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary>
/// Work-item completions per second that one job grain takes (one silo, the test playing 8 devices of one silo's agent,
/// one-row items with one-byte "images", each committed to the folder), three runs each: handed in one call per item
/// (<see cref="IGenerationJobGrain.CompleteAndLease"/>) and grouped by the silo's <see cref="CompletionReporter"/>. The grain's
/// figure is items over the time until the last item was handed in; the folder's figure is rows over the time until every
/// row is on disk (each image written to a temporary file, flushed to disk, renamed; manifest flushed per group). A
/// measurement, not part of the regular run: set MLND_ORLEANS_BENCH=1 to run it.
/// </summary>
public sealed class JobGrainThroughputBenchmark(ITestOutputHelper output)
{
    private const int Items = 10_000, Devices = 8;

    [SkippableFact]
    public async Task Job_grain_completions_per_second()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("MLND_ORLEANS_BENCH") == "1", "a measurement: set MLND_ORLEANS_BENCH=1 to run it");
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        await Run(cluster, "warm-up", grouped: true, 2000);
        var single = new List<(double Grain, double Disk)>();
        var grouped = new List<(double Grain, double Disk)>();
        for (int round = 0; round < 3; round++) // alternated, so that a slow moment of a shared machine hits both
        {
            single.Add(await Run(cluster, "single" + round, grouped: false, Items));
            grouped.Add(await Run(cluster, "grouped" + round, grouped: true, Items));
        }
        Report("one call per item", single);
        Report($"grouped by the silo's reporter ({Devices} devices)", grouped);
    }

    private void Report(string mode, List<(double Grain, double Disk)> runs) => output.WriteLine(
        $"{mode}: job grain {string.Join(", ", runs.Select(r => r.Grain.ToString("F0", CultureInfo.InvariantCulture)))} completions/s (median {Median(runs.Select(r => r.Grain)):F0}); " +
        $"rows on disk {string.Join(", ", runs.Select(r => r.Disk.ToString("F0", CultureInfo.InvariantCulture)))}/s (median {Median(runs.Select(r => r.Disk)):F0})");

    private static double Median(IEnumerable<double> values) => values.Order().ElementAt(values.Count() / 2);

    private static async Task<(double Grain, double Disk)> Run(global::Orleans.TestingHost.TestCluster cluster, string id, bool grouped, int items)
    {
        using var folder = new OutputFolder();
        var silo = cluster.Primary!.SiloAddress;
        var spec = new JobSpec { Rows = DemoRows.Make(items), Settings = DemoRows.Settings, BatchSize = 1, OutputDirectory = folder.Path };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>(id);
        await job.Start(spec);
        var reporter = new CompletionReporter(cluster.GrainFactory, silo);
        var clock = Stopwatch.StartNew();
        var made = await Task.WhenAll(Enumerable.Range(0, Devices).Select(async w =>
        {
            var name = "d" + w.ToString(CultureInfo.InvariantCulture);
            if (grouped) return await JobGrainTests.Device(job, reporter, name, silo);
            var item = await job.Lease(name, silo);
            int count = 0;
            for (; item is not null; count++) item = await job.CompleteAndLease(JobGrainTests.Result(item, marker: 1), name, silo);
            return count;
        }));
        double grain = items / clock.Elapsed.TotalSeconds;
        var end = await JobGrainTests.WaitUntilFinished(job);
        double disk = items / clock.Elapsed.TotalSeconds;
        Assert.Equal(items, made.Sum());
        Assert.Equal(items, end.CommittedRows);
        return (grain, disk);
    }
}

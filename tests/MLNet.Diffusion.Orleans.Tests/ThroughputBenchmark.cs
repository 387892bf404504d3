using System.Diagnostics;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary>
/// Images per second of the cluster path (a one-silo cluster, one CPU worker) against the in-process path (the same engine
/// calls, PNG encoding and folder writes, no Orleans) at batch size 8 with the demo model. A measurement, not part of the
/// regular run: set MLND_ORLEANS_BENCH=1 to run it.
/// </summary>
public sealed class ThroughputBenchmark(ITestOutputHelper output)
{
    private const int Rows = 160, BatchSize = 8;

    [SkippableFact]
    public async Task Cluster_path_against_in_process_path()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("MLND_ORLEANS_BENCH") == "1", "a measurement: set MLND_ORLEANS_BENCH=1 to run it");
        var rows = DemoRows.Make(Rows);
        DemoRows.Reference(rows.Take(BatchSize).ToArray(), BatchSize); // warm the model and the engine
        await using var cluster = await DiffusionCluster.StartAsync(1);
        await Cluster(cluster, rows, "warm-up", 16); // warm the worker's pipeline
        InProcess(rows);
        var local = new List<double>();
        var clustered = new List<double>();
        for (int round = 0; round < 3; round++) // alternated, so that a slow moment of a shared machine hits both
        {
            local.Add(InProcess(rows));
            clustered.Add(await Cluster(cluster, rows, "bench" + round, Rows));
        }
        output.WriteLine($"in-process {string.Join(", ", local.Select(r => r.ToString("F2")))} img/s; cluster (1 silo, 1 CPU worker) {string.Join(", ", clustered.Select(r => r.ToString("F2")))} img/s; " +
            $"overhead of the medians {(1 - Median(clustered) / Median(local)) * 100:F1} %");
        Assert.All(clustered, r => Assert.True(r > 0));
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

    private static double InProcess(IReadOnlyList<GenerationRow> rows)
    {
        var folder = new OutputFolder();
        try
        {
            using var pipeline = StableDiffusionPipeline.Load(DemoRows.Model);
            using var sink = FolderSink.Open(folder.Path, rows.Count);
            var options = DemoRows.Settings.ToOptions();
            var clock = Stopwatch.StartNew();
            foreach (var batch in rows.Chunk(BatchSize))
            {
                var images = pipeline.Generate([.. batch.Select(r => new ImagePrompt(r.Prompt, r.Seed))], options);
                for (int i = 0; i < batch.Length; i++)
                {
                    using var image = images[i];
                    sink.Commit(batch[i], PngBytes.Of(image.Image), "bench", 0);
                }
            }
            sink.DrainAsync().GetAwaiter().GetResult();
            return rows.Count / clock.Elapsed.TotalSeconds;
        }
        finally
        {
            folder.Dispose();
        }
    }

    private static async Task<double> Cluster(global::Orleans.TestingHost.TestCluster cluster, IReadOnlyList<GenerationRow> rows, string id, int count)
    {
        using var folder = new OutputFolder();
        var spec = new JobSpec { Rows = [.. rows.Take(count)], Settings = DemoRows.Settings, BatchSize = BatchSize, OutputDirectory = folder.Path };
        var clock = Stopwatch.StartNew();
        var end = await GenerationJobClient.RunAsync(cluster.GrainFactory, id, spec, pollInterval: TimeSpan.FromMilliseconds(20));
        Assert.Equal(count, end.CommittedRows);
        return count / clock.Elapsed.TotalSeconds;
    }
}

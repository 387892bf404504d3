using System.Diagnostics;
using System.Globalization;
using Orleans.TestingHost;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary>Generation jobs on a three-silo in-process cluster, each silo a worker with the demo model.</summary>
public sealed class ScaleOutTests(ITestOutputHelper output)
{
    private const int BatchSize = 8;

    [Fact]
    public async Task A_job_survives_a_silo_killed_mid_job_and_commits_every_row_once_with_the_single_process_bytes()
    {
        const int rowCount = 300;
        await using var cluster = await DiffusionCluster.StartAsync(3);
        using var folder = new OutputFolder();
        var rows = DemoRows.Make(rowCount);
        var spec = new JobSpec { Rows = rows, Settings = DemoRows.Settings, BatchSize = BatchSize, OutputDirectory = folder.Path, LeaseTimeout = TimeSpan.FromSeconds(5) };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("kill");
        var clock = Stopwatch.StartNew();
        var started = await job.Start(spec);

        // Every one of the three workers holds an item, the victim's included. In-process, the victim's engine call may still
        // finish and hand its result in as the silo goes down; otherwise its item is re-issued (JobGrainTests checks that
        // path on its own).
        var progress = await WaitFor(job, p => p.CommittedRows >= rowCount / 4 && p.InFlightItems == 3, TimeSpan.FromSeconds(60));
        var victim = cluster.SecondarySilos.First(s => s.SiloAddress.ToString() != started.Host);
        await cluster.KillSiloAsync(victim);
        output.WriteLine($"killed {victim.SiloAddress} at {progress}");

        var end = await WaitFor(job, p => p.IsFinished, TimeSpan.FromSeconds(90));
        output.WriteLine($"{end} in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.Equal(JobStatus.Completed, end.Status);
        Assert.Equal(rowCount, end.CommittedRows);
        Assert.Equal(0, end.FailedRows);

        var lines = folder.ManifestLines();
        Assert.Equal(Enumerable.Range(0, rowCount), lines.Select(l => int.Parse(l[0], CultureInfo.InvariantCulture)).Order());
        Assert.Empty(folder.TemporaryFiles());
        var reference = DemoRows.Reference(rows, batchSize: 3);
        foreach (var line in lines)
        {
            int row = int.Parse(line[0], CultureInfo.InvariantCulture);
            Assert.Equal(rows[row].Seed.ToString(CultureInfo.InvariantCulture), line[3]);
            Assert.True(reference[row].AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(folder.Path, line[5]))), $"row {row}'s image differs from the single-process one");
        }
    }

    [Fact]
    public async Task A_row_that_fails_is_recorded_with_its_message_and_the_job_goes_on()
    {
        await using var cluster = await DiffusionCluster.StartAsync(3);
        using var folder = new OutputFolder();
        var rows = DemoRows.Make(20);
        rows[7] = new GenerationRow { Row = 7, Prompt = rows[7].Prompt, Seed = rows[7].Seed, GuidanceScale = float.NaN };
        var spec = new JobSpec { Rows = rows, Settings = DemoRows.Settings, BatchSize = BatchSize, OutputDirectory = folder.Path };

        var end = await GenerationJobClient.RunAsync(cluster.GrainFactory, "fail", spec, pollInterval: TimeSpan.FromMilliseconds(50)).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(JobStatus.Completed, end.Status);
        Assert.Equal(19, end.CommittedRows);
        Assert.Equal(1, end.FailedRows);
        var failure = Assert.Single(folder.FailureLines());
        Assert.Equal("7", failure[0]);
        Assert.Contains("GuidanceScale", failure[3], StringComparison.Ordinal);
        Assert.DoesNotContain(folder.ManifestLines(), l => l[0] == "7");
        Assert.Equal(19, folder.ManifestLines().Count);
    }

    [Fact]
    public async Task A_cancelled_job_stops_within_one_batch_per_worker_and_leaves_a_consistent_manifest()
    {
        const int batchSize = 4, workers = 3;
        await using var cluster = await DiffusionCluster.StartAsync(workers);
        using var folder = new OutputFolder();
        var rows = DemoRows.Make(400);
        var spec = new JobSpec { Rows = rows, Settings = DemoRows.Settings, BatchSize = batchSize, OutputDirectory = folder.Path };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("cancel");
        await job.Start(spec);
        await WaitFor(job, p => p.CommittedRows >= 2 * batchSize, TimeSpan.FromSeconds(60));

        var atCancel = await job.Cancel();
        var end = await WaitFor(job, p => p.IsFinished, TimeSpan.FromSeconds(30));
        await Task.Delay(300);
        var after = await job.GetProgress();

        output.WriteLine($"at cancel {atCancel}; end {end}");
        Assert.Equal(JobStatus.Cancelled, end.Status);
        // Rows already made but still queued for the folder (PendingWrites) are committed after the cancel, as they should be;
        // beyond those, each worker may finish the one batch it was running.
        Assert.True(end.CommittedRows <= atCancel.CommittedRows + atCancel.PendingWrites + workers * batchSize,
            $"{end.CommittedRows - atCancel.CommittedRows} rows were committed after the cancel, {atCancel.PendingWrites} of them already made then");
        Assert.Equal(end.CommittedRows, after.CommittedRows);
        var lines = folder.ManifestLines();
        Assert.Equal(end.CommittedRows, lines.Count);
        Assert.Equal(lines.Count, lines.Select(l => l[0]).Distinct().Count());
        Assert.All(lines, l => Assert.True(File.Exists(Path.Combine(folder.Path, l[5])), $"row {l[0]}'s file {l[5]} is missing"));
        Assert.Empty(folder.TemporaryFiles());
        Assert.Equal(lines.Count, Directory.GetFiles(folder.Path, "*.png").Length);
    }

    [Fact]
    public async Task A_worker_that_cannot_load_the_model_reports_it_and_takes_no_work()
    {
        await using var cluster = await DiffusionCluster.StartAsync(3);
        using var folder = new OutputFolder();
        var missing = Path.Combine(folder.Path, "no-such-model");
        var spec = new JobSpec { Rows = DemoRows.Make(8), Settings = new JobSettings { ModelDirectory = missing, Steps = 2 }, OutputDirectory = folder.Path };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("no-model");
        await job.Start(spec);

        var progress = await WaitFor(job, p => p.LastWorkerError is not null, TimeSpan.FromSeconds(30));

        Assert.Contains("no-such-model", progress.LastWorkerError, StringComparison.Ordinal);
        Assert.Contains("cannot load the model", progress.LastWorkerError, StringComparison.Ordinal);
        Assert.Equal(JobStatus.Running, progress.Status);
        Assert.Equal(0, progress.CommittedRows);
        await Task.Delay(300);
        Assert.Equal(0, (await job.GetProgress()).InFlightItems);
        await job.Cancel();
    }

    private static async Task<JobProgress> WaitFor(IGenerationJobGrain job, Func<JobProgress, bool> condition, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var progress = await job.GetProgress();
            if (condition(progress)) return progress;
            if (clock.Elapsed > timeout) throw new TimeoutException($"The job did not get there in {timeout.TotalSeconds} s: {progress}");
            await Task.Delay(50);
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary>The job grain's leases and commits, with the test playing the workers (no silo takes work).</summary>
public sealed class JobGrainTests(ITestOutputHelper output)
{
    [Fact]
    public async Task An_item_re_issued_after_its_lease_timed_out_and_made_twice_is_committed_once()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        using var folder = new OutputFolder();
        var silo = cluster.Primary!.SiloAddress;
        var rows = DemoRows.Make(4);
        var spec = new JobSpec { Rows = rows, Settings = DemoRows.Settings, BatchSize = 4, OutputDirectory = folder.Path, LeaseTimeout = TimeSpan.FromMilliseconds(400) };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("twice");
        await job.Start(spec);

        var first = await job.Lease("slow", silo);
        Assert.NotNull(first);
        Assert.Null(await job.Lease("other", silo)); // one item, leased
        WorkItem? second = null;
        var clock = Stopwatch.StartNew();
        while (second is null && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(50);
            second = await job.Lease("fast", silo);
        }
        Assert.NotNull(second);
        Assert.Equal(first.ItemId, second.ItemId);
        Assert.NotEqual(first.LeaseId, second.LeaseId);

        await job.Complete(Result(second, marker: 2));
        var end = await job.Complete(Result(first, marker: 1)); // the slow worker comes back late

        Assert.Equal(JobStatus.Completed, end.Status);
        Assert.Equal(1, end.ReissuedItems);
        Assert.Equal(4, end.DuplicateRows);
        var lines = folder.ManifestLines();
        Assert.Equal(["0", "1", "2", "3"], lines.Select(l => l[0]));
        Assert.All(lines, l => Assert.Equal(2, File.ReadAllBytes(Path.Combine(folder.Path, l[5]))[0])); // the first result stays
    }

    [Fact]
    public async Task An_item_leased_to_a_silo_that_is_killed_is_re_issued_once_membership_declares_the_silo_dead()
    {
        await using var cluster = await DiffusionCluster.StartAsync(3, workers: false);
        using var folder = new OutputFolder();
        var spec = new JobSpec { Rows = DemoRows.Make(8), Settings = DemoRows.Settings, BatchSize = 4, OutputDirectory = folder.Path, LeaseTimeout = TimeSpan.FromMinutes(10) };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("membership");
        var started = await job.Start(spec);
        var victim = cluster.SecondarySilos.First(s => s.SiloAddress.ToString() != started.Host);
        var leased = await job.Lease("victim-worker", victim.SiloAddress);
        Assert.NotNull(leased);

        await cluster.KillSiloAsync(victim);
        var clock = Stopwatch.StartNew();
        JobProgress progress;
        while ((progress = await job.GetProgress()).ReissuedItems == 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(40), $"the dead silo's item was not re-issued: {progress}");
            await Task.Delay(100);
        }
        output.WriteLine($"re-issued {clock.Elapsed.TotalSeconds:F1} s after the kill (lease timeout 10 min)");

        var again = await job.Lease("other", cluster.Primary!.SiloAddress);
        var next = await job.Lease("other", cluster.Primary!.SiloAddress);
        Assert.Contains(leased.ItemId, new[] { again!.ItemId, next!.ItemId });
    }

    [Fact]
    public async Task A_job_started_again_over_its_folder_makes_only_the_rows_not_in_the_manifest()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        using var folder = new OutputFolder();
        var silo = cluster.Primary!.SiloAddress;
        var spec = new JobSpec { Rows = DemoRows.Make(10), Settings = DemoRows.Settings, BatchSize = 4, OutputDirectory = folder.Path };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("resume");
        await job.Start(spec);
        await job.Complete(Result((await job.Lease("w", silo))!, marker: 1));
        await cluster.DeactivateAsync(job); // as if its silo died: the activation's state is gone

        var again = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("resume");
        Assert.Equal(JobStatus.NotStarted, (await again.GetProgress()).Status);
        var resumed = await again.Start(spec);

        Assert.Equal(4, resumed.CommittedRows);
        var item = await again.Lease("w", silo);
        Assert.Equal([4, 5, 6, 7], item!.Rows.Select(r => r.Row));
    }

    [Fact]
    public async Task The_job_grain_takes_thousands_of_work_item_completions_per_second()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        using var folder = new OutputFolder();
        var silo = cluster.Primary!.SiloAddress;
        const int items = 3000;
        var spec = new JobSpec { Rows = DemoRows.Make(items), Settings = DemoRows.Settings, BatchSize = 1, OutputDirectory = folder.Path };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("rate");
        await job.Start(spec);

        var clock = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, 8).Select(async w =>
        {
            var name = "w" + w.ToString(CultureInfo.InvariantCulture);
            var item = await job.Lease(name, silo);
            while (item is not null) item = await job.CompleteAndLease(Result(item, marker: 1), name, silo); // as a worker agent does
        });
        await Task.WhenAll(workers);
        double rate = items / clock.Elapsed.TotalSeconds;

        var end = await job.GetProgress();
        output.WriteLine($"{items} work-item completions (complete-and-lease calls; one row each, committed to the folder) in {clock.Elapsed.TotalSeconds:F2} s: {rate:F0}/s");
        Assert.Equal(JobStatus.Completed, end.Status);
        Assert.Equal(items, folder.ManifestLines().Count);
    }

    /// <summary>A worker's result for <paramref name="item"/> whose "PNG" is one byte, <paramref name="marker"/>.</summary>
    private static WorkResult Result(WorkItem item, byte marker) => new()
    {
        ItemId = item.ItemId,
        LeaseId = item.LeaseId,
        SettingsText = "test",
        Rows = [.. item.Rows.Select(r => new RowResult { Row = r.Row, Png = [marker], Seconds = 0 })],
    };
}

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
        await job.Complete(Result(first, marker: 1)); // the slow worker comes back late
        var end = await WaitUntilFinished(job); // the folder is written off the grain's turn

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
    public async Task A_result_made_for_an_earlier_activation_settles_its_rows_and_no_other_item_of_the_new_one()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        using var folder = new OutputFolder();
        var silo = cluster.Primary!.SiloAddress;
        var spec = new JobSpec { Rows = DemoRows.Make(10), Settings = DemoRows.Settings, BatchSize = 4, OutputDirectory = folder.Path };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("stale");
        await job.Start(spec);
        var made = (await job.Lease("a", silo))!;  // rows 0-3
        var stale = (await job.Lease("b", silo))!; // rows 4-7, item 1 of this activation
        await job.Complete(Result(made, marker: 1));
        await WaitUntilCommitted(job, 4);
        await cluster.DeactivateAsync(job); // as if its silo died while b was still working

        var again = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("stale");
        await again.Start(spec); // items now: rows 4-7 (item 0), rows 8-9 (item 1)
        await again.Complete(Result(stale, marker: 2)); // b hands in the old item 1: rows 4-7

        var next = await again.Lease("c", silo);
        Assert.Equal([8, 9], next!.Rows.Select(r => r.Row)); // rows 4-7 are made; rows 8-9, the new item 1, are not
        Assert.Null(await again.Lease("d", silo));
        await again.Complete(Result(next, marker: 3));
        var end = await WaitUntilFinished(again);

        Assert.Equal(JobStatus.Completed, end.Status);
        Assert.Equal(0, end.DuplicateRows);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => i.ToString(CultureInfo.InvariantCulture)), folder.ManifestLines().Select(l => l[0]).Order());
    }

    [Fact]
    public async Task A_group_completion_commits_each_row_once_and_gives_each_worker_its_own_next_item()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        using var folder = new OutputFolder();
        var silo = cluster.Primary!.SiloAddress;
        var spec = new JobSpec { Rows = DemoRows.Make(12), Settings = DemoRows.Settings, BatchSize = 2, OutputDirectory = folder.Path };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("group");
        await job.Start(spec);
        var a = (await job.Lease("a", silo))!;
        var b = (await job.Lease("b", silo))!;
        var c = (await job.Lease("c", silo))!;

        // a and b finished; c could not load the model; a's result also arrives twice in the group.
        var failed = new WorkResult { ItemId = c.ItemId, LeaseId = c.LeaseId, WorkerError = "cannot load the model" };
        var next = await job.CompleteAndLeaseMany([Result(a, 1), Result(b, 1), failed, Result(a, 2)], ["a", "b", "c", "a"], silo);

        Assert.Equal(4, next.Length);
        Assert.NotNull(next[0]);
        Assert.NotNull(next[1]);
        Assert.Null(next[2]); // a worker that reported a load failure gets nothing
        Assert.NotEqual(next[0]!.ItemId, next[1]!.ItemId);
        Assert.DoesNotContain(next[0]!.ItemId, new[] { a.ItemId, b.ItemId });
        var progress = await job.GetProgress();
        Assert.Equal(2, progress.DuplicateRows);
        Assert.Equal(progress.InFlightItems, next.Count(n => n is not null));
        Assert.Equal("cannot load the model", progress.LastWorkerError);

        await Assert.ThrowsAsync<ArgumentException>(() => job.CompleteAndLeaseMany([Result(a, 1)], [], silo));
    }

    [Fact]
    public async Task Completions_reported_together_through_a_silo_reporter_finish_the_job_with_every_row_once()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        using var folder = new OutputFolder();
        var silo = cluster.Primary!.SiloAddress;
        const int items = 400;
        var spec = new JobSpec { Rows = DemoRows.Make(items), Settings = DemoRows.Settings, BatchSize = 1, OutputDirectory = folder.Path };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("reporter");
        await job.Start(spec);
        var reporter = new CompletionReporter(cluster.GrainFactory, silo);

        var made = await Task.WhenAll(Enumerable.Range(0, 8).Select(w => Device(job, reporter, "d" + w.ToString(CultureInfo.InvariantCulture), silo)));

        Assert.Equal(items, made.Sum());
        var end = await WaitUntilFinished(job);
        Assert.Equal(JobStatus.Completed, end.Status);
        Assert.Equal(0, end.DuplicateRows);
        Assert.Equal(Enumerable.Range(0, items).Select(i => i.ToString(CultureInfo.InvariantCulture)), folder.ManifestLines().Select(l => int.Parse(l[0], CultureInfo.InvariantCulture)).Order().Select(r => r.ToString(CultureInfo.InvariantCulture)));
    }

    [Fact]
    public async Task A_client_waiting_for_progress_is_answered_when_a_result_arrives_not_at_the_end_of_its_wait()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        using var folder = new OutputFolder();
        var silo = cluster.Primary!.SiloAddress;
        var spec = new JobSpec { Rows = DemoRows.Make(8), Settings = DemoRows.Settings, BatchSize = 4, OutputDirectory = folder.Path };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("wait");
        var started = await job.Start(spec);
        var item = (await job.Lease("w", silo))!;

        var clock = Stopwatch.StartNew();
        var waiting = job.WaitForProgress(started.Version, TimeSpan.FromSeconds(10));
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted); // nothing changed yet
        await job.Complete(Result(item, marker: 1)); // the wait runs interleaved: this call is not held up by it
        var changed = await waiting;

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"the wait ended after {clock.Elapsed.TotalSeconds:F1} s, not when the result came");
        Assert.True(changed.Version > started.Version);
        Assert.Equal(1, changed.PendingItems);
        var stale = await job.WaitForProgress(started.Version, TimeSpan.FromSeconds(10)); // an old version: answered at once
        Assert.Equal(changed.Version, stale.Version);
    }

    [Fact]
    public async Task While_the_folder_holds_more_unwritten_bytes_than_allowed_no_item_is_handed_out()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        using var folder = new OutputFolder();
        var silo = cluster.Primary!.SiloAddress;
        // Two one-byte images reach the limit: the next item is held back in the same call, and handed out once they are
        // on disk. The folder's writer runs beside the grain and could, on a stalled machine, write both images between
        // the commit and the next lease of that one call, so the check is made on up to five fresh jobs.
        bool heldBack = false;
        for (int attempt = 0; attempt < 5 && !heldBack; attempt++)
        {
            var spec = new JobSpec { Rows = DemoRows.Make(8), Settings = DemoRows.Settings, BatchSize = 2, OutputDirectory = Path.Combine(folder.Path, "job" + attempt.ToString(CultureInfo.InvariantCulture)), MaxPendingWriteBytes = 2 };
            var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("backpressure" + attempt.ToString(CultureInfo.InvariantCulture));
            await job.Start(spec);
            var item = (await job.Lease("w", silo))!;
            heldBack = await job.CompleteAndLease(Result(item, marker: 1), "w", silo) is null;
            if (!heldBack) continue;
            WorkItem? next = null;
            var clock = Stopwatch.StartNew();
            while (next is null)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "no item was handed out after the writes ended");
                await Task.Delay(20);
                next = await job.Lease("w", silo);
            }
            Assert.Equal(2, (await job.GetProgress()).CommittedRows);
        }
        Assert.True(heldBack, "the next item was handed out while the folder held more unwritten bytes than allowed");
        await Assert.ThrowsAsync<ArgumentException>(() => cluster.GrainFactory.GetGrain<IGenerationJobGrain>("bad").Start(
            new JobSpec { Rows = DemoRows.Make(1), Settings = DemoRows.Settings, OutputDirectory = folder.Path + "-bad", MaxPendingWriteBytes = 0 }));
    }

    /// <summary>A device loop as <see cref="WorkerAgent"/> runs it: lease, "make" the item, hand it in and take the next.</summary>
    internal static async Task<int> Device(IGenerationJobGrain job, CompletionReporter reporter, string name, SiloAddress silo)
    {
        int made = 0;
        var item = await job.Lease(name, silo);
        while (item is not null)
        {
            made++;
            item = await reporter.Report(item.JobId, Result(item, marker: 1), name);
        }
        return made;
    }

    private static async Task WaitUntilCommitted(IGenerationJobGrain job, int rows)
    {
        var clock = Stopwatch.StartNew();
        JobProgress progress;
        while ((progress = await job.GetProgress()).CommittedRows < rows)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"{rows} rows were not committed: {progress}");
            await Task.Delay(20);
        }
    }

    internal static async Task<JobProgress> WaitUntilFinished(IGenerationJobGrain job)
    {
        var clock = Stopwatch.StartNew();
        JobProgress progress;
        while (!(progress = await job.GetProgress()).IsFinished)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"the job did not finish: {progress}");
            await Task.Delay(20);
        }
        return progress;
    }

    /// <summary>A worker's result for <paramref name="item"/> whose "PNG" is one byte, <paramref name="marker"/>.</summary>
    internal static WorkResult Result(WorkItem item, byte marker) => new()
    {
        ItemId = item.ItemId,
        LeaseId = item.LeaseId,
        SettingsText = "test",
        Rows = [.. item.Rows.Select(r => new RowResult { Row = r.Row, Png = [marker], Seconds = 0 })],
    };
}

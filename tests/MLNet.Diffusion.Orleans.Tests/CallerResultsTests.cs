using System.Diagnostics;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary>Jobs whose images go back to the caller (<see cref="JobSpec.ReturnToCaller"/>), with the test playing the workers.</summary>
public sealed class CallerResultsTests
{
    [Fact]
    public async Task A_caller_job_re_issued_and_made_twice_holds_each_row_once_with_the_first_result_until_the_caller_acknowledges_it()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        var silo = cluster.Primary!.SiloAddress;
        var spec = new JobSpec { Rows = DemoRows.Make(4), Settings = DemoRows.Settings, BatchSize = 4, ReturnToCaller = true, LeaseTimeout = TimeSpan.FromMilliseconds(400) };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("caller-twice");
        await job.Start(spec);
        var first = await job.Lease("slow", silo);
        Assert.NotNull(first);
        WorkItem? second = null;
        var clock = Stopwatch.StartNew();
        while (second is null && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(50);
            second = await job.Lease("fast", silo);
        }
        Assert.NotNull(second);

        await job.Complete(JobGrainTests.Result(second, marker: 2));
        await job.Complete(JobGrainTests.Result(first, marker: 1)); // the slow worker comes back late
        var end = await job.GetProgress();
        var taken = await job.TakeResults(0);
        var again = await job.TakeResults(0); // not acknowledged (an answer lost on the way): sent again
        var rest = await job.TakeResults(taken.Length);
        var after = await job.GetProgress(); // everything acknowledged: the finished job's activation let go

        Assert.Equal(JobStatus.Completed, end.Status);
        Assert.Equal(4, end.CommittedRows);
        Assert.Equal(4, end.DuplicateRows);
        Assert.Equal([0, 1, 2, 3], taken.Select(r => r.Row).Order());
        Assert.All(taken, r => Assert.Equal([(byte)2], r.Png!));
        Assert.Equal(taken.Select(r => r.Row), again.Select(r => r.Row));
        Assert.Empty(rest);
        Assert.Equal(JobStatus.NotStarted, after.Status);
    }

    [Fact]
    public async Task A_caller_job_holding_more_than_its_byte_bound_hands_out_no_item_until_the_caller_acknowledges_them()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        var silo = cluster.Primary!.SiloAddress;
        var spec = new JobSpec { Rows = DemoRows.Make(8), Settings = DemoRows.Settings, BatchSize = 4, ReturnToCaller = true, MaxPendingWriteBytes = 4 };
        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("caller-bound");
        await job.Start(spec);

        var item = await job.Lease("w", silo);
        var next = await job.CompleteAndLease(JobGrainTests.Result(item!, marker: 7), "w", silo); // 4 one-byte images held: at the bound

        Assert.Null(next);
        Assert.Equal(4, (await job.TakeResults(0)).Length);
        Assert.Null(await job.Lease("w", silo)); // taken but not acknowledged: still held
        Assert.Empty(await job.TakeResults(4));
        Assert.NotNull(await job.Lease("w", silo));
    }

    [Fact]
    public async Task A_job_takes_either_a_folder_or_the_caller_and_a_folder_job_has_no_results_to_take()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        using var folder = new OutputFolder();
        var both = new JobSpec { Rows = DemoRows.Make(2), Settings = DemoRows.Settings, ReturnToCaller = true, OutputDirectory = folder.Path };
        var error = await Assert.ThrowsAsync<ArgumentException>(() => cluster.GrainFactory.GetGrain<IGenerationJobGrain>("both").Start(both));
        Assert.Contains("ReturnToCaller", error.Message, StringComparison.Ordinal);

        var job = cluster.GrainFactory.GetGrain<IGenerationJobGrain>("folder");
        await job.Start(new JobSpec { Rows = DemoRows.Make(2), Settings = DemoRows.Settings, OutputDirectory = folder.Path });
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => job.TakeResults(0));
        Assert.Contains(folder.Path, refused.Message, StringComparison.Ordinal);
    }
}

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// Submits a job and follows it to its end from a cluster client (or a silo). A client that restarts calls
/// <see cref="RunAsync"/> again with the same job id and spec: it reattaches to the running job. If the job's grain lost its
/// state (its silo died), the job is started again over the same output folder, and only the rows not in its manifest are
/// made again.
/// </summary>
public static class GenerationJobClient
{
    /// <summary>Starts (or reattaches to) job <paramref name="jobId"/> and waits until it completes or, after cancellation, stops.</summary>
    /// <param name="grains">The cluster client's grain factory.</param>
    /// <param name="jobId">The job's id: the same id reattaches.</param>
    /// <param name="spec">The job.</param>
    /// <param name="progress">Receives the job's progress at every poll.</param>
    /// <param name="pollInterval">The longest wait between two progress reports (the job answers at once when it changes: <see cref="IGenerationJobGrain.WaitForProgress"/>); also how soon a cancellation is passed on.</param>
    /// <param name="cancellationToken">Cancels the job (not only the wait): the call returns once items in flight are back.</param>
    public static async Task<JobProgress> RunAsync(IGrainFactory grains, string jobId, JobSpec spec, IProgress<JobProgress>? progress = null,
        TimeSpan? pollInterval = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(grains);
        ArgumentException.ThrowIfNullOrWhiteSpace(jobId);
        ArgumentNullException.ThrowIfNull(spec);
        var job = grains.GetGrain<IGenerationJobGrain>(jobId);
        var interval = pollInterval ?? TimeSpan.FromMilliseconds(250);
        var state = await job.Start(spec);
        bool cancelled = false;
        while (true)
        {
            progress?.Report(state);
            if (state.IsFinished) return state;
            if (cancellationToken.IsCancellationRequested && !cancelled)
            {
                cancelled = true;
                state = await job.Cancel();
                continue;
            }
            try
            {
                state = await job.WaitForProgress(state.Version, interval);
                if (state.Status == JobStatus.NotStarted && !cancelled) state = await job.Start(spec); // its silo died: resume from the manifest
            }
            catch (Exception e) when (e is TimeoutException or OrleansException)
            {
                // The job's silo is leaving; the next call reaches its new activation.
                await Task.Delay(interval, CancellationToken.None).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }
}

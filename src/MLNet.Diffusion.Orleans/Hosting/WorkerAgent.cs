using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// Runs on every silo that serves devices: one loop per device pulls work items from the running jobs (through
/// <see cref="IJobRegistryGrain"/>), runs them on this silo's <see cref="IGenerationWorkerGrain"/> of that device, and hands
/// the results back to the job, taking that job's next item in the same call. Pulling keeps each device busy with one item at a time and lets a job's leases, not the
/// worker, decide what is made again after a failure. A worker whose model does not load reports it to the job and takes no
/// work from that job for <see cref="WorkerAgentOptions.LoadFailureBackoff"/>.
/// </summary>
public sealed class WorkerAgent(IGrainFactory grains, ILocalSiloDetails silo, IOptions<WorkerAgentOptions> options, ILogger<WorkerAgent> logger)
    : BackgroundService
{
    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(options.Value.Devices.Select(device => Task.Run(() => Serve(device, stoppingToken), stoppingToken)));

    private async Task Serve(string device, CancellationToken stoppingToken)
    {
        var worker = grains.GetGrain<IGenerationWorkerGrain>(device);
        var registry = grains.GetGrain<IJobRegistryGrain>(0);
        var avoid = new Dictionary<string, DateTime>(StringComparer.Ordinal);
        string name = $"{silo.SiloAddress}/{device}";
        IGenerationJobGrain? job = null;
        WorkItem? item = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (item is null) (job, item) = await NextItem(registry, name, avoid);
                if (item is null)
                {
                    await Task.Delay(options.Value.PollInterval, stoppingToken);
                    continue;
                }
                var result = await worker.Run(item);
                if (result.WorkerError is not null) avoid[item.JobId] = DateTime.UtcNow + options.Value.LoadFailureBackoff;
                item = null;
                item = await job!.CompleteAndLease(result, name, silo.SiloAddress); // the same job's next item, if any
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // A job or the registry unreachable for a moment (a silo leaving): the lease of any item held times out.
                item = null;
                logger.LogWarning(e, "Worker {Worker}: {Message}", name, e.Message);
                await Task.Delay(options.Value.PollInterval, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    private async Task<(IGenerationJobGrain? Job, WorkItem? Item)> NextItem(IJobRegistryGrain registry, string name, Dictionary<string, DateTime> avoid)
    {
        var now = DateTime.UtcNow;
        foreach (var jobId in await registry.GetActive())
        {
            if (avoid.TryGetValue(jobId, out var until) && until > now) continue;
            var job = grains.GetGrain<IGenerationJobGrain>(jobId);
            if (await job.Lease(name, silo.SiloAddress) is { } item) return (job, item);
        }
        return (null, null);
    }
}

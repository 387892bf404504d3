using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// Runs on every silo that serves devices: one loop per device pulls work items from the running jobs (through
/// <see cref="IJobRegistryGrain"/>), runs them on this silo's <see cref="IGenerationWorkerGrain"/> of that device, and hands
/// the results back to the job, taking that job's next item in the same call (the completions of a silo's devices that
/// finish together go in one call: <see cref="CompletionReporter"/>). Pulling keeps each device busy with one item at a time and lets a job's leases, not the
/// worker, decide what is made again after a failure. A worker whose model does not load reports it to the job and takes no
/// work from that job for <see cref="WorkerAgentOptions.LoadFailureBackoff"/>.
/// </summary>
public sealed class WorkerAgent(IGrainFactory grains, ILocalSiloDetails silo, IOptions<WorkerAgentOptions> options, ILogger<WorkerAgent> logger)
    : BackgroundService
{
    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var reporter = new CompletionReporter(grains, silo.SiloAddress);
        return Task.WhenAll(options.Value.Devices.Select(device => Task.Run(() => Serve(device, reporter, stoppingToken), stoppingToken)));
    }

    private async Task Serve(string device, CompletionReporter reporter, CancellationToken stoppingToken)
    {
        var worker = grains.GetGrain<IGenerationWorkerGrain>(device);
        var registry = grains.GetGrain<IJobRegistryGrain>(0);
        var avoid = new Dictionary<string, DateTime>(StringComparer.Ordinal);
        string name = $"{silo.SiloAddress}/{device}";
        WorkItem? item = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                item ??= await NextItem(registry, name, avoid);
                if (item is null)
                {
                    await Task.Delay(options.Value.PollInterval, stoppingToken);
                    continue;
                }
                var result = await worker.Run(item);
                if (result.WorkerError is not null) avoid[item.JobId] = DateTime.UtcNow + options.Value.LoadFailureBackoff;
                string jobId = item.JobId;
                item = null;
                item = await reporter.Report(jobId, result, name); // the same job's next item, if any
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

    private async Task<WorkItem?> NextItem(IJobRegistryGrain registry, string name, Dictionary<string, DateTime> avoid)
    {
        var now = DateTime.UtcNow;
        foreach (var jobId in await registry.GetActive())
        {
            if (avoid.TryGetValue(jobId, out var until) && until > now) continue;
            var job = grains.GetGrain<IGenerationJobGrain>(jobId);
            if (await job.Lease(name, silo.SiloAddress) is { } item) return item;
        }
        return null;
    }
}

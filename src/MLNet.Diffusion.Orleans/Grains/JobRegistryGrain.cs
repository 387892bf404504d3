namespace MLNet.Diffusion.Orleans;

/// <summary>In-memory list of running jobs. If its silo dies the list is empty until the jobs' clients start (reattach) them again.</summary>
internal sealed class JobRegistryGrain : Grain, IJobRegistryGrain
{
    private readonly List<string> _jobs = [];

    public Task Add(string jobId)
    {
        if (!_jobs.Contains(jobId)) _jobs.Add(jobId);
        return Task.CompletedTask;
    }

    public Task Remove(string jobId)
    {
        _jobs.Remove(jobId);
        return Task.CompletedTask;
    }

    public Task<string[]> GetActive() => Task.FromResult(_jobs.ToArray());
}

namespace MLNet.Diffusion.Orleans;

/// <summary>The cluster's list of running jobs (one grain, key 0), which workers poll for work.</summary>
public interface IJobRegistryGrain : IGrainWithIntegerKey
{
    /// <summary>Adds a running job.</summary>
    Task Add(string jobId);

    /// <summary>Removes a job that is over.</summary>
    Task Remove(string jobId);

    /// <summary>The running jobs, oldest first.</summary>
    Task<string[]> GetActive();
}

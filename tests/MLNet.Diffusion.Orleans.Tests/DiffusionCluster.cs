using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.TestingHost;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary>
/// An in-process Orleans test cluster whose every silo is a generation worker (one CPU worker each), with failure
/// detection tightened so that a killed silo is declared dead within seconds.
/// </summary>
internal static class DiffusionCluster
{
    /// <summary>Starts a cluster of <paramref name="silos"/> silos; without <paramref name="workers"/> no silo takes work (a test plays the worker).</summary>
    public static async Task<TestCluster> StartAsync(int silos = 3, bool workers = true)
    {
        var builder = new TestClusterBuilder((short)silos);
        if (workers) builder.AddSiloBuilderConfigurator<WorkerSilo>();
        builder.AddSiloBuilderConfigurator<FastFailureDetection>();
        var cluster = builder.Build();
        await cluster.DeployAsync();
        return cluster;
    }

    private sealed class WorkerSilo : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            siloBuilder.AddDiffusionWorker(o => o.PollInterval = TimeSpan.FromMilliseconds(20));
        }
    }

    private sealed class FastFailureDetection : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            siloBuilder.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = TimeSpan.FromSeconds(1);
                o.NumMissedProbesLimit = 2;
                o.NumVotesForDeathDeclaration = 1;
                o.TableRefreshTimeout = TimeSpan.FromSeconds(1);
            });
        }
    }
}

using Microsoft.Extensions.DependencyInjection;
using MLNet.Diffusion.Orleans;

namespace Orleans.Hosting;

/// <summary>Adds generation workers to an Orleans silo.</summary>
public static class DiffusionSiloBuilderExtensions
{
    /// <summary>
    /// Makes the silo a generation worker: it pulls work items of running jobs for each configured device (default: one CPU
    /// worker). Every silo of the cluster can hold job grains whether it serves devices or not.
    /// </summary>
    public static ISiloBuilder AddDiffusionWorker(this ISiloBuilder builder, Action<WorkerAgentOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = builder.Services.AddOptions<WorkerAgentOptions>();
        if (configure is not null) options.Configure(configure);
        builder.Services.AddHostedService<WorkerAgent>();
        return builder;
    }
}

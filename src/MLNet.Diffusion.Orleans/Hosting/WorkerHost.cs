using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Hosting;

namespace MLNet.Diffusion.Orleans;

/// <summary>Builds the host of a worker silo (see <see cref="WorkerHostOptions"/>).</summary>
public static class WorkerHost
{
    /// <summary>A host that runs one worker silo when started.</summary>
    /// <exception cref="ArgumentException">A device key is not known (<see cref="WorkerDevice.RuntimeOptions"/>), or a primary
    /// port is given with Redis or ADO.NET clustering.</exception>
    public static IHost Create(WorkerHostOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        foreach (var device in options.Devices) WorkerDevice.RuntimeOptions(device); // refuse a bad key before any port is opened
        var cluster = options.Cluster ?? ClusterConnection.Parse("localhost");
        if (cluster.Kind != ClusteringKind.Localhost && options.PrimarySiloPort is not null)
            throw new ArgumentException($"A primary silo port ({options.PrimarySiloPort}) was given with cluster '{cluster.Text}': with {cluster.Kind} clustering silos find each other through the membership store; leave it out.", nameof(options));
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(options.LogLevel);
        builder.UseOrleans(silo =>
        {
            cluster.ConfigureSilo(silo, options.SiloPort, options.GatewayPort, options.PrimarySiloPort, options.AdvertisedAddress);
            silo.AddDiffusionWorker(o =>
            {
                if (options.Devices.Count == 0) return;
                o.Devices.Clear();
                foreach (var device in options.Devices) o.Devices.Add(device);
            });
        });
        return builder.Build();
    }
}

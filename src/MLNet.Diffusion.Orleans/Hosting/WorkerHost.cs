using System.Net;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Hosting;

namespace MLNet.Diffusion.Orleans;

/// <summary>Builds the host of a worker silo (see <see cref="WorkerHostOptions"/>).</summary>
public static class WorkerHost
{
    /// <summary>A host that runs one worker silo when started.</summary>
    /// <exception cref="ArgumentException">A device key is not known (<see cref="WorkerDevice.RuntimeOptions"/>).</exception>
    public static IHost Create(WorkerHostOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        foreach (var device in options.Devices) WorkerDevice.RuntimeOptions(device); // refuse a bad key before any port is opened
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(options.LogLevel);
        builder.UseOrleans(silo =>
        {
            var primary = options.PrimarySiloPort is int port ? new IPEndPoint(IPAddress.Loopback, port) : null;
            silo.UseLocalhostClustering(options.SiloPort, options.GatewayPort, primary);
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

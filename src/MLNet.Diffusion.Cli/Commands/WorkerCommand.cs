using System.ComponentModel;
using Microsoft.Extensions.Logging;
using MLNet.Diffusion.Orleans;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// <c>worker</c>: runs an Orleans silo that serves generation work items on its devices (and holds job grains), until
/// Ctrl+C. On one machine (localhost clustering, the default) the first worker is the primary; others join it with
/// <c>--primary-port</c>. Across machines, every worker names the same Redis server or membership database with
/// <c>--cluster</c> (see <see cref="ClusterConnection"/>). Exit codes: 0 stopped with Ctrl+C, 2 a bad option value, 69 the
/// membership store could not be reached within <c>--connect-timeout</c>.
/// </summary>
internal sealed class WorkerCommand(CliEnvironment environment) : Command<WorkerCommand.Settings>
{
    internal sealed class Settings : CliSettings
    {
        [CommandOption("--silo-port <PORT>")]
        [Description("The port silos talk to each other on.")]
        [DefaultValue(11111)]
        public int SiloPort { get; init; } = 11111;

        [CommandOption("--gateway-port <PORT>")]
        [Description("The port clients (batch --cluster localhost:PORT) connect to.")]
        [DefaultValue(30000)]
        public int GatewayPort { get; init; } = ClusterConnection.DefaultGatewayPort;

        [CommandOption("--primary-port <PORT>")]
        [Description("Localhost clustering: join the cluster whose primary silo listens on this silo port of this machine; leave out on the first worker.")]
        public int? PrimaryPort { get; init; }

        [CommandOption("--cluster <CONN>")]
        [Description("The cluster's membership store: localhost (one machine, the default), redis://HOST:PORT or adonet:Npgsql / adonet:Microsoft.Data.SqlClient (with --connection-string).")]
        [DefaultValue("localhost")]
        public string Cluster { get; init; } = "localhost";

        [CommandOption("--connection-string <TEXT>")]
        [Description("With --cluster adonet:…: the membership database's connection string. Default: the MLND_CLUSTER_CONNECTION_STRING variable.")]
        public string? ConnectionString { get; init; }

        [CommandOption("--cluster-id <ID>")]
        [Description("The cluster's id, the same on every worker and client of one cluster.")]
        [DefaultValue(ClusterConnection.DefaultClusterId)]
        public string ClusterId { get; init; } = ClusterConnection.DefaultClusterId;

        [CommandOption("--advertise <IP>")]
        [Description("With redis:// or adonet: clustering: the address other machines reach this worker at. Default: this host's first address.")]
        public string? Advertise { get; init; }

        [CommandOption("--connect-timeout <SECONDS>")]
        [Description("Give up (exit 69) when the cluster's membership store cannot be reached within this many seconds.")]
        [DefaultValue(30.0)]
        public double ConnectTimeout { get; init; } = 30;

        [CommandOption("--worker-device <DEVICE>")]
        [Description("A device to serve: cpu or cuda:N. Repeat for several (one worker each). Default: cpu.")]
        public string[]? Devices { get; init; }

        public override ValidationResult Validate()
        {
            foreach (var (name, port) in new[] { ("--silo-port", SiloPort), ("--gateway-port", GatewayPort), ("--primary-port", PrimaryPort ?? 1) })
            {
                if (port is < 1 or > 65535) return ValidationResult.Error($"{name} is {port}; a port is 1 to 65535.");
            }
            try
            {
                foreach (var device in Devices ?? []) WorkerDevice.RuntimeOptions(device);
                ClusterArguments.Timeout(ConnectTimeout);
                if (Advertise is not null && !System.Net.IPAddress.TryParse(Advertise, out _))
                    return ValidationResult.Error($"--advertise is '{Advertise}'; give an IP address of this machine, such as 10.0.0.5.");
            }
            catch (ArgumentException e)
            {
                return ValidationResult.Error(Program.MessageOf(e));
            }
            return base.Validate();
        }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var cluster = ClusterArguments.Resolve(settings.Cluster, settings.ConnectionString, settings.ClusterId, environment);
        if (cluster.Kind == ClusteringKind.Localhost && cluster.GatewayPorts is not [ClusterConnection.DefaultGatewayPort])
            throw new UserException($"--cluster {settings.Cluster}: a worker takes localhost without ports; choose its ports with --silo-port and --gateway-port, and join another with --primary-port.");
        if (cluster.Kind != ClusteringKind.Localhost && settings.PrimaryPort is not null)
            throw new UserException($"--primary-port was given with --cluster {settings.Cluster}: with {cluster.Kind} clustering workers find each other through the membership store; leave --primary-port out.");
        var options = new WorkerHostOptions
        {
            Cluster = cluster,
            AdvertisedAddress = settings.Advertise is null ? null : System.Net.IPAddress.Parse(settings.Advertise),
            SiloPort = settings.SiloPort,
            GatewayPort = settings.GatewayPort,
            PrimarySiloPort = settings.PrimaryPort,
            LogLevel = environment.Verbose ? LogLevel.Information : LogLevel.Warning,
        };
        foreach (var device in settings.Devices ?? []) options.Devices.Add(device);
        using var host = WorkerHost.Create(options);
        if (ClusterArguments.StartOrReport(() => cluster.StartAsync(host, ClusterArguments.Timeout(settings.ConnectTimeout), environment.CancellationToken), environment) is int unreachable)
            return unreachable;
        var devices = options.Devices.Count == 0 ? WorkerDevice.Cpu : string.Join(", ", options.Devices);
        environment.Console.MarkupLineInterpolated(
            $"Worker silo on port {settings.SiloPort}, gateway {settings.GatewayPort}, serving {devices}{Joined(settings, cluster)}. Ctrl+C stops it.");
        try
        {
            Task.Delay(Timeout.Infinite, environment.CancellationToken).GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
        }
        host.StopAsync(CancellationToken.None).GetAwaiter().GetResult();
        environment.Error.WriteLine("Worker stopped.");
        return Program.Success;
    }

    private static string Joined(Settings settings, ClusterConnection cluster) => cluster.Kind switch
    {
        ClusteringKind.Localhost => settings.PrimaryPort is int p ? $", joined the primary on port {p}" : " (primary)",
        _ => $", cluster '{cluster.ClusterId}' through {cluster.Kind} membership",
    };
}

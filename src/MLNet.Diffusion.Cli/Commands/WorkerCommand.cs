using System.ComponentModel;
using Microsoft.Extensions.Logging;
using MLNet.Diffusion.Orleans;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// <c>worker</c>: runs an Orleans silo that serves generation work items on its devices (and holds job grains), until
/// Ctrl+C. On one machine the first worker is the primary; others join it with <c>--primary-port</c>.
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
        [Description("Join the cluster whose primary silo listens on this silo port of this machine; leave out on the first worker.")]
        public int? PrimaryPort { get; init; }

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
        var options = new WorkerHostOptions
        {
            SiloPort = settings.SiloPort,
            GatewayPort = settings.GatewayPort,
            PrimarySiloPort = settings.PrimaryPort,
            LogLevel = environment.Verbose ? LogLevel.Information : LogLevel.Warning,
        };
        foreach (var device in settings.Devices ?? []) options.Devices.Add(device);
        using var host = WorkerHost.Create(options);
        host.StartAsync(environment.CancellationToken).GetAwaiter().GetResult();
        var devices = options.Devices.Count == 0 ? WorkerDevice.Cpu : string.Join(", ", options.Devices);
        environment.Console.MarkupLineInterpolated(
            $"Worker silo on port {settings.SiloPort}, gateway {settings.GatewayPort}, serving {devices}{(settings.PrimaryPort is int p ? $", joined the primary on port {p}" : " (primary)")}. Ctrl+C stops it.");
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
}

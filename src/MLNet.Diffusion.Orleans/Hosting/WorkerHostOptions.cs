using Microsoft.Extensions.Logging;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// A generation worker silo. On localhost clustering (the default) the first silo (no <see cref="PrimarySiloPort"/>) is the
/// primary that others on the machine join; with Redis or ADO.NET clustering (<see cref="Cluster"/>) silos on many machines
/// find each other through the membership store. Hosts job grains too, so a one-machine cluster needs nothing else.
/// </summary>
public sealed class WorkerHostOptions
{
    /// <summary>The cluster to join (<see cref="ClusterConnection.Parse"/>); null: localhost clustering.</summary>
    public ClusterConnection? Cluster { get; set; }

    /// <summary>The address other machines reach this silo at (Redis or ADO.NET clustering); null: this host's first address.</summary>
    public System.Net.IPAddress? AdvertisedAddress { get; set; }

    /// <summary>The silo-to-silo port (Orleans' default 11111).</summary>
    public int SiloPort { get; set; } = 11111;

    /// <summary>The port clients connect to (Orleans' default 30000).</summary>
    public int GatewayPort { get; set; } = ClusterConnection.DefaultGatewayPort;

    /// <summary>Localhost clustering only: the primary silo's silo port on this machine, or null when this silo is the primary.</summary>
    public int? PrimarySiloPort { get; set; }

    /// <summary>The devices to serve (<see cref="WorkerDevice"/> keys); empty: one CPU worker.</summary>
    public IList<string> Devices { get; } = [];

    /// <summary>The lowest level of log messages shown.</summary>
    public LogLevel LogLevel { get; set; } = LogLevel.Warning;
}

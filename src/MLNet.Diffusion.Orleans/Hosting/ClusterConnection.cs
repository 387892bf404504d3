using System.Globalization;
using System.Net;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using Orleans.Hosting;

namespace MLNet.Diffusion.Orleans;

/// <summary>How silos and clients find each other: the clustering (membership) provider.</summary>
public enum ClusteringKind
{
    /// <summary>Orleans' localhost clustering: every silo and client on one machine, no server needed.</summary>
    Localhost,

    /// <summary>Orleans' Redis clustering: the membership table lives in a Redis server every machine reaches.</summary>
    Redis,

    /// <summary>Orleans' ADO.NET clustering: the membership table lives in a SQL database (PostgreSQL or SQL Server) every machine reaches.</summary>
    AdoNet,
}

/// <summary>
/// A cluster connection string as the tool takes it (<c>--cluster</c>), for silos (<c>worker</c>) and clients (<c>batch</c>):
/// <list type="bullet">
/// <item><c>localhost</c> or <c>localhost:PORT[,PORT…]</c>: localhost clustering on one machine (a client names the silos'
/// gateway ports; default 30000).</item>
/// <item><c>redis://HOST[:PORT][,HOST:PORT…][,OPTION=VALUE…]</c>: Redis clustering; what follows <c>redis://</c> is a
/// StackExchange.Redis configuration string (for example <c>redis://cache1:6379,password=secret,ssl=true</c>).</item>
/// <item><c>adonet:INVARIANT</c> with a connection string: ADO.NET clustering on a database whose Orleans membership tables
/// were created with Orleans' scripts; INVARIANT is <c>Npgsql</c> (PostgreSQL) or <c>Microsoft.Data.SqlClient</c> (SQL Server).</item>
/// </list>
/// Silos and clients of one cluster use the same string and the same <see cref="ClusterId"/>.
/// </summary>
public sealed class ClusterConnection
{
    /// <summary>The default gateway port of a silo (Orleans' own default).</summary>
    public const int DefaultGatewayPort = 30000;

    /// <summary>The cluster id used when none is named: silos and clients with the same membership store and id form one cluster.</summary>
    public const string DefaultClusterId = "mlnet-diffusion";

    /// <summary>The ADO.NET invariants (driver names) the tool carries drivers for.</summary>
    public static IReadOnlyList<string> AdoNetInvariants { get; } = ["Npgsql", "Microsoft.Data.SqlClient"];

    private ClusterConnection(string text, ClusteringKind kind, int[] gatewayPorts, string? store, string? invariant, string clusterId)
    {
        Text = text;
        Kind = kind;
        GatewayPorts = gatewayPorts;
        StoreConnectionString = store;
        Invariant = invariant;
        ClusterId = clusterId;
    }

    /// <summary>The string as given.</summary>
    public string Text { get; }

    /// <summary>The clustering provider.</summary>
    public ClusteringKind Kind { get; }

    /// <summary>For <see cref="ClusteringKind.Localhost"/>: the gateway ports on this machine a client connects to; otherwise empty.</summary>
    public IReadOnlyList<int> GatewayPorts { get; }

    /// <summary>The Redis configuration string or the database connection string; null for localhost.</summary>
    public string? StoreConnectionString { get; }

    /// <summary>For <see cref="ClusteringKind.AdoNet"/>: the ADO.NET invariant (<see cref="AdoNetInvariants"/>); otherwise null.</summary>
    public string? Invariant { get; }

    /// <summary>The cluster's id (Orleans' ClusterId and ServiceId).</summary>
    public string ClusterId { get; }

    /// <summary>Parses a connection string.</summary>
    /// <param name="text">The <c>--cluster</c> value.</param>
    /// <param name="connectionString">The database connection string, for <c>adonet:</c> only (<c>--connection-string</c>).</param>
    /// <param name="clusterId">The cluster id (<c>--cluster-id</c>); null for <see cref="DefaultClusterId"/>.</param>
    /// <exception cref="ArgumentException">The text is none of the accepted forms, or a connection string is missing or
    /// given where it does not belong; the message names the value and says what is accepted.</exception>
    public static ClusterConnection Parse(string text, string? connectionString = null, string? clusterId = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        var value = text.Trim();
        var id = clusterId?.Trim() ?? DefaultClusterId;
        if (id.Length == 0 || id.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
            throw new ArgumentException($"Cluster id '{clusterId}' is empty or holds white space; use letters, digits, '-' or '.'.", nameof(clusterId));
        bool adoNet = value.StartsWith("adonet:", StringComparison.OrdinalIgnoreCase);
        if (!adoNet && connectionString is not null)
            throw new ArgumentException($"A connection string was given for cluster '{text}', which takes none: it belongs to adonet:INVARIANT (a Redis server is named in the redis:// string itself).", nameof(connectionString));
        if (value.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return new(text, ClusteringKind.Localhost, [DefaultGatewayPort], null, null, id);
        const string localhost = "localhost:";
        if (value.StartsWith(localhost, StringComparison.OrdinalIgnoreCase))
        {
            var parts = value[localhost.Length..].Split(',', StringSplitOptions.TrimEntries);
            var ports = new int[parts.Length];
            for (int i = 0; i < parts.Length; i++)
            {
                if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ports[i]) || ports[i] is < 1 or > 65535)
                    throw new ArgumentException($"Cluster '{text}': '{parts[i]}' is not a port (1 to 65535). Write localhost:PORT or localhost:PORT,PORT.", nameof(text));
            }
            return new(text, ClusteringKind.Localhost, ports, null, null, id);
        }
        const string redis = "redis://";
        if (value.StartsWith(redis, StringComparison.OrdinalIgnoreCase))
        {
            var configuration = value[redis.Length..];
            if (configuration.Trim().Length == 0)
                throw new ArgumentException($"Cluster '{text}' names no Redis server. Write redis://HOST:PORT (for example redis://cache1:6379).", nameof(text));
            StackExchange.Redis.ConfigurationOptions options;
            try
            {
                options = StackExchange.Redis.ConfigurationOptions.Parse(configuration);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"Cluster '{text}': '{configuration}' is not a Redis configuration ({e.Message}). Write redis://HOST:PORT, optionally followed by ,password=… or ,ssl=true.", nameof(text), e);
            }
            if (options.EndPoints.Count == 0)
                throw new ArgumentException($"Cluster '{text}' names no Redis server. Write redis://HOST:PORT (for example redis://cache1:6379).", nameof(text));
            return new(text, ClusteringKind.Redis, [], configuration, null, id);
        }
        if (adoNet)
        {
            var invariant = value["adonet:".Length..].Trim();
            var known = AdoNetInvariants.FirstOrDefault(i => i.Equals(invariant, StringComparison.OrdinalIgnoreCase))
                ?? throw new ArgumentException($"Cluster '{text}': the ADO.NET invariant '{invariant}' is not one the tool has a driver for; use adonet:Npgsql (PostgreSQL) or adonet:Microsoft.Data.SqlClient (SQL Server).", nameof(text));
            if (string.IsNullOrWhiteSpace(connectionString))
                throw new ArgumentException($"Cluster '{text}' needs the database's connection string: give --connection-string \"…\" (or set {ConnectionStringVariable}).", nameof(connectionString));
            return new(text, ClusteringKind.AdoNet, [], connectionString, known, id);
        }
        throw new ArgumentException(
            $"Cluster '{text}' is not a cluster connection: write localhost, localhost:PORT[,PORT], redis://HOST:PORT[,OPTION=VALUE] or adonet:Npgsql / adonet:Microsoft.Data.SqlClient (with --connection-string).", nameof(text));
    }

    /// <summary>The environment variable the tool reads a database connection string from when <c>--connection-string</c> is not given (keeps a password off the command line).</summary>
    public const string ConnectionStringVariable = "MLND_CLUSTER_CONNECTION_STRING";

    /// <summary>Points a cluster client at the cluster.</summary>
    public void Configure(IClientBuilder client)
    {
        ArgumentNullException.ThrowIfNull(client);
        switch (Kind)
        {
            case ClusteringKind.Localhost:
                client.UseLocalhostClustering([.. GatewayPorts], ClusterId, ClusterId);
                return;
            case ClusteringKind.Redis:
                client.UseRedisClustering(StoreConnectionString!);
                break;
            default:
                client.UseAdoNetClustering(o => { o.Invariant = Invariant!; o.ConnectionString = StoreConnectionString!; });
                break;
        }
        client.Configure<ClusterOptions>(o => { o.ClusterId = ClusterId; o.ServiceId = ClusterId; });
    }

    /// <summary>
    /// Makes <paramref name="silo"/> a member of the cluster. Localhost clustering: the silo listens on loopback and joins the
    /// primary at <paramref name="primarySiloPort"/> (none: it is the primary). Redis or ADO.NET: the silo listens on every
    /// address and advertises <paramref name="advertisedAddress"/> (default: this host's first address).
    /// </summary>
    /// <exception cref="ArgumentException">A primary port given with Redis or ADO.NET clustering (their members find each other through the store).</exception>
    public void ConfigureSilo(ISiloBuilder silo, int siloPort, int gatewayPort, int? primarySiloPort = null, IPAddress? advertisedAddress = null)
    {
        ArgumentNullException.ThrowIfNull(silo);
        if (Kind == ClusteringKind.Localhost)
        {
            var primary = primarySiloPort is int port ? new IPEndPoint(IPAddress.Loopback, port) : null;
            silo.UseLocalhostClustering(siloPort, gatewayPort, primary, ClusterId, ClusterId);
            return;
        }
        if (primarySiloPort is not null)
            throw new ArgumentException($"A primary silo port was given with cluster '{Text}': with {Kind} clustering silos find each other through the membership store; leave the primary port out.", nameof(primarySiloPort));
        if (Kind == ClusteringKind.Redis) silo.UseRedisClustering(StoreConnectionString!);
        else silo.UseAdoNetClustering(o => { o.Invariant = Invariant!; o.ConnectionString = StoreConnectionString!; });
        silo.Configure<ClusterOptions>(o => { o.ClusterId = ClusterId; o.ServiceId = ClusterId; });
        if (advertisedAddress is null) silo.ConfigureEndpoints(siloPort, gatewayPort, listenOnAnyHostAddress: true);
        else silo.ConfigureEndpoints(advertisedAddress, siloPort, gatewayPort, listenOnAnyHostAddress: true);
    }

    /// <summary>
    /// Starts a silo's or client's host, giving up after <paramref name="timeout"/>: a membership store or gateway that cannot
    /// be reached is reported within that time instead of retried for ever.
    /// </summary>
    /// <exception cref="ClusterUnreachableException">The host did not start within the time, or failed to reach the store or gateways.</exception>
    public async Task StartAsync(IHost host, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(host);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        try
        {
            await host.StartAsync(limit.Token).WaitAsync(timeout, cancellationToken);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested && e is not ClusterUnreachableException)
        {
            var reason = e is TimeoutException or OperationCanceledException ? $"no answer within {timeout.TotalSeconds:0.#} s" : Innermost(e).Message;
            throw new ClusterUnreachableException($"Cannot reach cluster '{Text}' ({Where()}): {reason}. {Hint()}", e);
        }
    }

    private string Where() => Kind switch
    {
        ClusteringKind.Localhost => "gateway port(s) " + string.Join(",", GatewayPorts),
        ClusteringKind.Redis => "Redis membership store",
        _ => $"{Invariant} membership database",
    };

    private string Hint() => Kind switch
    {
        ClusteringKind.Localhost => "Start `mlnet-diffusion worker` on this machine first, or check the port(s).",
        ClusteringKind.Redis => "Check that the Redis server runs and this machine reaches it (host, port, password), or raise the connect timeout.",
        _ => "Check that the database runs, this machine reaches it, the connection string is right and Orleans' membership tables were created in it.",
    };

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null && e is AggregateException or System.Reflection.TargetInvocationException or OrleansException) e = e.InnerException;
        return e;
    }
}

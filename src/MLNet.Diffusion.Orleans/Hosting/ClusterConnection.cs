using System.Globalization;
using Orleans.Hosting;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// A cluster connection string as the tool takes it (<c>--cluster</c>): <c>localhost</c> (the gateway on port 30000 of this
/// machine) or <c>localhost:PORT[,PORT…]</c> (one or more silos' gateway ports on this machine). Localhost clustering is
/// the one built in; a cluster over several machines uses a membership provider (Redis, ADO.NET, Kubernetes: Orleans'
/// clustering packages) configured in a host of its own.
/// </summary>
public sealed class ClusterConnection
{
    /// <summary>The default gateway port of a silo (Orleans' own default).</summary>
    public const int DefaultGatewayPort = 30000;

    private ClusterConnection(int[] gatewayPorts) => GatewayPorts = gatewayPorts;

    /// <summary>The gateway ports on this machine.</summary>
    public IReadOnlyList<int> GatewayPorts { get; }

    /// <summary>Parses a connection string.</summary>
    /// <exception cref="ArgumentException">The text is not <c>localhost</c> or <c>localhost:PORT[,PORT…]</c>; the message says what is accepted.</exception>
    public static ClusterConnection Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var value = text.Trim();
        if (value.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return new([DefaultGatewayPort]);
        const string prefix = "localhost:";
        if (value.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
        {
            var parts = value[prefix.Length..].Split(',', StringSplitOptions.TrimEntries);
            var ports = new int[parts.Length];
            for (int i = 0; i < parts.Length; i++)
            {
                if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ports[i]) || ports[i] is < 1 or > 65535)
                    throw new ArgumentException($"Cluster '{text}': '{parts[i]}' is not a port (1 to 65535). Write localhost:PORT or localhost:PORT,PORT.", nameof(text));
            }
            return new(ports);
        }
        throw new ArgumentException(
            $"Cluster '{text}' is not supported: the built-in clustering is localhost (localhost or localhost:PORT[,PORT]). For machines that share a " +
            "Redis or SQL membership table, run a host configured with Orleans' Redis or ADO.NET clustering package (see the scale-out documentation).", nameof(text));
    }

    /// <summary>Points a cluster client at the gateways.</summary>
    public void Configure(IClientBuilder client)
    {
        ArgumentNullException.ThrowIfNull(client);
        client.UseLocalhostClustering([.. GatewayPorts]);
    }
}

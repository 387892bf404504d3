using MLNet.Diffusion.Orleans;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// The cluster options shared by <c>worker</c> and <c>batch --cluster</c>: the connection (<c>--cluster</c>), the database
/// connection string (<c>--connection-string</c>, else <see cref="ClusterConnection.ConnectionStringVariable"/>), the cluster
/// id and the connect timeout. A bad value is a usage error (exit 2); a cluster that cannot be reached in time exits 69.
/// </summary>
internal static class ClusterArguments
{
    /// <summary>The parsed connection.</summary>
    /// <exception cref="ArgumentException">A value is not accepted; the message names it and says what is.</exception>
    public static ClusterConnection Resolve(string cluster, string? connectionString, string? clusterId, CliEnvironment environment)
    {
        if (connectionString is null && cluster.TrimStart().StartsWith("adonet:", StringComparison.OrdinalIgnoreCase))
            connectionString = environment.GetVariable(ClusterConnection.ConnectionStringVariable) is { Length: > 0 } fromVariable ? fromVariable : null;
        return ClusterConnection.Parse(cluster, connectionString, clusterId);
    }

    /// <summary>The connect timeout, checked: a positive number of seconds, at most a day.</summary>
    /// <exception cref="ArgumentException">It is not.</exception>
    public static TimeSpan Timeout(double seconds) => seconds is > 0 and <= 86_400 && double.IsFinite(seconds)
        ? TimeSpan.FromSeconds(seconds)
        : throw new ArgumentException($"--connect-timeout is {seconds}; give a number of seconds above 0 and at most 86400.");

    /// <summary>Runs <paramref name="start"/>; a cluster that cannot be reached becomes the one-line error and exit code 69.</summary>
    public static int? StartOrReport(Func<Task> start, CliEnvironment environment)
    {
        try
        {
            start().GetAwaiter().GetResult();
            return null;
        }
        catch (ClusterUnreachableException e)
        {
            environment.Error.WriteLine("error: " + CliEnvironment.OneLine(e.Message));
            return Program.ClusterUnavailable;
        }
    }
}

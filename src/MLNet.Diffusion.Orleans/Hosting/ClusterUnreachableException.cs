namespace MLNet.Diffusion.Orleans;

/// <summary>A silo or client could not reach its cluster's membership store or gateways in time; the message names the cluster and what to check.</summary>
public sealed class ClusterUnreachableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ClusterUnreachableException(string message, Exception? inner = null) : base(message, inner)
    {
    }
}

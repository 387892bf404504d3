namespace MLNet.Diffusion.Server;

/// <summary>The paths the server answers, so that its middleware leaves the rest of a host application alone.</summary>
internal static class ServerPaths
{
    /// <summary>Whether <paramref name="path"/> is one of the server's: <c>/v1/…</c>, <c>/sdapi/…</c>, <c>/healthz</c> or the page at <c>/</c>.</summary>
    public static bool IsServers(PathString path) =>
        path == "/" || path.Equals("/index.html", StringComparison.OrdinalIgnoreCase)
        || path.StartsWithSegments("/v1", StringComparison.OrdinalIgnoreCase)
        || path.StartsWithSegments("/sdapi", StringComparison.OrdinalIgnoreCase)
        || path.StartsWithSegments("/healthz", StringComparison.OrdinalIgnoreCase);
}

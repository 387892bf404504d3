namespace MLNet.Diffusion.Server.Errors;

/// <summary>Which API a path belongs to, which decides the shape of its error bodies.</summary>
internal enum ApiFamily
{
    /// <summary>OpenAI's <c>/v1/…</c> (and the server's own paths): <c>{"error":{"message","type","param","code"}}</c>.</summary>
    OpenAI,

    /// <summary>AUTOMATIC1111's <c>/sdapi/v1/…</c>: FastAPI's <c>{"detail": …}</c>, 422 with <c>loc</c> for a bad field.</summary>
    Automatic1111,
}

/// <summary>Finds the <see cref="ApiFamily"/> of a request path.</summary>
internal static class ApiFamilies
{
    /// <summary>The family of <paramref name="path"/>.</summary>
    public static ApiFamily Of(PathString path) =>
        path.StartsWithSegments("/sdapi", StringComparison.OrdinalIgnoreCase) ? ApiFamily.Automatic1111 : ApiFamily.OpenAI;
}

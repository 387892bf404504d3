using System.Security.Cryptography;
using System.Text;
using MLNet.Diffusion.Server.Errors;

namespace MLNet.Diffusion.Server.Security;

/// <summary>
/// Bearer-token authentication (RFC 6750) when an API key is configured: every path except <c>/healthz</c> and the web
/// page needs <c>Authorization: Bearer KEY</c>. The key is compared through SHA-256 digests with
/// <see cref="CryptographicOperations.FixedTimeEquals"/>, so neither its content nor its length shows in the timing.
/// </summary>
internal sealed class ApiKeyMiddleware
{
    private readonly RequestDelegate _next;
    private readonly byte[]? _keyDigest;

    /// <summary>The middleware for <paramref name="options"/>' key (none: every request passes).</summary>
    public ApiKeyMiddleware(RequestDelegate next, DiffusionServerOptions options)
    {
        _next = next;
        _keyDigest = string.IsNullOrEmpty(options.ApiKey) ? null : SHA256.HashData(Encoding.UTF8.GetBytes(options.ApiKey));
    }

    /// <summary>Refuses the request with 401 unless it carries the key (or needs none).</summary>
    public Task InvokeAsync(HttpContext context)
    {
        if (_keyDigest is null || IsPublic(context.Request.Path)) return _next(context);
        string? header = context.Request.Headers.Authorization;
        const string scheme = "Bearer ";
        if (string.IsNullOrEmpty(header))
            throw new RequestException(StatusCodes.Status401Unauthorized,
                "No API key was given: send it as the header 'Authorization: Bearer KEY' (the key the server was started with).", null, "missing_api_key");
        if (!header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
            throw new RequestException(StatusCodes.Status401Unauthorized,
                "The Authorization header must be 'Bearer KEY'; another scheme was given.", null, "invalid_api_key");
        var given = SHA256.HashData(Encoding.UTF8.GetBytes(header.AsSpan(scheme.Length).Trim().ToString()));
        if (!CryptographicOperations.FixedTimeEquals(given, _keyDigest))
            throw new RequestException(StatusCodes.Status401Unauthorized,
                "Incorrect API key provided in the Authorization header.", null, "invalid_api_key");
        return _next(context);
    }

    /// <summary>Paths open without a key: the health check and the web page (which asks for the key itself).</summary>
    internal static bool IsPublic(PathString path) =>
        path == "/" || path.Equals("/index.html", StringComparison.OrdinalIgnoreCase) || path.StartsWithSegments("/healthz", StringComparison.OrdinalIgnoreCase);
}

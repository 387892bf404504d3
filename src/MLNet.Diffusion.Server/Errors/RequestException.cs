namespace MLNet.Diffusion.Server.Errors;

/// <summary>
/// A request the server refuses: the HTTP status, a message that names the field and says how to fix it, the field
/// (OpenAI's <c>param</c>) and a machine-readable code. <see cref="ErrorHandlingMiddleware"/> writes it in the shape of
/// the API that was called.
/// </summary>
internal sealed class RequestException(int statusCode, string message, string? param = null, string? code = null) : Exception(message)
{
    /// <summary>The HTTP status code (400, 401, 404, 413, 415, 429…).</summary>
    public int StatusCode { get; } = statusCode;

    /// <summary>The request field at fault, as the client spelled it; null when the request as a whole is.</summary>
    public string? Param { get; } = param;

    /// <summary>A short machine-readable code (OpenAI's <c>code</c>: <c>invalid_value</c>, <c>model_not_found</c>…).</summary>
    public string? Code { get; } = code;

    /// <summary>Seconds to wait before retrying (sent as <c>Retry-After</c>); only for 429 and 503.</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <summary>400: a field has a bad value.</summary>
    public static RequestException BadValue(string param, string message) => new(StatusCodes.Status400BadRequest, message, param, "invalid_value");

    /// <summary>400: a required field is missing.</summary>
    public static RequestException Missing(string param, string message) => new(StatusCodes.Status400BadRequest, message, param, "missing_required_parameter");
}

using System.Text.Json;

namespace MLNet.Diffusion.Server.Errors;

/// <summary>
/// Writes an error body in the shape of the API called. OpenAI (its API reference, "Error codes"):
/// <c>{"error":{"message","type","param","code"}}</c>, type <c>invalid_request_error</c> for 4xx, <c>rate_limit_error</c>
/// for 429 and <c>server_error</c> for 5xx. AUTOMATIC1111 (a FastAPI app): a bad field is 422 with
/// <c>{"detail":[{"loc":["body",FIELD],"msg","type"}]}</c> as FastAPI's validation errors are; anything else is
/// <c>{"detail": MESSAGE}</c> as its <c>HTTPException</c>s are.
/// </summary>
internal static class ErrorWriter
{
    /// <summary>Writes <paramref name="error"/> as the response (the response must not have started).</summary>
    public static Task WriteAsync(HttpContext context, RequestException error)
    {
        var response = context.Response;
        var family = ApiFamilies.Of(context.Request.Path);
        int status = error.StatusCode;
        // FastAPI answers a request that does not validate with 422; A1111's own clients expect it.
        if (family == ApiFamily.Automatic1111 && status == StatusCodes.Status400BadRequest && error.Param is not null)
            status = StatusCodes.Status422UnprocessableEntity;
        response.StatusCode = status;
        if (error.RetryAfterSeconds is int seconds)
            response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (status == StatusCodes.Status401Unauthorized)
            response.Headers.WWWAuthenticate = "Bearer";
        response.ContentType = "application/json";

        var output = new MemoryStream();
        using (var json = new Utf8JsonWriter(output))
        {
            json.WriteStartObject();
            if (family == ApiFamily.OpenAI)
            {
                json.WriteStartObject("error");
                json.WriteString("message", error.Message);
                json.WriteString("type", status switch
                {
                    StatusCodes.Status429TooManyRequests => "rate_limit_error",
                    >= 500 => "server_error",
                    _ => "invalid_request_error",
                });
                WriteNullable(json, "param", error.Param);
                WriteNullable(json, "code", error.Code);
                json.WriteEndObject();
            }
            else if (status == StatusCodes.Status422UnprocessableEntity)
            {
                json.WriteStartArray("detail");
                json.WriteStartObject();
                json.WriteStartArray("loc");
                json.WriteStringValue("body");
                json.WriteStringValue(error.Param);
                json.WriteEndArray();
                json.WriteString("msg", error.Message);
                json.WriteString("type", error.Code ?? "value_error");
                json.WriteEndObject();
                json.WriteEndArray();
            }
            else
            {
                json.WriteString("detail", error.Message);
                if (error.Code is not null) json.WriteString("error", error.Code);
            }
            json.WriteEndObject();
        }
        return response.Body.WriteAsync(output.GetBuffer().AsMemory(0, (int)output.Length)).AsTask();
    }

    private static void WriteNullable(Utf8JsonWriter json, string name, string? value)
    {
        if (value is null) json.WriteNull(name);
        else json.WriteString(name, value);
    }
}

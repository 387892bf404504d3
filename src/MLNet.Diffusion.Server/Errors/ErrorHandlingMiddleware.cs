using Microsoft.Extensions.Logging;

namespace MLNet.Diffusion.Server.Errors;

/// <summary>
/// Turns what a request can fail with into an answer in its API's error shape, so that nothing a client sends crashes
/// the server or leaks a stack trace: <see cref="RequestException"/> as it says; Kestrel's <see cref="BadHttpRequestException"/>
/// (a body over the limit: 413) with its status; a cancelled request whose client has gone, with nothing; anything else
/// as 500, logged.
/// </summary>
internal sealed class ErrorHandlingMiddleware(RequestDelegate next, ILogger<ErrorHandlingMiddleware> logger)
{
    /// <summary>Runs the rest of the pipeline and answers its failures.</summary>
    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await next(context).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away: nobody is left to answer.
        }
        catch (RequestException e) when (!context.Response.HasStarted)
        {
            await ErrorWriter.WriteAsync(context, e).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            string message = e.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? $"The request body is larger than the server's limit. {e.Message}"
                : e.Message;
            await ErrorWriter.WriteAsync(context, new RequestException(e.StatusCode, message, null,
                e.StatusCode == StatusCodes.Status413PayloadTooLarge ? "request_too_large" : "bad_request")).ConfigureAwait(false);
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            logger.LogError(e, "{Method} {Path} failed", context.Request.Method, context.Request.Path);
            await ErrorWriter.WriteAsync(context, new RequestException(StatusCodes.Status500InternalServerError,
                $"The server failed while answering: {e.GetType().Name}: {e.Message}", null, "server_error")).ConfigureAwait(false);
        }
    }
}

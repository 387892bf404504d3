using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using MLNet.Diffusion.Server.Errors;
using MLNet.Diffusion.Server.Security;

namespace MLNet.Diffusion.Server;

/// <summary>
/// Puts the server's middleware at the front of the host's pipeline, for the server's paths only: errors in each API's
/// shape, then the API key, then the body-size limit, so that an unauthenticated client's body is never read.
/// </summary>
internal sealed class DiffusionServerStartupFilter : IStartupFilter
{
    /// <inheritdoc />
    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
    {
        app.UseWhen(c => ServerPaths.IsServers(c.Request.Path), server =>
        {
            server.UseMiddleware<ErrorHandlingMiddleware>();
            server.UseMiddleware<ApiKeyMiddleware>();
            server.UseMiddleware<RequestBodyLimitMiddleware>();
        });
        next(app);
    };
}

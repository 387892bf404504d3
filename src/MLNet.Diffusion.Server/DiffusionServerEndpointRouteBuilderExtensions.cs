using System.Reflection;
using Microsoft.AspNetCore.Routing;
using MLNet.Diffusion.Server;
using MLNet.Diffusion.Server.Api.Automatic1111;
using MLNet.Diffusion.Server.Api.OpenAI;
using MLNet.Diffusion.Server.Queue;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps the diffusion HTTP server's endpoints (after <c>services.AddDiffusionServer()</c>).</summary>
public static class DiffusionServerEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps OpenAI's images API (<c>/v1/images/generations</c>, <c>/v1/images/edits</c>, <c>/v1/models</c>),
    /// AUTOMATIC1111's (<c>/sdapi/v1/txt2img</c>, <c>img2img</c>, <c>samplers</c>, <c>sd-models</c>, <c>progress</c>,
    /// <c>interrupt</c>), <c>GET /healthz</c> and, unless <see cref="DiffusionServerOptions.ServeWebPage"/> is false, the
    /// web page at <c>/</c>.
    /// </summary>
    public static IEndpointRouteBuilder MapDiffusionApi(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        var options = endpoints.ServiceProvider.GetService(typeof(DiffusionServerOptions)) as DiffusionServerOptions
            ?? throw new InvalidOperationException("MapDiffusionApi needs the server's services: call services.AddDiffusionServer() first.");
        OpenAIImagesApi.Map(endpoints);
        A1111Api.Map(endpoints);
        endpoints.MapGet("/healthz", (ImageGenerationService service) =>
        {
            var (running, waiting) = service.Queue.Counts;
            return Results.Json(new { status = "ok", models = service.Models.Names, running, waiting });
        });
        if (options.ServeWebPage)
        {
            endpoints.MapGet("/", () => Results.Bytes(WebPage.Value, "text/html; charset=utf-8"));
            endpoints.MapGet("/index.html", () => Results.Bytes(WebPage.Value, "text/html; charset=utf-8"));
        }
        return endpoints;
    }

    private static readonly Lazy<byte[]> WebPage = new(() =>
    {
        using var stream = typeof(DiffusionServerOptions).Assembly.GetManifestResourceStream("MLNet.Diffusion.Server.index.html")
            ?? throw new InvalidOperationException("The web page resource MLNet.Diffusion.Server.index.html is missing from the assembly.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });
}

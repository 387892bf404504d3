using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MLNet.Diffusion;
using MLNet.Diffusion.Server;
using MLNet.Diffusion.Server.Queue;
using OpenAI;
using OpenAI.Images;

namespace MLNet.Diffusion.Server.Tests;

/// <summary>
/// The server in memory (ASP.NET Core's test server) over the built-in demo model, served as "demo", with the options a
/// test sets; its <see cref="Client"/> talks to it, and <see cref="ImageClient"/> is the official OpenAI SDK pointed at it.
/// </summary>
internal sealed class ServerHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ServerHost(WebApplication app)
    {
        _app = app;
        Client = app.GetTestServer().CreateClient();
    }

    /// <summary>The demo model's folder (built once per machine).</summary>
    public static string DemoFolder { get; } = DemoModel.EnsureBuilt();

    /// <summary>Holds the demo model loaded for the whole test run, so that each server's load shares its sessions
    /// (the library's one store of loaded models) instead of loading again.</summary>
    private static readonly StableDiffusionPipeline s_keepLoaded = StableDiffusionPipeline.Load(DemoFolder);

    /// <summary>An HTTP client to the server.</summary>
    public HttpClient Client { get; }

    /// <summary>The server's services.</summary>
    public IServiceProvider Services => _app.Services;

    /// <summary>The queue in front of the engine.</summary>
    public GenerationQueue Queue => _app.Services.GetRequiredService<GenerationQueue>();

    /// <summary>Starts a server with the demo model as "demo" and <paramref name="configure"/>'s options.</summary>
    public static async Task<ServerHost> StartAsync(Action<DiffusionServerOptions>? configure = null)
    {
        GC.KeepAlive(s_keepLoaded);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseTestServer();
        builder.Logging.ClearProviders();
        builder.Services.AddDiffusionServer(options =>
        {
            options.Models["demo"] = DemoFolder;
            configure?.Invoke(options);
        });
        var app = builder.Build();
        app.MapDiffusionApi();
        await app.StartAsync();
        return new ServerHost(app);
    }

    /// <summary>The official OpenAI SDK's image client for <paramref name="model"/>, sending through <see cref="Client"/>.</summary>
    /// <param name="model">The model name.</param>
    /// <param name="apiKey">The key the SDK sends as a bearer token.</param>
    /// <param name="extra">The server's extra JSON fields (seed, steps…) to add to each request body.</param>
    public ImageClient ImageClient(string model = "demo", string apiKey = "unused", IReadOnlyDictionary<string, object>? extra = null)
    {
        var options = new OpenAIClientOptions
        {
            Endpoint = new Uri(Client.BaseAddress!, "/v1"),
            Transport = new HttpClientPipelineTransport(Client),
            NetworkTimeout = TimeSpan.FromMinutes(2),
            RetryPolicy = new ClientRetryPolicy(0),
        };
        if (extra is not null) options.AddPolicy(new ExtraFieldsPolicy(extra), PipelinePosition.PerCall);
        return new(model, new ApiKeyCredential(apiKey), options);
    }

    /// <summary>POSTs <paramref name="json"/> to <paramref name="path"/>.</summary>
    public Task<HttpResponseMessage> PostJsonAsync(string path, string json, CancellationToken cancellationToken = default) =>
        Client.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"), cancellationToken);

    /// <summary>The response body as JSON (asserting the content type is JSON).</summary>
    public static async Task<JsonElement> JsonAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return document.RootElement.Clone();
    }

    /// <summary>Adds a bearer key to <see cref="Client"/>'s requests.</summary>
    public void UseKey(string key) => Client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

    /// <summary>Waits (up to <paramref name="timeout"/>) until <paramref name="condition"/> holds.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var end = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > end) throw new TimeoutException($"Timed out waiting for {what}.");
            await Task.Delay(10);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

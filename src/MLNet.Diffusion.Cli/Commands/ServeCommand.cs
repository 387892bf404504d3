using System.ComponentModel;
using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Server;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// <c>serve</c>: an HTTP server in front of the engine that OpenAI's and AUTOMATIC1111's clients already speak, with a
/// web page at <c>/</c>. It listens on loopback unless told otherwise, and refuses any other address without an API
/// key. Ctrl+C stops it (exit code 0).
/// </summary>
internal sealed class ServeCommand(CliEnvironment environment) : Command<ServeCommand.Settings>
{
    /// <summary>The environment variable that gives the API key when --api-key does not.</summary>
    public const string ApiKeyVariable = "MLNET_DIFFUSION_API_KEY";

    /// <summary>The address served by default: loopback only.</summary>
    public const string DefaultUrls = "http://127.0.0.1:7860";

    internal sealed class Settings : CliSettings
    {
        [CommandOption("-m|--model <MODEL>")]
        [Description("A model to serve, DIR or NAME=DIR (repeat for more; the first is the default). Requests name models by NAME only (default NAME: the folder's name). Default: the built-in demo model, as 'demo'.")]
        public string[] Models { get; init; } = [];

        [CommandOption("--urls <URLS>")]
        [Description("Where to listen, separated by ';'. Default: http://127.0.0.1:7860 (this machine only). An address other than loopback needs --api-key.")]
        [DefaultValue(DefaultUrls)]
        public string Urls { get; init; } = DefaultUrls;

        [CommandOption("--api-key <KEY>")]
        [Description("Clients must send 'Authorization: Bearer KEY'. Default: $MLNET_DIFFUSION_API_KEY; without either, no key is asked for (loopback only).")]
        public string? ApiKey { get; init; }

        [CommandOption("--device <DEVICE>")]
        [Description("cpu, cuda or cuda:N.")]
        [DefaultValue("cpu")]
        public string Device { get; init; } = "cpu";

        [CommandOption("--max-concurrency <N>")]
        [Description("Generations running at once (default 1; the UNet already uses every core).")]
        [DefaultValue(1)]
        public int MaxConcurrency { get; init; } = 1;

        [CommandOption("--max-queue <N>")]
        [Description("Requests that may wait for a free slot; beyond it clients get 429 with Retry-After (default 16).")]
        [DefaultValue(16)]
        public int MaxQueue { get; init; } = 16;

        [CommandOption("--max-steps <N>")]
        [Description("The most inference steps a request may ask for (default 150).")]
        [DefaultValue(150)]
        public int MaxSteps { get; init; } = 150;

        [CommandOption("--max-images <N>")]
        [Description("The most images per request: OpenAI's n, A1111's batch_size x n_iter (default 8).")]
        [DefaultValue(8)]
        public int MaxImages { get; init; } = 8;

        [CommandOption("--max-size <WxH>")]
        [Description("The largest image a request may ask for, as a pixel count WxH (default 1024x1024).")]
        [DefaultValue("1024x1024")]
        public string MaxSize { get; init; } = "1024x1024";

        [CommandOption("--max-body-mb <MB>")]
        [Description("The largest request body in MiB (default 16).")]
        [DefaultValue(16)]
        public int MaxBodyMegabytes { get; init; } = 16;
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string? apiKey = !string.IsNullOrEmpty(settings.ApiKey) ? settings.ApiKey : environment.GetVariable(ApiKeyVariable);
        var urls = ParseUrls(settings.Urls);
        var exposed = urls.Where(u => !IsLoopback(u.Uri)).ToArray();
        if (exposed.Length > 0 && string.IsNullOrEmpty(apiKey))
            throw new UserException($"--urls {string.Join(';', exposed.Select(u => u.Text))} listens beyond this machine (not a loopback address), " +
                $"and no API key is set: anyone who can reach it could use this computer. Give --api-key KEY (or set {ApiKeyVariable}), or listen on http://127.0.0.1.");
        var models = ParseModels(settings.Models);
        var (device, deviceId) = OptionParsing.ParseDevice(settings.Device);
        var maxSize = OptionParsing.ParseSize(settings.MaxSize);
        OptionParsing.Check(SettingLimits.Count("--max-body-mb", settings.MaxBodyMegabytes, 1, 4096));

        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls([.. urls.Select(u => u.Text)]);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = (long)settings.MaxBodyMegabytes << 20);
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(new StderrLoggerProvider(environment));
        try
        {
            builder.Services.AddDiffusionServer(o =>
            {
                foreach (var (name, folder) in models) o.Models[name] = folder;
                o.ApiKey = apiKey;
                o.RuntimeOptions = new DiffusionRuntimeOptions { Device = device, DeviceId = deviceId, Logger = new StderrLogger(environment) };
                o.MaxConcurrency = settings.MaxConcurrency;
                o.MaxQueueLength = settings.MaxQueue;
                o.MaxSteps = settings.MaxSteps;
                o.MaxImagesPerRequest = settings.MaxImages;
                o.MaxImagePixels = (long)maxSize.Width * maxSize.Height;
                o.MaxRequestBodyBytes = (long)settings.MaxBodyMegabytes << 20;
            });
        }
        catch (ArgumentException e)
        {
            // The server's option names, said as the tool's options.
            throw new UserException(Program.MessageOf(e)
                .Replace("DiffusionServerOptions.MaxConcurrency", "--max-concurrency", StringComparison.Ordinal)
                .Replace("DiffusionServerOptions.MaxQueueLength", "--max-queue", StringComparison.Ordinal)
                .Replace("DiffusionServerOptions.MaxSteps", "--max-steps", StringComparison.Ordinal)
                .Replace("DiffusionServerOptions.MaxImagesPerRequest", "--max-images", StringComparison.Ordinal));
        }
        if (models.Count == 0)
            DemoModel.EnsureBuilt(ModelLocator.DemoModelDirectory(environment), line => environment.Console.MarkupLineInterpolated($"[grey]{line}[/]"));

        using var app = builder.Build();
        app.MapDiffusionApi();
        try
        {
            app.StartAsync(cancellationToken).GetAwaiter().GetResult();
        }
        catch (IOException e)
        {
            throw new UserException($"--urls: cannot listen on {settings.Urls}: {e.Message}");
        }
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        var served = models.Count == 0 ? [DiffusionServerOptions.DemoModelName] : models.Select(m => m.Name);
        environment.Console.MarkupLineInterpolated($"Serving {string.Join(", ", served)} on {string.Join(", ", addresses)} ({(string.IsNullOrEmpty(apiKey) ? "no API key" : "API key required")}).");
        environment.Console.MarkupLineInterpolated($"[grey]OpenAI: POST /v1/images/generations  A1111: POST /sdapi/v1/txt2img  Web page: /  Ctrl+C stops.[/]");
        try
        {
            Task.Delay(Timeout.Infinite, cancellationToken).GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            // Ctrl+C: the normal way to stop a server.
        }
        app.StopAsync(CancellationToken.None).GetAwaiter().GetResult();
        environment.Console.MarkupLine("Stopped.");
        return Program.Success;
    }

    /// <summary>The addresses of --urls, as given (for Kestrel) and as a URI (for the loopback check); each must be an
    /// absolute http or https URL. Kestrel's wildcard hosts (<c>*</c>, <c>+</c>) mean every address.</summary>
    internal static (string Text, Uri Uri)[] ParseUrls(string text)
    {
        var parts = text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0) throw new UserException("--urls names no address; give e.g. http://127.0.0.1:7860.");
        return [.. parts.Select(p =>
        {
            string normal = p.Replace("://*", "://0.0.0.0", StringComparison.Ordinal).Replace("://+", "://0.0.0.0", StringComparison.Ordinal);
            if (!Uri.TryCreate(normal, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
                throw new UserException($"--urls: '{p}' is not an http:// or https:// URL (e.g. http://127.0.0.1:7860).");
            return (p, uri);
        })];
    }

    /// <summary>Whether <paramref name="url"/> listens on loopback only (localhost, 127.0.0.0/8, ::1).</summary>
    internal static bool IsLoopback(Uri url) =>
        url.IsLoopback || (IPAddress.TryParse(url.Host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));

    /// <summary>--model values, DIR or NAME=DIR, as (name, full path); each folder must exist and each name be distinct.</summary>
    internal static List<(string Name, string Folder)> ParseModels(IEnumerable<string> values)
    {
        var models = new List<(string Name, string Folder)>();
        foreach (var value in values)
        {
            int equals = value.IndexOf('=');
            bool named = equals > 0 && value.AsSpan(0, equals).IndexOfAny('/', '\\') < 0;
            string name = named ? value[..equals].Trim() : "";
            string folder = Path.GetFullPath(named ? value[(equals + 1)..] : value);
            if (!named) name = Path.GetFileName(Path.TrimEndingDirectorySeparator(folder));
            if (!Directory.Exists(folder)) throw new UserException($"--model {value}: the folder '{folder}' does not exist.");
            if (name.Length == 0) throw new UserException($"--model {value}: the model needs a name; give NAME=DIR.");
            if (models.Any(m => m.Name == name))
                throw new UserException($"--model {value}: the name '{name}' is given twice; name each model (NAME=DIR).");
            models.Add((name, folder));
        }
        return models;
    }

    /// <summary>Sends the host's log to standard error through <see cref="StderrLogger"/> (warnings; with --verbose, information).</summary>
    private sealed class StderrLoggerProvider(CliEnvironment environment) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new StderrLogger(environment);

        public void Dispose() { }
    }
}

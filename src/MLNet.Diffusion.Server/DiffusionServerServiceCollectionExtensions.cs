using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection.Extensions;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Server;
using MLNet.Diffusion.Server.Models;
using MLNet.Diffusion.Server.Queue;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the diffusion HTTP server's services; <c>app.MapDiffusionApi()</c> maps its endpoints.</summary>
public static class DiffusionServerServiceCollectionExtensions
{
    /// <summary>
    /// Registers the server: the model catalog (models by name only), the bounded generation queue, the metrics
    /// (meter <c>MLNet.Diffusion.Server</c>) and the middleware for the server's paths (errors in each API's shape,
    /// bearer-key authentication when <see cref="DiffusionServerOptions.ApiKey"/> is set, the body-size limit).
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="configure">Sets the options (models, key, limits); null: the demo model, no key, the defaults.</param>
    /// <exception cref="ArgumentException">An option is out of range (the message names it).</exception>
    public static IServiceCollection AddDiffusionServer(this IServiceCollection services, Action<DiffusionServerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = new DiffusionServerOptions();
        configure?.Invoke(options);
        Validate(options);
        services.AddMetrics();
        services.AddSingleton(options);
        services.AddSingleton<ModelCatalog>();
        services.AddSingleton<GenerationQueue>();
        services.AddSingleton(sp => new ServerMetrics(sp.GetRequiredService<IMeterFactory>(), () => sp.GetRequiredService<GenerationQueue>().Counts));
        services.AddSingleton<ImageGenerationService>();
        services.AddHostedService<ModelWarmup>();
        services.TryAddEnumerable(ServiceDescriptor.Transient<IStartupFilter, DiffusionServerStartupFilter>());
        return services;
    }

    private static void Validate(DiffusionServerOptions options)
    {
        const string p = nameof(DiffusionServerOptions);
        var problems = new[]
        {
            SettingLimits.Count($"{p}.{nameof(options.MaxConcurrency)}", options.MaxConcurrency, 1, 1024),
            SettingLimits.Count($"{p}.{nameof(options.MaxQueueLength)}", options.MaxQueueLength, 0, 1_000_000),
            SettingLimits.Count($"{p}.{nameof(options.RetryAfterSeconds)}", options.RetryAfterSeconds, 1, 3600),
            SettingLimits.Count($"{p}.{nameof(options.MaxSteps)}", options.MaxSteps, SettingLimits.MinSteps, SettingLimits.MaxSteps),
            SettingLimits.Count($"{p}.{nameof(options.MaxImagesPerRequest)}", options.MaxImagesPerRequest, 1, SettingLimits.MaxImagesPerPrompt),
            SettingLimits.Count($"{p}.{nameof(options.MaxBatchSize)}", options.MaxBatchSize, 1, SettingLimits.MaxBatchSize),
            options.MaxRequestBodyBytes < 1 ? $"{p}.{nameof(options.MaxRequestBodyBytes)} must be 1 or more; got {options.MaxRequestBodyBytes}." : null,
            options.MaxImagePixels < SettingLimits.MinSize * SettingLimits.MinSize
                ? $"{p}.{nameof(options.MaxImagePixels)} must be {SettingLimits.MinSize * SettingLimits.MinSize} or more; got {options.MaxImagePixels}." : null,
        };
        foreach (var (name, folder) in options.Models)
        {
            if (string.IsNullOrWhiteSpace(name) || string.IsNullOrWhiteSpace(folder))
                throw new ArgumentException($"{p}.{nameof(options.Models)} has an entry with an empty name or folder ('{name}' = '{folder}'); give NAME=FOLDER.", nameof(options));
        }
        SettingLimits.ThrowIfAny(problems.OfType<string>(), nameof(options));
    }
}

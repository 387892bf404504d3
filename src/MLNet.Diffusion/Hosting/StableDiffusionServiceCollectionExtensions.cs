using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MLNet.Diffusion.Hosting;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers Stable Diffusion pipelines and image generators in a service container.</summary>
public static class StableDiffusionServiceCollectionExtensions
{
    /// <summary>
    /// Registers a Stable Diffusion model: <see cref="StableDiffusionPipeline"/> and <see cref="IImageGenerator"/>
    /// (a <see cref="StableDiffusionImageGenerator"/> with <see cref="StableDiffusionServiceOptions.DefaultGenerationOptions"/>),
    /// both singletons, plus the shared <see cref="IDiffusionPipelineProvider"/>.
    /// </summary>
    /// <remarks>
    /// Nothing loads at registration. The options are checked, and the model folder loaded, when the pipeline (or the
    /// generator) is first resolved; later resolutions, in any scope, return the same instance, and every registration
    /// or consumer of the provider that names the same folder shares that one pipeline. Pipelines are disposed with the
    /// container. When the container has an <see cref="ILoggerFactory"/>, pipelines log through it. The options can
    /// also be bound from configuration with <c>services.Configure&lt;StableDiffusionServiceOptions&gt;(section)</c>.
    /// An <see cref="IImageGenerator"/> or <see cref="StableDiffusionPipeline"/> registered earlier is kept; use the
    /// named overload to add more models beside it.
    /// </remarks>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Sets the options; <see cref="StableDiffusionServiceOptions.ModelPath"/> is required.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddStableDiffusion(this IServiceCollection services, Action<StableDiffusionServiceOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        AddCore(services, Options.Options.DefaultName, configure);
        services.TryAddSingleton(sp => Pipeline(sp, Options.Options.DefaultName));
        services.TryAddSingleton(sp => Generator(sp, Options.Options.DefaultName, sp.GetRequiredService<StableDiffusionPipeline>()));
        return services;
    }

    /// <summary>
    /// Registers a Stable Diffusion model under <paramref name="name"/>: keyed services
    /// <see cref="StableDiffusionPipeline"/> and <see cref="IImageGenerator"/> with key <paramref name="name"/>
    /// (resolve with <c>GetRequiredKeyedService</c> or <c>[FromKeyedServices(name)]</c>), options named
    /// <paramref name="name"/>, and the shared <see cref="IDiffusionPipelineProvider"/>. Use it once per model folder.
    /// </summary>
    /// <remarks>Loading, sharing and disposal are as for the unnamed overload.</remarks>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The registration's name: the service key and the options name.</param>
    /// <param name="configure">Sets the options; <see cref="StableDiffusionServiceOptions.ModelPath"/> is required.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddStableDiffusion(this IServiceCollection services, string name, Action<StableDiffusionServiceOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(configure);
        AddCore(services, name, configure);
        services.TryAddKeyedSingleton(name, (sp, _) => Pipeline(sp, name));
        services.TryAddKeyedSingleton(name, (sp, _) => Generator(sp, name, sp.GetRequiredKeyedService<StableDiffusionPipeline>(name)));
        return services;
    }

    private static void AddCore(IServiceCollection services, string name, Action<StableDiffusionServiceOptions> configure)
    {
        services.AddOptions<StableDiffusionServiceOptions>(name).Configure(configure);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<StableDiffusionServiceOptions>, StableDiffusionServiceOptionsValidator>());
        if (!services.Any(d => d.ServiceType == typeof(StableDiffusionRegistration) && d.ImplementationInstance is StableDiffusionRegistration r && r.Name == name))
            services.AddSingleton(new StableDiffusionRegistration(name));
        services.TryAddSingleton(sp => new StableDiffusionRegistrations(
            sp.GetServices<StableDiffusionRegistration>(),
            sp.GetRequiredService<IOptionsMonitor<StableDiffusionServiceOptions>>(),
            sp.GetService<ILoggerFactory>()));
        services.TryAddSingleton(sp => new DiffusionPipelineProvider(sp.GetRequiredService<StableDiffusionRegistrations>().RuntimeFor));
        services.TryAddSingleton<IDiffusionPipelineProvider>(sp => sp.GetRequiredService<DiffusionPipelineProvider>());
    }

    /// <summary>The registration's pipeline: its options are validated (throwing <see cref="OptionsValidationException"/>
    /// with each problem's option named), then the shared provider loads or returns the folder's pipeline.</summary>
    private static StableDiffusionPipeline Pipeline(IServiceProvider services, string name)
    {
        var options = services.GetRequiredService<StableDiffusionRegistrations>().Options(name);
        return services.GetRequiredService<DiffusionPipelineProvider>().Get(options.ModelPath!);
    }

    // IImageGenerator is experimental in Microsoft.Extensions.AI (MEAI001); registering it is this method's purpose.
#pragma warning disable MEAI001
    private static IImageGenerator Generator(IServiceProvider services, string name, StableDiffusionPipeline pipeline)
    {
        var options = services.GetRequiredService<StableDiffusionRegistrations>().Options(name);
        return new StableDiffusionImageGenerator(pipeline, options.DefaultGenerationOptions, options.MaxBatchSize);
    }
#pragma warning restore MEAI001
}

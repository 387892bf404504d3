using Microsoft.Extensions.Hosting;

namespace MLNet.Diffusion.Server.Models;

/// <summary>
/// Loads every served model when the host starts, so that a folder that does not load stops the server at once with
/// its message (not at the first request), and the first request does not wait for the load.
/// </summary>
internal sealed class ModelWarmup(ModelCatalog models, DiffusionServerOptions options) : IHostedService
{
    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!options.LoadModelsAtStartup) return Task.CompletedTask;
        foreach (var name in models.Names)
        {
            cancellationToken.ThrowIfCancellationRequested();
            models.Get(name, "model");
        }
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// One activation per device key and silo (<see cref="StatelessWorkerAttribute"/> with one local activation, always on the
/// caller's silo): holds a loaded pipeline per model folder, loaded through <see cref="StableDiffusionPipeline.Load"/> so
/// that it shares the process's <c>LoadedModelStore</c> entry. The engine runs on the thread pool, not on the silo's
/// scheduler threads.
/// </summary>
[StatelessWorker(1)]
internal sealed class GenerationWorkerGrain(ILogger<GenerationWorkerGrain> logger, ILocalSiloDetails silo) : Grain, IGenerationWorkerGrain
{
    private readonly Dictionary<string, StableDiffusionPipeline> _pipelines = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _loadFailures = new(StringComparer.Ordinal);

    public async Task<WorkResult> Run(WorkItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        string worker = $"{silo.SiloAddress}/{this.GetPrimaryKeyString()}";
        var pipeline = await GetPipeline(item.Settings.ModelDirectory);
        if (pipeline is null)
            return new WorkResult { ItemId = item.ItemId, LeaseId = item.LeaseId, Worker = worker, WorkerError = _loadFailures[item.Settings.ModelDirectory] };
        var rows = await Task.Run(() => Generate(pipeline, item));
        return new WorkResult { ItemId = item.ItemId, LeaseId = item.LeaseId, Worker = worker, SettingsText = item.Settings.Describe(pipeline), Rows = rows };
    }

    /// <summary>The item's rows in one engine call; when that call fails, each row alone, so a bad row fails by itself.</summary>
    private static RowResult[] Generate(StableDiffusionPipeline pipeline, WorkItem item)
    {
        var options = item.Settings.ToOptions();
        var requests = item.Rows.Select(Request).ToArray();
        var clock = Stopwatch.StartNew();
        try
        {
            var images = pipeline.Generate(requests, options);
            double seconds = clock.Elapsed.TotalSeconds / Math.Max(1, requests.Length);
            var results = new RowResult[images.Count];
            for (int i = 0; i < results.Length; i++)
            {
                using var image = images[i];
                results[i] = new RowResult { Row = item.Rows[i].Row, Png = PngBytes.Of(image.Image), Seconds = seconds };
            }
            return results;
        }
        catch (Exception e) when (item.Rows.Length > 1 && e is not OperationCanceledException)
        {
            return [.. item.Rows.Select(row => GenerateOne(pipeline, row, options))];
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return [new RowResult { Row = item.Rows[0].Row, Error = MessageOf(e) }];
        }
    }

    private static RowResult GenerateOne(StableDiffusionPipeline pipeline, GenerationRow row, GenerationOptions options)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            using var image = pipeline.Generate([Request(row)], options)[0];
            return new RowResult { Row = row.Row, Png = PngBytes.Of(image.Image), Seconds = clock.Elapsed.TotalSeconds };
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return new RowResult { Row = row.Row, Error = MessageOf(e) };
        }
    }

    private static ImagePrompt Request(GenerationRow row) =>
        new(row.Prompt, row.Seed) { NegativePrompt = row.NegativePrompt, GuidanceScale = row.GuidanceScale };

    private static string MessageOf(Exception e) => $"{e.GetType().Name}: {e.Message}";

    private async Task<StableDiffusionPipeline?> GetPipeline(string modelDirectory)
    {
        if (_pipelines.TryGetValue(modelDirectory, out var pipeline)) return pipeline;
        if (_loadFailures.ContainsKey(modelDirectory)) return null;
        var options = WorkerDevice.RuntimeOptions(this.GetPrimaryKeyString());
        try
        {
            pipeline = await Task.Run(() => StableDiffusionPipeline.Load(modelDirectory, options));
            _pipelines.Add(modelDirectory, pipeline);
            return pipeline;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or ArgumentException
            or NotSupportedException or InvalidOperationException or Microsoft.ML.OnnxRuntime.OnnxRuntimeException)
        {
            var message = $"The worker {silo.SiloAddress}/{this.GetPrimaryKeyString()} cannot load the model '{modelDirectory}': {e.Message}";
            logger.LogError(e, "{Message}", message);
            _loadFailures.Add(modelDirectory, message);
            return null;
        }
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        foreach (var pipeline in _pipelines.Values) pipeline.Dispose();
        _pipelines.Clear();
        return Task.CompletedTask;
    }
}

// Microsoft.Extensions.AI marks its image-generation abstraction experimental ([Experimental("MEAI001")]).
// This file implements that abstraction, so it opts in to MEAI001 here; nothing else is suppressed.
#pragma warning disable MEAI001

using System.Globalization;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MLNet.Diffusion.Hosting;

namespace MLNet.Diffusion.Orleans;

/// <summary>
/// Text-to-image generation on an Orleans cluster behind Microsoft.Extensions.AI's <see cref="IImageGenerator"/>: set it as
/// <see cref="DiffusionOptions.ImageGenerator"/> and <c>GenerateImages</c> over an <c>IDataView</c> sends its batches to the
/// cluster's workers instead of the local device. Requests that arrive within <see cref="GatherWindow"/> of each other and
/// share their settings become one generation job (<see cref="IGenerationJobGrain"/>, with <see cref="JobSpec.ReturnToCaller"/>):
/// the job splits their images into work items of <see cref="BatchSize"/>, leases them to workers, re-issues the items of a
/// worker or silo that died, and holds each row's image, committed exactly once, until this client takes it. An image depends
/// only on its prompt, seed and settings, so it equals the one <see cref="StableDiffusionImageGenerator"/> makes locally
/// with the same model.
/// </summary>
/// <remarks>
/// <para>A request reads what <see cref="StableDiffusionImageGenerator"/> reads that a cluster job carries:
/// <see cref="ImageGenerationOptions.Count"/> (image i takes seed + i), <see cref="ImageGenerationOptions.ImageSize"/>,
/// <see cref="ImageGenerationOptions.MediaType"/> (only <c>image/png</c>) and, in
/// <see cref="ImageGenerationOptions.AdditionalProperties"/> under the same names, the seed (a random one when none is
/// given), steps, guidance scale, negative prompt, scheduler, η and guidance rescale. The noise kind, guidance window,
/// aesthetic scores and control scale are refused (<see cref="NotSupportedException"/> naming the property), as are original
/// images; other additional properties are ignored.</para>
/// <para>The model is the folder <see cref="ModelDirectory"/> as every worker sees it. A row the cluster could not make fails
/// its request with the worker's message. Cancelling every request of a job cancels the job.</para>
/// </remarks>
public sealed class ClusterImageGenerator : IImageGenerator
{
    /// <summary>The provider name in <see cref="ImageGeneratorMetadata"/>.</summary>
    public const string ProviderName = "MLNet.Diffusion.Orleans";

    private static readonly string[] s_unsupported =
    [
        StableDiffusionImageGenerator.NoiseProperty, StableDiffusionImageGenerator.GuidanceIntervalLowProperty, StableDiffusionImageGenerator.GuidanceIntervalHighProperty,
        StableDiffusionImageGenerator.GuidanceEndProperty, StableDiffusionImageGenerator.AestheticScoreProperty, StableDiffusionImageGenerator.NegativeAestheticScoreProperty,
        StableDiffusionImageGenerator.ControlScaleProperty,
    ];

    private readonly IGrainFactory _grains;
    private readonly IHost? _ownedHost;
    private readonly ImageGeneratorMetadata _metadata;
    private readonly object _gate = new();
    private List<Pending>? _gathering;

    /// <summary>One request waiting for its images: its rows' settings and the rows themselves (seeds seed … seed + count − 1).</summary>
    private sealed class Pending(string prompt, string negativePrompt, float guidanceScale, long seed, int count, JobSettings settings, CancellationToken cancellationToken)
    {
        public string Prompt { get; } = prompt;
        public string NegativePrompt { get; } = negativePrompt;
        public float GuidanceScale { get; } = guidanceScale;
        public long Seed { get; } = seed;
        public int Count { get; } = count;
        public JobSettings Settings { get; } = settings;
        public CancellationToken CancellationToken { get; } = cancellationToken;
        public TaskCompletionSource<ImageGenerationResponse> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int FirstRow { get; set; }
        public int Received { get; set; }
    }

    /// <summary>The settings a job carries, as a key: requests with equal keys share a job.</summary>
    private readonly record struct SettingsKey(int Steps, int? Width, int? Height, string? Scheduler, float Eta, float GuidanceRescale)
    {
        public static SettingsKey Of(JobSettings s) => new(s.Steps, s.Width, s.Height, s.Scheduler, s.Eta, s.GuidanceRescale);
    }

    /// <summary>A generator whose jobs run on the cluster that <paramref name="grains"/> (a started <see cref="IClusterClient"/>, or a silo's grain factory) reaches.</summary>
    /// <param name="grains">The cluster client; the generator uses it but does not own it.</param>
    /// <param name="modelDirectory">The model folder, as every worker sees it (the same path on every machine).</param>
    public ClusterImageGenerator(IGrainFactory grains, string modelDirectory)
        : this(grains, modelDirectory, null)
    {
    }

    private ClusterImageGenerator(IGrainFactory grains, string modelDirectory, IHost? ownedHost)
    {
        ArgumentNullException.ThrowIfNull(grains);
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDirectory);
        _grains = grains;
        _ownedHost = ownedHost;
        ModelDirectory = modelDirectory;
        _metadata = new ImageGeneratorMetadata(ProviderName, null, modelDirectory);
    }

    /// <summary>
    /// Connects a cluster client to <paramref name="cluster"/> (the <c>--cluster</c> string's forms:
    /// <see cref="ClusterConnection.Parse"/>) and returns a generator that owns it: disposing the generator closes the client.
    /// </summary>
    /// <param name="cluster">The cluster.</param>
    /// <param name="modelDirectory">The model folder, as every worker sees it.</param>
    /// <param name="connectTimeout">How long to wait for the cluster (default 30 s).</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <exception cref="ClusterUnreachableException">The cluster did not answer within the time; the message names it and what to check.</exception>
    public static async Task<ClusterImageGenerator> ConnectAsync(ClusterConnection cluster, string modelDirectory, TimeSpan? connectTimeout = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDirectory);
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.UseOrleansClient(cluster.Configure);
        var host = builder.Build();
        try
        {
            await cluster.StartAsync(host, connectTimeout ?? TimeSpan.FromSeconds(30), cancellationToken);
            return new ClusterImageGenerator(host.Services.GetRequiredService<IClusterClient>(), modelDirectory, host);
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    /// <summary>The model folder every worker loads.</summary>
    public string ModelDirectory { get; }

    /// <summary>Images per work item (one engine call on a worker). Images do not depend on it. Default 8.</summary>
    public int BatchSize { get; set; } = 8;

    /// <summary>
    /// How long the first request of a job waits for others to join it (default 20 ms): <c>GenerateImages</c> sends a
    /// batch's images together, so they arrive within this window and become one job.
    /// </summary>
    public TimeSpan GatherWindow { get; set; } = TimeSpan.FromMilliseconds(20);

    /// <summary>How long a worker may hold a work item before it is handed to another (<see cref="JobSpec.LeaseTimeout"/>). Default 5 minutes.</summary>
    public TimeSpan LeaseTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Image bytes a job may hold before this client takes them (<see cref="JobSpec.MaxPendingWriteBytes"/>). Default 256 MiB.</summary>
    public long MaxHeldBytes { get; set; } = 256L << 20;

    /// <summary>The longest wait between two looks at a job (it answers at once when it changes). Default 1 s.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Generates <see cref="ImageGenerationOptions.Count"/> images (default 1) of the request's prompt on the cluster.</summary>
    /// <returns>One <see cref="DataContent"/> per image: PNG bytes, media type <c>image/png</c>, name <c>{seed}.png</c>, and the
    /// seed under <see cref="StableDiffusionImageGenerator.SeedProperty"/>.</returns>
    /// <exception cref="ArgumentException">The prompt is missing, or a count or additional property is of the wrong type or range (named).</exception>
    /// <exception cref="NotSupportedException">Original images, a media type other than PNG, or a property a cluster job does not carry (named).</exception>
    /// <exception cref="InvalidOperationException">The cluster could not make an image (the worker's message), or the job ended without it.</exception>
    public Task<ImageGenerationResponse> GenerateAsync(ImageGenerationRequest request, ImageGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var pending = Plan(request, options, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();
        if (cancellationToken.CanBeCanceled)
        {
            // One registration per request on a token that may outlive millions of them (DiffusionOptions.CancellationToken): released with the request.
            var registration = cancellationToken.Register(() => pending.Done.TrySetCanceled(cancellationToken));
            pending.Done.Task.ContinueWith(_ => registration.Dispose(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        bool first;
        lock (_gate)
        {
            first = _gathering is null;
            (_gathering ??= []).Add(pending);
        }
        if (first) _ = Task.Run(GatherThenSubmit, CancellationToken.None);
        return pending.Done.Task;
    }

    private async Task GatherThenSubmit()
    {
        await Task.Delay(GatherWindow);
        List<Pending> gathered;
        lock (_gate)
        {
            gathered = _gathering!;
            _gathering = null;
        }
        await Task.WhenAll(gathered.GroupBy(p => SettingsKey.Of(p.Settings)).Select(group => RunJob([.. group])));
    }

    /// <summary>Runs one job over the requests of <paramref name="requests"/> (equal settings) and completes each as its rows come back.</summary>
    private async Task RunJob(Pending[] requests)
    {
        var rows = new List<GenerationRow>();
        foreach (var request in requests)
        {
            request.FirstRow = rows.Count;
            for (int i = 0; i < request.Count; i++)
                rows.Add(new GenerationRow { Row = rows.Count, Prompt = request.Prompt, NegativePrompt = request.NegativePrompt, Seed = unchecked(request.Seed + i), GuidanceScale = request.GuidanceScale });
        }
        var owners = new Pending[rows.Count];
        foreach (var request in requests) Array.Fill(owners, request, request.FirstRow, request.Count);
        var received = new RowResult?[rows.Count];
        int receivedCount = 0;
        string jobId = "images:" + Guid.NewGuid().ToString("N");
        var job = _grains.GetGrain<IGenerationJobGrain>(jobId);
        JobSpec SpecOf(IEnumerable<GenerationRow> jobRows) => new()
        {
            Rows = [.. jobRows], Settings = requests[0].Settings, BatchSize = BatchSize, ReturnToCaller = true, LeaseTimeout = LeaseTimeout, MaxPendingWriteBytes = MaxHeldBytes,
        };
        bool cancelled = false;
        int taken = 0; // results this activation of the job has sent: acknowledged by the next TakeResults
        try
        {
            var progress = await job.Start(SpecOf(rows));
            while (true)
            {
                var results = await TakeResults(job, taken);
                taken += results?.Length ?? 0;
                foreach (var result in results ?? [])
                {
                    if (result.Row < 0 || result.Row >= received.Length || received[result.Row] is not null) continue; // once per row, even after a restart
                    received[result.Row] = result;
                    receivedCount++;
                    var owner = owners[result.Row];
                    if (++owner.Received == owner.Count) Complete(owner, received);
                }
                if (receivedCount == rows.Count)
                {
                    _ = TakeResults(job, taken); // acknowledges the last results, so the finished job lets go of them
                    return;
                }
                if (!cancelled && requests.All(r => r.Done.Task.IsCanceled))
                {
                    cancelled = true;
                    progress = await job.Cancel();
                }
                // Only an answer taken after the job ended shows that what is missing will not come.
                if (results is not null && progress.Status is JobStatus.Completed or JobStatus.Failed or JobStatus.Cancelled && progress.InFlightItems == 0)
                {
                    FailMissing(requests, $"job {jobId} ended {progress.Status}{(progress.SinkError is { } e ? ": " + e : "")} before making it");
                    return;
                }
                progress = await WaitForProgress(job, progress.Version);
                if (progress.Status == JobStatus.NotStarted)
                {
                    if (cancelled) return;
                    // The job's silo died and its state with it: start it again with the rows not received.
                    progress = await job.Start(SpecOf(rows.Where(r => received[r.Row] is null)));
                    taken = 0;
                }
            }
        }
        catch (Exception e)
        {
            foreach (var request in requests) request.Done.TrySetException(e);
        }
    }

    /// <summary>The job's results not yet received; null when the job could not answer.</summary>
    private static async Task<RowResult[]?> TakeResults(IGenerationJobGrain job, int received)
    {
        try
        {
            return await job.TakeResults(received);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException or InvalidOperationException)
        {
            return null; // the job's silo is leaving, or the job lost its state: the next look at its progress says which
        }
    }

    /// <summary>
    /// The job's next progress. A call to a silo that died can stay unanswered until Orleans' response timeout (30 s by
    /// default), so each wait gives up after <see cref="PollInterval"/> plus 5 s and asks again: once membership declares
    /// the silo dead, the call reaches a new activation, which answers <see cref="JobStatus.NotStarted"/>.
    /// </summary>
    private async Task<JobProgress> WaitForProgress(IGenerationJobGrain job, long version)
    {
        while (true)
        {
            try
            {
                return await job.WaitForProgress(version, PollInterval).WaitAsync(PollInterval + TimeSpan.FromSeconds(5));
            }
            catch (Exception e) when (e is TimeoutException or OrleansException)
            {
                await Task.Delay(PollInterval); // the job's silo is leaving; the next call reaches its new activation
            }
        }
    }

    private static void Complete(Pending request, RowResult?[] received)
    {
        var contents = new List<AIContent>(request.Count);
        for (int i = 0; i < request.Count; i++)
        {
            var result = received[request.FirstRow + i]!;
            long seed = unchecked(request.Seed + i);
            if (result.Png is null)
            {
                request.Done.TrySetException(new InvalidOperationException(
                    $"The cluster could not make the image of prompt '{request.Prompt}' with seed {seed}: {result.Error ?? "the worker returned neither an image nor an error"}"));
                return;
            }
            contents.Add(new DataContent(result.Png, StableDiffusionImageGenerator.PngMediaType)
            {
                Name = string.Create(CultureInfo.InvariantCulture, $"{seed}.png"),
                AdditionalProperties = new AdditionalPropertiesDictionary { [StableDiffusionImageGenerator.SeedProperty] = seed },
            });
        }
        request.Done.TrySetResult(new ImageGenerationResponse(contents));
    }

    private static void FailMissing(Pending[] requests, string why)
    {
        foreach (var request in requests)
            request.Done.TrySetException(new InvalidOperationException($"The cluster did not return the image(s) of prompt '{request.Prompt}' (seed {request.Seed}): {why}."));
    }

    /// <summary>Checks a request and resolves it into a job's settings and rows.</summary>
    private Pending Plan(ImageGenerationRequest request, ImageGenerationOptions? options, CancellationToken cancellationToken)
    {
        if (request.Prompt is null)
            throw new ArgumentException("ImageGenerationRequest.Prompt is required (an empty string generates without a prompt).", nameof(request));
        if (request.OriginalImages?.Any() == true)
            throw new NotSupportedException("ImageGenerationRequest.OriginalImages is set, but ClusterImageGenerator generates from text only (no image editing or ControlNets).");
        int count = options?.Count ?? 1;
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(options), count, $"ImageGenerationOptions.Count must be 1 or more; got {count}.");
        if (options?.MediaType is { } mediaType && !string.IsNullOrWhiteSpace(mediaType)
            && !ImageGenerationOptionsReader.IsPng(mediaType))
            throw new NotSupportedException($"ImageGenerationOptions.MediaType '{mediaType}' is not supported: ClusterImageGenerator produces {StableDiffusionImageGenerator.PngMediaType} only.");
        var extra = options?.AdditionalProperties;
        foreach (var name in s_unsupported)
            if (extra is not null && extra.TryGetValue(name, out var value) && value is not null)
                throw new NotSupportedException($"ImageGenerationOptions.AdditionalProperties[\"{name}\"] is set, but a cluster job does not carry that setting; leave it out, or generate locally with StableDiffusionImageGenerator.");
        var defaults = new JobSettings();
        long steps = ImageGenerationOptionsReader.GetInteger(extra, StableDiffusionImageGenerator.StepsProperty) ?? defaults.Steps;
        if (steps is < 1 or > 1000)
            throw new ArgumentOutOfRangeException(nameof(options), steps, $"ImageGenerationOptions.AdditionalProperties[\"{StableDiffusionImageGenerator.StepsProperty}\"] is {steps}; steps run from 1 to 1000.");
        var settings = new JobSettings
        {
            ModelDirectory = ModelDirectory,
            Steps = (int)steps,
            Width = options?.ImageSize?.Width,
            Height = options?.ImageSize?.Height,
            Scheduler = ImageGenerationOptionsReader.GetString(extra, StableDiffusionImageGenerator.SchedulerProperty) is { Length: > 0 } scheduler ? scheduler : null,
            Eta = (float)(ImageGenerationOptionsReader.GetNumber(extra, StableDiffusionImageGenerator.EtaProperty) ?? 0),
            GuidanceRescale = (float)(ImageGenerationOptionsReader.GetNumber(extra, StableDiffusionImageGenerator.GuidanceRescaleProperty) ?? 0),
        };
        float guidance = (float)(ImageGenerationOptionsReader.GetNumber(extra, StableDiffusionImageGenerator.GuidanceScaleProperty) ?? defaults.GuidanceScale);
        long seed = ImageGenerationOptionsReader.GetInteger(extra, StableDiffusionImageGenerator.SeedProperty) ?? Random.Shared.NextInt64(0, 1L << 32);
        return new Pending(request.Prompt, ImageGenerationOptionsReader.GetString(extra, StableDiffusionImageGenerator.NegativePromptProperty) ?? "", guidance, seed, count, settings, cancellationToken);
    }

    /// <summary><see cref="ImageGeneratorMetadata"/> (provider <see cref="ProviderName"/>, the model folder as default model id) or this generator; null otherwise.</summary>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ImageGeneratorMetadata)) return _metadata;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Closes the cluster client when <see cref="ConnectAsync"/> opened it; a client passed in is left open.</summary>
    public void Dispose()
    {
        if (_ownedHost is null) return;
        _ownedHost.StopAsync().GetAwaiter().GetResult();
        _ownedHost.Dispose();
    }
}

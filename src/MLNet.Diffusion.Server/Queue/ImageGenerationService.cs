using System.Diagnostics;
using MLNet.Diffusion.Hosting;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Server.Errors;
using MLNet.Diffusion.Server.Models;

namespace MLNet.Diffusion.Server.Queue;

/// <summary>
/// Runs a <see cref="GenerationRequest"/>: checks it against the server's limits, resolves the model by name, waits in
/// the <see cref="GenerationQueue"/>, generates batch by batch on a worker thread (the request's cancellation token
/// reaches every UNet call) and encodes PNGs. Image i gets seed + i, as the library's <c>IImageGenerator</c> does, so the
/// same request gives the same bytes here and in-process.
/// </summary>
internal sealed class ImageGenerationService(ModelCatalog models, GenerationQueue queue, ServerMetrics metrics, DiffusionServerOptions options)
{
    /// <summary>The queue.</summary>
    public GenerationQueue Queue => queue;

    /// <summary>The models.</summary>
    public ModelCatalog Models => models;

    /// <summary>
    /// Generates the request's images. Throws <see cref="RequestException"/> for a request over a limit, an unknown model
    /// or a full queue; <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> (the client)
    /// cancels. An interrupt (<c>/sdapi/v1/interrupt</c>) ends it early with the images of the batches finished.
    /// </summary>
    /// <param name="request">The request (its images are disposed by the caller).</param>
    /// <param name="countParam">The field that sets the image count (<c>n</c>, <c>batch_size</c>), named in messages.</param>
    /// <param name="cancellationToken">The request's abort token.</param>
    public async Task<GenerationResult> GenerateAsync(GenerationRequest request, string countParam, CancellationToken cancellationToken)
    {
        int total = request.BatchSize * request.Iterations;
        if (total > options.MaxImagesPerRequest)
            throw RequestException.BadValue(countParam,
                $"'{countParam}' asks for {total} images; this server makes at most {options.MaxImagesPerRequest} per request.");
        if (request.Options.Steps > options.MaxSteps)
            throw RequestException.BadValue("steps", $"'steps' must be at most {options.MaxSteps} on this server; got {request.Options.Steps}.");

        var (name, pipeline) = models.Get(request.Model, request.ModelParam);
        int width = request.Options.Width ?? pipeline.DefaultSize, height = request.Options.Height ?? pipeline.DefaultSize;
        if ((long)width * height > options.MaxImagePixels)
            throw RequestException.BadValue("size",
                $"The image size {width}×{height} has {(long)width * height} pixels; this server makes at most {options.MaxImagePixels} (for example {(int)Math.Sqrt(options.MaxImagePixels) / 8 * 8}×{(int)Math.Sqrt(options.MaxImagePixels) / 8 * 8}).");
        if (request.Mask is { } mask && request.InitImage is { } init && (mask.Width != init.Width || mask.Height != init.Height))
            throw RequestException.BadValue("mask", $"The mask is {mask.Width}×{mask.Height} but the image is {init.Width}×{init.Height}; they must be the same size.");
        if (request.InitImage is not null && pipeline.VaeEncoder is null)
            throw RequestException.BadValue("image", $"The model '{name}' has no VAE encoder (vae_encoder/model.onnx), so it cannot start from an image.");

        long seed = request.Seed ?? Random.Shared.NextInt64(0, 1L << 32);
        int batches = (request.Iterations * ((request.BatchSize + options.MaxBatchSize - 1) / options.MaxBatchSize));
        var job = new GenerationJob(request.TaskId ?? Guid.NewGuid().ToString("N"), batches, metrics);
        using var lease = await queue.EnterAsync(job, metrics, cancellationToken).ConfigureAwait(false);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, job.InterruptToken);
        try
        {
            var images = await Task.Run(() => Run(pipeline, request, seed, job, linked.Token), linked.Token).ConfigureAwait(false);
            metrics.ImagesGenerated(images.Count, name);
            return new GenerationResult(name, images, seed, width, height, job.Interrupted);
        }
        catch (OperationCanceledException) when (job.Interrupted && !cancellationToken.IsCancellationRequested)
        {
            metrics.Cancelled();
            return new GenerationResult(name, job.Finished, seed, width, height, Interrupted: true);
        }
        catch (OperationCanceledException)
        {
            metrics.Cancelled();
            throw;
        }
        catch (ArgumentException e)
        {
            // The engine's own check of a value the API layer passed through (a size the model's fixed UNet cannot
            // make): the message names it; the model is named by its served name, not by the server's folder.
            throw new RequestException(StatusCodes.Status400BadRequest, e.Message.Replace(pipeline.ModelDirectory, $"(model '{name}')", StringComparison.Ordinal), null, "invalid_value");
        }
        finally
        {
            metrics.Request(job.Clock.Elapsed);
        }
    }

    private List<(byte[] Png, long Seed)> Run(StableDiffusionPipeline pipeline, GenerationRequest request, long seed, GenerationJob job, CancellationToken cancellationToken)
    {
        var images = job.Finished;
        int batchNo = 0;
        for (int iteration = 0; iteration < request.Iterations; iteration++)
        {
            for (int start = 0; start < request.BatchSize; start += options.MaxBatchSize)
            {
                job.BeginBatch(batchNo++);
                var prompts = new ImagePrompt[Math.Min(options.MaxBatchSize, request.BatchSize - start)];
                for (int i = 0; i < prompts.Length; i++)
                {
                    prompts[i] = new ImagePrompt(request.Prompt, unchecked(seed + iteration * request.BatchSize + start + i))
                    {
                        NegativePrompt = request.NegativePrompt,
                        InitImage = request.InitImage,
                        Mask = request.Mask,
                        Strength = request.InitImage is null ? null : request.Strength,
                    };
                }
                var generated = pipeline.Generate(prompts, request.Options, job, cancellationToken);
                try
                {
                    foreach (var image in generated)
                        images.Add((PngEncoder.Encode(image.Image), image.Prompt.Seed));
                }
                finally
                {
                    foreach (var image in generated) image.Dispose();
                }
            }
        }
        return images;
    }
}

// Microsoft.Extensions.AI marks its image-generation abstraction experimental ([Experimental("MEAI001")]).
// This file calls that abstraction (DiffusionOptions.ImageGenerator), so it opts in to MEAI001 here.
#pragma warning disable MEAI001

using System.Drawing;
using Microsoft.Extensions.AI;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// <c>GenerateImages</c> through <see cref="DiffusionOptions.ImageGenerator"/> instead of the local pipeline: each image
/// slot of a batch becomes one <see cref="ImageGenerationRequest"/> (its row's prompt; its seed, steps, guidance scale,
/// negative prompt and the options' shared settings as <see cref="ImageGenerationOptions.AdditionalProperties"/>, under
/// <see cref="StableDiffusionImageGenerator"/>'s property names), all of a batch's requests are in flight together, and
/// each response's first PNG becomes the slot's image. Settings at their defaults are left out of the request, so a
/// generator that does not know them (a cluster whose jobs do not carry them) is not asked for them.
/// </summary>
internal static class RemoteGeneration
{
    /// <summary>The requests of <paramref name="requests"/> (one per slot, already checked), sent together; the slots' images.</summary>
    /// <exception cref="InvalidOperationException">A request failed or its response holds no image; the message names the row.</exception>
    public static SlotOutputs[] Generate(IImageGenerator generator, DiffusionOptions options, int width, int height,
        IReadOnlyList<ImagePrompt> requests, IReadOnlyList<string> rowNames, BatchRun run)
    {
        var tasks = new Task<ImageGenerationResponse>[requests.Count];
        for (int i = 0; i < tasks.Length; i++)
        {
            var request = requests[i];
            var generationOptions = OptionsOf(request, options, width, height);
            // Run each call on the thread pool: a generator that completes synchronously still leaves the batch's requests concurrent.
            tasks[i] = Task.Run(() => generator.GenerateAsync(new ImageGenerationRequest(request.Prompt), generationOptions, run.CancellationToken), run.CancellationToken);
        }
        // Every request ends (or fails) before the first failure is reported, so none is left running unobserved.
        ((Task)Task.WhenAll(tasks)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing).GetAwaiter().GetResult();
        var outputs = new SlotOutputs[requests.Count];
        for (int i = 0; i < tasks.Length; i++)
        {
            var task = tasks[i];
            if (task.IsCanceled) run.CancellationToken.ThrowIfCancellationRequested();
            if (!task.IsCompletedSuccessfully)
            {
                var error = task.Exception?.InnerExceptions is [var single] ? single : (Exception?)task.Exception ?? new OperationCanceledException();
                if (error is OperationCanceledException) throw error;
                throw new InvalidOperationException(
                    $"{rowNames[i]} (prompt '{requests[i].Prompt}', seed {requests[i].Seed}): DiffusionOptions.ImageGenerator ({generator.GetType().Name}) failed: {error.Message}", error);
            }
            outputs[i] = new SlotOutputs { Image = ImageOf(task.Result, rowNames[i], generator, width, height) };
        }
        return outputs;
    }

    /// <summary>The generator's options for one image: size, PNG, and the row's settings as additional properties.</summary>
    private static ImageGenerationOptions OptionsOf(ImagePrompt request, DiffusionOptions options, int width, int height)
    {
        var extra = new AdditionalPropertiesDictionary
        {
            [StableDiffusionImageGenerator.SeedProperty] = request.Seed,
            [StableDiffusionImageGenerator.StepsProperty] = request.Steps ?? options.Steps,
            [StableDiffusionImageGenerator.GuidanceScaleProperty] = request.GuidanceScale ?? options.GuidanceScale,
        };
        if (!string.IsNullOrEmpty(request.NegativePrompt)) extra[StableDiffusionImageGenerator.NegativePromptProperty] = request.NegativePrompt;
        if (!string.IsNullOrWhiteSpace(options.Scheduler)) extra[StableDiffusionImageGenerator.SchedulerProperty] = options.Scheduler;
        if (options.Eta != 0) extra[StableDiffusionImageGenerator.EtaProperty] = options.Eta;
        if (options.GuidanceRescale != 0) extra[StableDiffusionImageGenerator.GuidanceRescaleProperty] = options.GuidanceRescale;
        if (options.Noise != NoiseKind.Default) extra[StableDiffusionImageGenerator.NoiseProperty] = MLNet.Diffusion.Noise.NoiseKindNames.Name(options.Noise);
        if (options.GuidanceIntervalLow is float low) extra[StableDiffusionImageGenerator.GuidanceIntervalLowProperty] = low;
        if (options.GuidanceIntervalHigh is float high) extra[StableDiffusionImageGenerator.GuidanceIntervalHighProperty] = high;
        if (options.GuidanceEnd is float end) extra[StableDiffusionImageGenerator.GuidanceEndProperty] = end;
        var defaults = new GenerationOptions();
        if (options.AestheticScore != defaults.AestheticScore) extra[StableDiffusionImageGenerator.AestheticScoreProperty] = options.AestheticScore;
        if (options.NegativeAestheticScore != defaults.NegativeAestheticScore)
            extra[StableDiffusionImageGenerator.NegativeAestheticScoreProperty] = options.NegativeAestheticScore;
        return new ImageGenerationOptions
        {
            Count = 1,
            ImageSize = new Size(width, height),
            MediaType = StableDiffusionImageGenerator.PngMediaType,
            AdditionalProperties = extra,
        };
    }

    /// <summary>The response's first image, as the local path keeps images (RGBA pixels).</summary>
    private static ImagePixels ImageOf(ImageGenerationResponse response, string rowName, IImageGenerator generator, int width, int height)
    {
        var data = response.Contents.OfType<DataContent>().FirstOrDefault(d => d.HasTopLevelMediaType("image"))
            ?? throw new InvalidOperationException(
                $"{rowName}: DiffusionOptions.ImageGenerator ({generator.GetType().Name}) answered without an image (a DataContent of an image media type); its contents: {string.Join(", ", response.Contents.Select(c => c.GetType().Name))}.");
        using var image = ImageLoader.Load(data.Data.ToArray(), $"the image DiffusionOptions.ImageGenerator returned for {rowName}");
        if (image.Width != width || image.Height != height)
            throw new InvalidOperationException(
                $"{rowName}: DiffusionOptions.ImageGenerator ({generator.GetType().Name}) returned a {image.Width}×{image.Height} image; the transform's image column is {width}×{height}.");
        if (image.PixelFormat == MLPixelFormat.Rgba32) return new ImagePixels(image);
        // The engine's images are RGBA; a decoder may give BGRA: swap, so the column's pixels equal the local path's.
        var pixels = image.Pixels.ToArray();
        for (int p = 0; p < pixels.Length; p += 4) (pixels[p], pixels[p + 2]) = (pixels[p + 2], pixels[p]);
        using var rgba = MLImage.CreateFromPixels(image.Width, image.Height, MLPixelFormat.Rgba32, pixels);
        return new ImagePixels(rgba);
    }
}

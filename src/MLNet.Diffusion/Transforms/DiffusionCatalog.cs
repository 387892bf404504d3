using MLNet.Diffusion.Transforms;

namespace Microsoft.ML;

/// <summary>
/// Stable Diffusion transforms for <see cref="TransformsCatalog"/>: <c>mlContext.Transforms.GenerateImages</c> (prompt →
/// image, end to end) and its three stages, <c>EncodePrompts</c> (prompt → embeddings), <c>DenoiseLatents</c>
/// (embeddings → latents) and <c>DecodeLatents</c> (latents → image), which can be used apart, e.g. to cache embeddings
/// or to decode latents made elsewhere.
/// </summary>
/// <example>
/// <code>
/// var pipeline = mlContext.Transforms.GenerateImages(new DiffusionOptions { ModelPath = dir, Steps = 25 }, promptColumn: "Prompt", outputColumn: "Image")
///     .Append(mlContext.Transforms.ResizeImages("Small", 224, 224, "Image"))
///     .Append(mlContext.Transforms.ExtractPixels("Pixels", "Small"));
/// var images = pipeline.Fit(data).Transform(data);
/// </code>
/// </example>
public static class DiffusionCatalog
{
    /// <summary>
    /// Generates an image per row (or <see cref="DiffusionOptions.ImagesPerPrompt"/> per row) from a prompt column, lazily
    /// and in batches of <see cref="DiffusionOptions.BatchSize"/>.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The model folder, generation settings and the optional per-row columns (negative prompt, seed, guidance, steps).</param>
    /// <param name="promptColumn">The text column of prompts.</param>
    /// <param name="outputColumn">The image column (<c>ImageDataViewType</c> of <c>MLImage</c>).</param>
    public static DiffusionEstimator GenerateImages(this TransformsCatalog catalog, DiffusionOptions options,
        string promptColumn = DiffusionColumnNames.Prompt, string outputColumn = DiffusionColumnNames.Image) =>
        new(HostOf(catalog), options, promptColumn, outputColumn);

    /// <summary>Encodes prompts (and negative prompts) into text embeddings: Single vectors of 77·D.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The model folder; <see cref="DiffusionOptions.NegativePromptColumnName"/> and <see cref="DiffusionOptions.BatchSize"/> apply.</param>
    /// <param name="promptColumn">The text column of prompts.</param>
    /// <param name="outputColumn">The prompt embeddings column.</param>
    /// <param name="negativeOutputColumn">The negative-prompt embeddings column; null to leave it out.</param>
    public static TextEncodingEstimator EncodePrompts(this TransformsCatalog catalog, DiffusionOptions options,
        string promptColumn = DiffusionColumnNames.Prompt, string outputColumn = DiffusionColumnNames.PromptEmbedding,
        string? negativeOutputColumn = DiffusionColumnNames.NegativePromptEmbedding) =>
        new(HostOf(catalog), options, promptColumn, outputColumn, negativeOutputColumn);

    /// <summary>Runs the denoising loop from text embeddings (and seeds) to latents: Single vectors of 4·h·w.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The model folder, generation settings, per-row seed/guidance/steps columns, batching.</param>
    /// <param name="embeddingColumn">The prompt embeddings column.</param>
    /// <param name="negativeEmbeddingColumn">The negative-prompt embeddings column; null to use the empty prompt's.</param>
    /// <param name="outputColumn">The latents column.</param>
    public static DenoisingEstimator DenoiseLatents(this TransformsCatalog catalog, DiffusionOptions options,
        string embeddingColumn = DiffusionColumnNames.PromptEmbedding, string? negativeEmbeddingColumn = DiffusionColumnNames.NegativePromptEmbedding,
        string outputColumn = DiffusionColumnNames.Latents) =>
        new(HostOf(catalog), options, embeddingColumn, negativeEmbeddingColumn, outputColumn);

    /// <summary>Decodes latents into images with the model's VAE decoder.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The model folder and image size (which fixes the latents' size 4·(height/8)·(width/8)).</param>
    /// <param name="latentsColumn">The latents column.</param>
    /// <param name="outputColumn">The image column.</param>
    public static VaeDecodingEstimator DecodeLatents(this TransformsCatalog catalog, DiffusionOptions options,
        string latentsColumn = DiffusionColumnNames.Latents, string outputColumn = DiffusionColumnNames.Image) =>
        new(HostOf(catalog), options, latentsColumn, outputColumn);

    private static DiffusionHost HostOf(TransformsCatalog catalog) => DiffusionHost.From(catalog);
}

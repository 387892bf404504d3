using MLNet.Diffusion.Transforms;
using MLNet.Diffusion;

namespace Microsoft.ML;

/// <summary>
/// Stable Diffusion transforms for <see cref="TransformsCatalog"/>: <c>mlContext.Transforms.GenerateImages</c> (prompt →
/// image, end to end) and its three stages, <c>EncodePrompts</c> (prompt → embeddings), <c>DenoiseLatents</c>
/// (embeddings → latents) and <c>DecodeLatents</c> (latents → image), which can be used apart, e.g. to cache embeddings
/// or to decode latents made elsewhere. As in ML.NET's own catalogs, the output column comes first and the input column
/// after; without <see cref="DiffusionOptions.ModelPath"/> the built-in demo model is used.
/// </summary>
/// <example>
/// <code>
/// var pipeline = mlContext.Transforms.GenerateImages("Image", "Prompt", new DiffusionOptions { ModelPath = dir, Steps = 25 })
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
    /// <param name="outputColumnName">The image column (<c>ImageDataViewType</c> of <c>MLImage</c>).</param>
    /// <param name="inputColumnName">The text column of prompts.</param>
    /// <param name="options">The model folder, generation settings and the optional per-row columns (negative prompt, seed,
    /// guidance, steps); null: the demo model with the default settings.</param>
    public static DiffusionEstimator GenerateImages(this TransformsCatalog catalog, string outputColumnName = DiffusionColumnNames.Image,
        string inputColumnName = DiffusionColumnNames.Prompt, DiffusionOptions? options = null) =>
        new(HostOf(catalog), options ?? new DiffusionOptions(), inputColumnName, outputColumnName);

    /// <summary>Generates images into the <c>Image</c> column from the <c>Prompt</c> column, with <paramref name="options"/>.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The model folder, generation settings and the optional per-row columns.</param>
    public static DiffusionEstimator GenerateImages(this TransformsCatalog catalog, DiffusionOptions options) =>
        catalog.GenerateImages(DiffusionColumnNames.Image, DiffusionColumnNames.Prompt, options);

    /// <summary>
    /// Encodes prompts (and negative prompts) into text embeddings: Single vectors of 77·D. For models whose UNet takes a
    /// pooled text embedding (SDXL), each embeddings column also gets its pooled column (Single vectors of P), named by
    /// <see cref="DiffusionOptions.PooledEmbeddingColumnName"/> / <see cref="DiffusionOptions.NegativePooledEmbeddingColumnName"/>
    /// (default: the embeddings column's name followed by "Pooled").
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="outputColumnName">The prompt embeddings column.</param>
    /// <param name="inputColumnName">The text column of prompts.</param>
    /// <param name="negativeOutputColumnName">The negative-prompt embeddings column; null to leave it out.</param>
    /// <param name="options">The model folder; <see cref="DiffusionOptions.NegativePromptColumnName"/> and
    /// <see cref="DiffusionOptions.BatchSize"/> apply. Null: the demo model.</param>
    public static TextEncodingEstimator EncodePrompts(this TransformsCatalog catalog, string outputColumnName = DiffusionColumnNames.PromptEmbedding,
        string inputColumnName = DiffusionColumnNames.Prompt, string? negativeOutputColumnName = DiffusionColumnNames.NegativePromptEmbedding,
        DiffusionOptions? options = null) =>
        new(HostOf(catalog), options ?? new DiffusionOptions(), inputColumnName, outputColumnName, negativeOutputColumnName);

    /// <summary>Encodes the <c>Prompt</c> column into <c>PromptEmbedding</c> and <c>NegativePromptEmbedding</c>.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The model folder and batching.</param>
    public static TextEncodingEstimator EncodePrompts(this TransformsCatalog catalog, DiffusionOptions options) =>
        catalog.EncodePrompts(DiffusionColumnNames.PromptEmbedding, DiffusionColumnNames.Prompt, DiffusionColumnNames.NegativePromptEmbedding, options);

    /// <summary>
    /// Runs the denoising loop from text embeddings (and seeds) to latents: Single vectors of 4·h·w. For models whose UNet
    /// takes a pooled text embedding (SDXL) it also reads each embeddings column's pooled column, as <c>EncodePrompts</c>
    /// writes it; a missing one is a schema error that names it.
    /// </summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="outputColumnName">The latents column.</param>
    /// <param name="inputColumnName">The prompt embeddings column.</param>
    /// <param name="negativeInputColumnName">The negative-prompt embeddings column; null to use the empty prompt's.</param>
    /// <param name="options">The model folder, generation settings, per-row seed/guidance/steps columns, batching. Null:
    /// the demo model.</param>
    public static DenoisingEstimator DenoiseLatents(this TransformsCatalog catalog, string outputColumnName = DiffusionColumnNames.Latents,
        string inputColumnName = DiffusionColumnNames.PromptEmbedding, string? negativeInputColumnName = DiffusionColumnNames.NegativePromptEmbedding,
        DiffusionOptions? options = null) =>
        new(HostOf(catalog), options ?? new DiffusionOptions(), inputColumnName, negativeInputColumnName, outputColumnName);

    /// <summary>Denoises <c>PromptEmbedding</c> (and <c>NegativePromptEmbedding</c>) into <c>Latents</c>.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The model folder, generation settings, per-row columns, batching.</param>
    public static DenoisingEstimator DenoiseLatents(this TransformsCatalog catalog, DiffusionOptions options) =>
        catalog.DenoiseLatents(DiffusionColumnNames.Latents, DiffusionColumnNames.PromptEmbedding, DiffusionColumnNames.NegativePromptEmbedding, options);

    /// <summary>Decodes latents into images with the model's VAE decoder.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="outputColumnName">The image column.</param>
    /// <param name="inputColumnName">The latents column.</param>
    /// <param name="options">The model folder and image size (which fixes the latents' size 4·(height/8)·(width/8)).
    /// Null: the demo model.</param>
    public static VaeDecodingEstimator DecodeLatents(this TransformsCatalog catalog, string outputColumnName = DiffusionColumnNames.Image,
        string inputColumnName = DiffusionColumnNames.Latents, DiffusionOptions? options = null) =>
        new(HostOf(catalog), options ?? new DiffusionOptions(), inputColumnName, outputColumnName);

    /// <summary>Decodes the <c>Latents</c> column into the <c>Image</c> column.</summary>
    /// <param name="catalog">The transforms catalog.</param>
    /// <param name="options">The model folder and image size.</param>
    public static VaeDecodingEstimator DecodeLatents(this TransformsCatalog catalog, DiffusionOptions options) =>
        catalog.DecodeLatents(DiffusionColumnNames.Image, DiffusionColumnNames.Latents, options);

    private static DiffusionHost HostOf(TransformsCatalog catalog) => DiffusionHost.From(catalog);
}

using Microsoft.ML.Data;

namespace MLNet.Diffusion.Transforms;

/// <summary>The values a diffusion transform reads from one input row (only those its columns are bound to).</summary>
internal sealed class RowInputs
{
    public string Prompt { get; set; } = "";
    public string NegativePrompt { get; set; } = "";
    public long? Seed { get; set; }
    public float? GuidanceScale { get; set; }
    public int? Steps { get; set; }
    public float[]? PromptEmbedding { get; set; }
    public float[]? NegativeEmbedding { get; set; }
    public float[]? Latents { get; set; }
    public ImagePixels? InitImage { get; set; }
    public ImagePixels? Mask { get; set; }
    public float? Strength { get; set; }
}

/// <summary>One output image position: input row <paramref name="Row"/> (0-based position in the input view), its image <paramref name="ImageIndex"/>.</summary>
internal readonly record struct ImageSlot(long Row, int ImageIndex, RowInputs Inputs);

/// <summary>Which generated values a cursor needs; values not asked for are not computed.</summary>
[Flags]
internal enum OutputSet
{
    None = 0,
    PromptEmbedding = 1,
    NegativeEmbedding = 2,
    Latents = 4,
    Image = 8,
}

/// <summary>The generated values of one slot (null where not computed).</summary>
internal sealed class SlotOutputs
{
    public float[]? PromptEmbedding { get; set; }
    public float[]? NegativeEmbedding { get; set; }
    public float[]? Latents { get; set; }
    public ImagePixels? Image { get; set; }
}

/// <summary>
/// A decoded image kept as bytes, so that every getter call can hand out a fresh <see cref="MLImage"/> (ML.NET's image
/// transforms dispose the values they are given, so one cached <see cref="MLImage"/> could not be shared).
/// </summary>
internal sealed class ImagePixels
{
    private readonly byte[] _data;

    public ImagePixels(MLImage image)
    {
        Width = image.Width;
        Height = image.Height;
        Format = image.PixelFormat;
        _data = image.Pixels.ToArray();
    }

    public int Width { get; }
    public int Height { get; }
    public MLPixelFormat Format { get; }

    /// <summary>A copy of <paramref name="image"/>'s pixels, or null for a missing (null or empty) image.</summary>
    public static ImagePixels? CopyOrNull(MLImage? image) => image is null || image.Width <= 0 || image.Height <= 0 ? null : new ImagePixels(image);

    public MLImage ToImage() => MLImage.CreateFromPixels(Width, Height, Format, _data);
}

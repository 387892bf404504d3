using Microsoft.ML.Data;
using Microsoft.ML;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// A cursor's batch cache. When a generated value of image slot s (= row·k + image index, k images per row) is asked
/// for and s is not in the current batch, the next batch is the slots s … s + BatchSize − 1 (fewer at the end of the
/// data): their rows' inputs are read through a second, look-ahead cursor over the input (only the bound input columns
/// are active on it), the batch is generated in one go, and its values are kept until the consumer moves past it.
/// So each image is generated once per cursor pass, and the main cursor's pass-through columns are never buffered.
/// </summary>
internal sealed class GenerationWindow : IDisposable
{
    private readonly IDataView _input;
    private readonly DiffusionTransformerBase _transformer;
    private readonly OutputSet _needed;
    private readonly int _imagesPerRow;
    private DataViewRowCursor? _lookahead;
    private RowReader? _reader;
    private long _readRow = -1;
    private RowInputs? _readInputs;
    private long _start = -1;
    private SlotOutputs[] _outputs = [];

    public GenerationWindow(IDataView input, DiffusionTransformerBase transformer, OutputSet needed)
    {
        _input = input;
        _transformer = transformer;
        _needed = needed;
        _imagesPerRow = transformer.ImagesPerRow;
    }

    /// <summary>The generated values of <paramref name="slot"/>, generating its batch if needed.</summary>
    public SlotOutputs Get(long slot)
    {
        if (_start < 0 || slot < _start || slot >= _start + _outputs.Length) Generate(slot);
        return _outputs[slot - _start];
    }

    private void Generate(long first)
    {
        int batch = _transformer.Settings.BatchSize;
        var slots = new List<ImageSlot>(batch);
        long row = first / _imagesPerRow;
        int image = (int)(first % _imagesPerRow);
        while (slots.Count < batch && TryRead(row, out var inputs))
        {
            for (; image < _imagesPerRow && slots.Count < batch; image++) slots.Add(new ImageSlot(row, image, inputs));
            row++;
            image = 0;
        }
        if (slots.Count == 0) throw new InvalidOperationException($"The input view ended before row {first / _imagesPerRow}, which its main cursor has reached; the input must give the same rows to every cursor.");
        _outputs = _transformer.Compute(slots, _needed);
        _start = first;
    }

    private bool TryRead(long row, out RowInputs inputs)
    {
        if (row == _readRow && _readInputs is not null)
        {
            inputs = _readInputs;
            return true;
        }
        if (_lookahead is null)
        {
            _lookahead = _input.GetRowCursor(RowReader.Columns(_input.Schema, _transformer.Inputs));
            _reader = new RowReader(_lookahead, _transformer.Inputs);
        }
        while (_lookahead.Position < row)
        {
            if (!_lookahead.MoveNext())
            {
                inputs = null!;
                return false;
            }
        }
        inputs = _reader!.Read();
        _readRow = row;
        _readInputs = inputs;
        return true;
    }

    public void Dispose() => _lookahead?.Dispose();
}

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
    public float[]? PooledEmbedding { get; set; }
    public float[]? NegativePooledEmbedding { get; set; }
    public float[]? Latents { get; set; }
    public ImagePixels? InitImage { get; set; }
    public ImagePixels? Mask { get; set; }
    public float? Strength { get; set; }
    public ImagePixels? ControlImage { get; set; }
    public float? ControlScale { get; set; }
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
    public float[]? PooledEmbedding { get; set; }
    public float[]? NegativePooledEmbedding { get; set; }
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

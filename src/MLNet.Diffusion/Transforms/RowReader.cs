using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Transforms;

/// <summary>Reads a transform's bound input columns from a row (cursor or single row) into <see cref="RowInputs"/>.</summary>
internal sealed class RowReader
{
    private readonly Action<RowInputs>[] _readers;

    public RowReader(DataViewRow row, IReadOnlyList<InputColumn> inputs)
    {
        _readers = inputs.Select(input => Reader(row, input, row.Schema[input.Name])).ToArray();
    }

    /// <summary>The columns <paramref name="inputs"/> binds, in <paramref name="schema"/>.</summary>
    public static IEnumerable<DataViewSchema.Column> Columns(DataViewSchema schema, IReadOnlyList<InputColumn> inputs) =>
        inputs.Select(i => schema[i.Name]);

    public RowInputs Read()
    {
        var inputs = new RowInputs();
        foreach (var read in _readers) read(inputs);
        return inputs;
    }

    private static Action<RowInputs> Reader(DataViewRow row, InputColumn input, DataViewSchema.Column column)
    {
        switch (input.Role)
        {
            case InputRole.Prompt or InputRole.NegativePrompt:
            {
                var get = row.GetGetter<ReadOnlyMemory<char>>(column);
                ReadOnlyMemory<char> text = default;
                bool negative = input.Role == InputRole.NegativePrompt;
                return r =>
                {
                    get(ref text);
                    if (negative) r.NegativePrompt = text.ToString();
                    else r.Prompt = text.ToString();
                };
            }
            case InputRole.Seed:
                if (column.Type == NumberDataViewType.Int64)
                {
                    var get = row.GetGetter<long>(column);
                    long v = 0;
                    return r => { get(ref v); r.Seed = v; };
                }
                if (column.Type == NumberDataViewType.Int32)
                {
                    var get = row.GetGetter<int>(column);
                    int v = 0;
                    return r => { get(ref v); r.Seed = v; };
                }
                else
                {
                    var get = row.GetGetter<uint>(column);
                    uint v = 0;
                    return r => { get(ref v); r.Seed = v; };
                }
            case InputRole.GuidanceScale:
            {
                var get = row.GetGetter<float>(column);
                float v = 0;
                return r => { get(ref v); r.GuidanceScale = float.IsNaN(v) ? null : v; };
            }
            case InputRole.Steps:
            {
                var get = row.GetGetter<int>(column);
                int v = 0;
                return r => { get(ref v); r.Steps = v == 0 ? null : v; };
            }
            case InputRole.Strength:
            {
                var get = row.GetGetter<float>(column);
                float v = 0;
                return r => { get(ref v); r.Strength = float.IsNaN(v) ? null : v; };
            }
            case InputRole.ControlScale:
            {
                var get = row.GetGetter<float>(column);
                float v = 0;
                return r => { get(ref v); r.ControlScale = float.IsNaN(v) ? null : v; };
            }
            case InputRole.ControlImage:
            {
                var get = row.GetGetter<MLImage>(column);
                MLImage image = null!;
                return r =>
                {
                    get(ref image);
                    r.ControlImage = ImagePixels.CopyOrNull(image);
                };
            }
            case InputRole.InitImage or InputRole.Mask:
            {
                // ML.NET's image getters dispose the image passed back in and hand out a new one, so the pixels are
                // copied at once (the batch keeps them while the look-ahead cursor moves on); the last image is the
                // upstream getter's to dispose on its next call, as ML.NET's own image transforms leave it.
                var get = row.GetGetter<MLImage>(column);
                MLImage image = null!;
                bool mask = input.Role == InputRole.Mask;
                return r =>
                {
                    get(ref image);
                    var pixels = ImagePixels.CopyOrNull(image);
                    if (mask) r.Mask = pixels;
                    else r.InitImage = pixels;
                };
            }
            default:
            {
                var get = row.GetGetter<VBuffer<float>>(column);
                VBuffer<float> buffer = default;
                var role = input.Role;
                return r =>
                {
                    get(ref buffer);
                    var values = new float[buffer.Length];
                    buffer.CopyTo(values);
                    switch (role)
                    {
                        case InputRole.PromptEmbedding: r.PromptEmbedding = values; break;
                        case InputRole.NegativeEmbedding: r.NegativeEmbedding = values; break;
                        case InputRole.PooledEmbedding: r.PooledEmbedding = values; break;
                        case InputRole.NegativePooledEmbedding: r.NegativePooledEmbedding = values; break;
                        default: r.Latents = values; break;
                    }
                };
            }
        }
    }
}

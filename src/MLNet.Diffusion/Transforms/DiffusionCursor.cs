using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// The cursor of <see cref="DiffusionDataView"/>. Pass-through getters are the input cursor's own; generated getters
/// read the current slot from a <see cref="GenerationWindow"/>, which exists only if a generated column is active.
/// </summary>
internal sealed class DiffusionCursor : DataViewRowCursor
{
    private readonly DataViewRowCursor _input;
    private readonly DiffusionTransformerBase _transformer;
    private readonly bool[] _active;
    private readonly int _inputCount;
    private readonly int _imagesPerRow;
    private readonly GenerationWindow? _window;
    private long _position = -1;
    private int _imageIndex = -1;
    private bool _done;

    public DiffusionCursor(IDataView input, DiffusionTransformerBase transformer, DataViewSchema schema, bool[] active)
    {
        Schema = schema;
        _transformer = transformer;
        _active = active;
        _inputCount = input.Schema.Count;
        _imagesPerRow = transformer.ImagesPerRow;
        _input = input.GetRowCursor(input.Schema.Where(c => active[c.Index]));
        var needed = OutputSet.None;
        for (int i = _inputCount; i < active.Length; i++)
            if (active[i]) needed |= transformer.Outputs[i - _inputCount].Needs;
        if (needed != OutputSet.None) _window = new GenerationWindow(input, transformer, needed);
    }

    public override DataViewSchema Schema { get; }

    public override long Position => _position;

    public override long Batch => 0;

    public override bool MoveNext()
    {
        if (_done) return false;
        if (_imageIndex < 0 || _imageIndex == _imagesPerRow - 1)
        {
            if (!_input.MoveNext())
            {
                _done = true;
                _position = -1;
                return false;
            }
            _imageIndex = 0;
        }
        else
        {
            _imageIndex++;
        }
        _position++;
        return true;
    }

    public override ValueGetter<DataViewRowId> GetIdGetter()
    {
        var inner = _input.GetIdGetter();
        if (_imagesPerRow == 1) return inner;
        return (ref DataViewRowId id) =>
        {
            inner(ref id);
            id = id.Combine(new DataViewRowId((ulong)_imageIndex, 0));
        };
    }

    public override bool IsColumnActive(DataViewSchema.Column column) => column.Index >= 0 && column.Index < _active.Length && _active[column.Index];

    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        if (!IsColumnActive(column))
            throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created; a getter is only available for active columns.");
        if (column.Index < _inputCount) return _input.GetGetter<TValue>(_input.Schema[column.Index]);
        var output = _transformer.Outputs[column.Index - _inputCount];
        return OutputGetters.Create<TValue>(output, () => _window!.Get(_position), () => _imageIndex, () => _position, _transformer.Settings.CallerOwnsImages);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _input.Dispose();
            _window?.Dispose();
        }
        base.Dispose(disposing);
    }
}

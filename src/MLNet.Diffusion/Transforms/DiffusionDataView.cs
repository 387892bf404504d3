using Microsoft.ML.Data;
using Microsoft.ML;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// The lazy output of a diffusion transformer: the input's columns, passed through from the input's cursor, plus the
/// generated columns, computed only when a cursor's getter for one of them is called (see <see cref="GenerationWindow"/>).
/// With k images per row the view has k rows per input row (input values repeated) and an image-index column.
/// </summary>
internal sealed class DiffusionDataView : IDataView
{
    private readonly IDataView _input;
    private readonly DiffusionTransformerBase _transformer;

    public DiffusionDataView(IDataView input, DiffusionTransformerBase transformer, DataViewSchema schema)
    {
        _input = input;
        _transformer = transformer;
        Schema = schema;
    }

    public bool CanShuffle => false;

    public DataViewSchema Schema { get; }

    public long? GetRowCount() => _input.GetRowCount() * _transformer.ImagesPerRow;

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        ArgumentNullException.ThrowIfNull(columnsNeeded);
        var active = new bool[Schema.Count];
        foreach (var column in columnsNeeded)
        {
            if (column.Index < 0 || column.Index >= Schema.Count || Schema[column.Index].Name != column.Name)
                throw new ArgumentException($"Column '{column.Name}' is not a column of this view's schema.", nameof(columnsNeeded));
            active[column.Index] = true;
        }
        return new DiffusionCursor(_input, _transformer, Schema, active);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];
}

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

/// <summary>
/// The row-to-row form of a diffusion transformer (one image per row), which <c>PredictionEngine</c> uses: each
/// mapped row generates its image from its own input row, once per input position, when a generated getter is first
/// called. The row's position is the seed's row number when no seed column is given; a <c>PredictionEngine</c>
/// counts its predictions as positions (0, 1, 2, …), so give a seed column for predictions that do not depend on
/// how many came before.
/// </summary>
internal sealed class DiffusionRowMapper : IRowToRowMapper
{
    private readonly DiffusionTransformerBase _transformer;

    public DiffusionRowMapper(DiffusionTransformerBase transformer, DataViewSchema inputSchema, DataViewSchema outputSchema)
    {
        _transformer = transformer;
        InputSchema = inputSchema;
        OutputSchema = outputSchema;
    }

    public DataViewSchema InputSchema { get; }

    public DataViewSchema OutputSchema { get; }

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        ArgumentNullException.ThrowIfNull(dependingColumns);
        var needed = new SortedSet<int>();
        foreach (var column in dependingColumns)
        {
            if (column.Index < InputSchema.Count) needed.Add(column.Index);
            else foreach (var input in _transformer.Inputs) needed.Add(InputSchema[input.Name].Index);
        }
        return needed.Select(i => InputSchema[i]).ToArray();
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(activeColumns);
        var active = new bool[OutputSchema.Count];
        foreach (var column in activeColumns) active[column.Index] = true;
        return new MappedRow(this, input, active);
    }

    private sealed class MappedRow : DataViewRow
    {
        private readonly DiffusionRowMapper _mapper;
        private readonly DataViewRow _input;
        private readonly bool[] _active;
        private readonly OutputSet _needed;
        private RowReader? _reader;
        private long _computedPosition = -1;
        private SlotOutputs? _outputs;

        public MappedRow(DiffusionRowMapper mapper, DataViewRow input, bool[] active)
        {
            _mapper = mapper;
            _input = input;
            _active = active;
            int inputCount = mapper.InputSchema.Count;
            for (int i = inputCount; i < active.Length; i++)
                if (active[i]) _needed |= mapper._transformer.Outputs[i - inputCount].Needs;
            if (_needed != OutputSet.None) _reader = new RowReader(input, mapper._transformer.Inputs);
        }

        public override DataViewSchema Schema => _mapper.OutputSchema;

        public override long Position => _input.Position;

        public override long Batch => _input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => column.Index >= 0 && column.Index < _active.Length && _active[column.Index];

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!IsColumnActive(column))
                throw new InvalidOperationException($"Column '{column.Name}' is not active in this row; a getter is only available for active columns.");
            int inputCount = _mapper.InputSchema.Count;
            if (column.Index < inputCount) return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            return OutputGetters.Create<TValue>(_mapper._transformer.Outputs[column.Index - inputCount], Current, () => 0, () => _input.Position, _mapper._transformer.Settings.CallerOwnsImages);
        }

        private SlotOutputs Current()
        {
            long position = _input.Position;
            if (_outputs is null || position != _computedPosition)
            {
                var slot = new ImageSlot(position, 0, _reader!.Read());
                _outputs = _mapper._transformer.Compute([slot], _needed)[0];
                _computedPosition = position;
            }
            return _outputs;
        }
    }
}

/// <summary>Getters for the generated columns, shared by the cursor and the row-to-row mapper's rows.</summary>
internal static class OutputGetters
{
    /// <param name="output">The column.</param>
    /// <param name="current">The current slot's generated values (generating its batch if needed).</param>
    /// <param name="imageIndex">The current slot's image index.</param>
    /// <param name="position">The current position (−1 before the first row).</param>
    /// <param name="callerOwnsImages"><see cref="DiffusionOptions.CallerOwnsImages"/>: leave the previous image alone.</param>
    public static ValueGetter<TValue> Create<TValue>(OutputColumn output, Func<SlotOutputs> current, Func<int> imageIndex, Func<long> position, bool callerOwnsImages)
    {
        Delegate getter = output.Role switch
        {
            OutputRole.ImageIndex => Typed<TValue, int>(output, (ref int value) =>
            {
                CheckPosition(position);
                value = imageIndex();
            }),
            OutputRole.Image => Typed<TValue, MLImage>(output, (ref MLImage value) =>
            {
                CheckPosition(position);
                var fresh = current().Image!.ToImage();
                // As ML.NET's image getters do: the value handed back is released (unless the caller keeps its images),
                // and each call gets its own image.
                if (!callerOwnsImages) value?.Dispose();
                value = fresh;
            }),
            _ => Typed<TValue, VBuffer<float>>(output, (ref VBuffer<float> value) =>
            {
                CheckPosition(position);
                var outputs = current();
                var source = output.Role switch
                {
                    OutputRole.PromptEmbedding => outputs.PromptEmbedding,
                    OutputRole.NegativeEmbedding => outputs.NegativeEmbedding,
                    OutputRole.PooledEmbedding => outputs.PooledEmbedding,
                    OutputRole.NegativePooledEmbedding => outputs.NegativePooledEmbedding,
                    _ => outputs.Latents,
                } ?? throw new InvalidOperationException($"Column '{output.Name}' was not computed.");
                if (output.Role is OutputRole.PromptEmbedding or OutputRole.NegativeEmbedding) CheckOneChunk(output, source, position());
                var editor = VBufferEditor.Create(ref value, source.Length);
                source.CopyTo(editor.Values);
                value = editor.Commit();
            }),
        };
        return (ValueGetter<TValue>)getter;
    }

    /// <summary>
    /// The embedding columns hold one chunk of 77 token positions ([77, D]): a long prompt's chunks (more than 75 tokens,
    /// or <c>BREAK</c>) do not fit, and are refused with the column named rather than cut.
    /// </summary>
    private static void CheckOneChunk(OutputColumn output, float[] values, long position)
    {
        if (output.Type is not VectorDataViewType { Size: > 0 } type || values.Length == type.Size) return;
        int chunkLength = type.Dimensions.Length == 2 ? type.Dimensions[0] : 0;
        string chunks = chunkLength > 0 && values.Length % type.Size == 0 ? $"{values.Length / type.Size} chunks of {chunkLength} positions" : $"{values.Length} values";
        throw new InvalidOperationException(
            $"Column '{output.Name}' holds the text embeddings of one chunk of {chunkLength} token positions ({type.Size} values), but the text of row {position + 1} " +
            $"takes {chunks}: a prompt of more than {chunkLength - 2} tokens, or with BREAK, is split into chunks, which this column cannot carry. " +
            "Shorten the prompt, or generate with ml.Transforms.GenerateImages (one stage), which encodes and denoises long prompts.");
    }

    private static Delegate Typed<TValue, TActual>(OutputColumn output, ValueGetter<TActual> getter)
    {
        if (typeof(TValue) != typeof(TActual))
            throw new InvalidOperationException($"Invalid TValue in GetGetter for column '{output.Name}': '{typeof(TValue)}', expected type: '{typeof(TActual)}'.");
        return getter;
    }

    private static void CheckPosition(Func<long> position)
    {
        if (position() < 0) throw new InvalidOperationException("The cursor is not on a row: call MoveNext first.");
    }
}

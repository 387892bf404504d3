using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Transforms;

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

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

using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion;

/// <summary>
/// What the diffusion transformers share: schema checks, the lazy batched <see cref="IDataView"/> that
/// <see cref="Transform"/> returns, the row-to-row mapper for <c>PredictionEngine</c>, and ownership of the loaded model.
/// </summary>
/// <remarks>
/// <para><b>Ownership.</b> Transformers of one <see cref="MLContext"/> that use the same model folder and device share one
/// loaded <see cref="StableDiffusionPipeline"/> (its ONNX sessions load once). Each transformer holds a reference to it;
/// <see cref="Dispose()"/> releases it, and the model is unloaded when the last transformer using it is disposed
/// (<c>TransformerChain.Dispose</c> disposes the transformers it holds). Data views returned by <see cref="Transform"/>
/// must not be read after their transformer is disposed.</para>
/// <para><b>Saving.</b> ML.NET cannot load transformers from other libraries, so <c>MLContext.Model.Save</c> refuses these
/// (and removes the file it had begun);
/// use <see cref="DiffusionModelSaver"/> (<c>DiffusionModelSaver.Save(mlContext, model, inputSchema, path)</c> and <c>DiffusionModelSaver.Load(mlContext, path, out inputSchema)</c>).</para>
/// <para><b>Threads.</b> A fitted transformer may be used from several threads at once: each cursor has its own state and
/// the shared pipeline is thread-safe.</para>
/// </remarks>
public abstract class DiffusionTransformerBase : ITransformer, IDisposable
{
    private readonly ModelLease _lease;
    private readonly DiffusionOptions _options;

    private protected DiffusionTransformerBase(ModelLease lease, DiffusionOptions options)
    {
        _lease = lease;
        _options = options.Clone();
        Generation = new BatchedGeneration(lease.Pipeline, _options);
    }

    internal BatchedGeneration Generation { get; }

    internal DiffusionOptions Settings => _options;

    /// <summary>A copy of the settings this transformer was fitted with.</summary>
    public DiffusionOptions Options => _options.Clone();

    /// <summary>The loaded model this transformer uses (shared; owned by the transformers, do not dispose it).</summary>
    public StableDiffusionPipeline Pipeline => _lease.Pipeline;

    /// <summary>The generated images' width in pixels.</summary>
    public int ImageWidth => Generation.Width;

    /// <summary>The generated images' height in pixels.</summary>
    public int ImageHeight => Generation.Height;

    /// <summary>True when one output row comes from each input row (<see cref="DiffusionOptions.ImagesPerPrompt"/> = 1, or a stage that is always row-to-row).</summary>
    /// <remarks>Asked through <see cref="ITransformer"/> (as <c>PredictionEngine</c> and <c>TransformerChain</c> ask), the
    /// answer false is an exception instead, that says why: see <see cref="ITransformer.IsRowToRowMapper"/>.</remarks>
    public bool IsRowToRowMapper => ImagesPerRow == 1;

    /// <summary>
    /// True when row-to-row; otherwise throws the reason. ML.NET's <c>CreatePredictionEngine</c> asks this first and, on
    /// false, fails with only "Must be a row to row mapper", which does not say that <see cref="DiffusionOptions.ImagesPerPrompt"/>
    /// is the cause; ML.NET reads this property nowhere else (checked on Microsoft.ML 6.0.0: <c>PredictionEngine</c>,
    /// the time-series engine and <c>TransformerChain</c>, which passes the question on). The public
    /// <see cref="IsRowToRowMapper"/> answers false without throwing.
    /// </summary>
    /// <exception cref="InvalidOperationException">Several images per row; the message says why and what to use instead.</exception>
    bool ITransformer.IsRowToRowMapper => IsRowToRowMapper ? true : throw NotRowToRow();

    private InvalidOperationException NotRowToRow() => new(
        $"{GetType().Name} has ImagesPerPrompt = {ImagesPerRow}: each input row gives {ImagesPerRow} output rows (told apart by the " +
        $"'{_options.ImageIndexColumnName}' column), so it is not row-to-row and cannot run in a PredictionEngine, which makes one " +
        "output per input. Use Transform on an IDataView of the requests instead, or set ImagesPerPrompt = 1 and vary the seed " +
        "per request with DiffusionOptions.SeedColumnName.");

    /// <summary>Output rows per input row.</summary>
    internal virtual int ImagesPerRow => 1;

    /// <summary>The input columns read to compute the outputs, with their exact types.</summary>
    internal abstract IReadOnlyList<InputColumn> Inputs { get; }

    /// <summary>The columns added to the input's, in order.</summary>
    internal abstract IReadOnlyList<OutputColumn> Outputs { get; }

    /// <summary>Computes the <paramref name="needed"/> outputs of a batch of image slots (at most <see cref="DiffusionOptions.BatchSize"/>).</summary>
    internal abstract SlotOutputs[] Compute(IReadOnlyList<ImageSlot> slots, OutputSet needed);

    /// <summary>The settings <see cref="DiffusionModelSaver"/> writes.</summary>
    internal abstract SavedTransformer ToSaved();

    /// <summary>The ImageIndex column when rows give several images.</summary>
    private protected IEnumerable<OutputColumn> ImageIndexColumn() =>
        ImagesPerRow > 1 ? [new OutputColumn(OutputRole.ImageIndex, _options.ImageIndexColumnName, NumberDataViewType.Int32)] : [];

    /// <summary>The input schema plus the output columns (a column of the same name as an input is hidden by ours).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An input column is missing or of the wrong type; the message names it, the type expected and the type found.</exception>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        foreach (var input in Inputs) input.Check(inputSchema);
        if (Inputs.Any(i => i.Role == InputRole.Mask))
            InputColumn.CheckMaskSize(_options, name => inputSchema.GetColumnOrNull(name)?.Type);
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema);
        foreach (var output in Outputs) builder.AddColumn(output.Name, output.Type);
        return builder.ToSchema();
    }

    /// <summary>
    /// A lazy view of <paramref name="input"/> with the generated columns: nothing is generated until a cursor's getter
    /// for a generated column is called; then the next <see cref="DiffusionOptions.BatchSize"/> images are generated
    /// together and kept for that cursor's pass.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An input column is missing or of the wrong type.</exception>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new DiffusionDataView(input, this, GetOutputSchema(input.Schema));
    }

    /// <summary>A row-to-row mapper (for <c>PredictionEngine</c>); only when <see cref="IsRowToRowMapper"/>.</summary>
    /// <exception cref="InvalidOperationException">Several images per row: the transform is not row-to-row.</exception>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        if (!IsRowToRowMapper) throw NotRowToRow();
        return new DiffusionRowMapper(this, inputSchema, GetOutputSchema(inputSchema));
    }

    /// <summary>
    /// Not supported: ML.NET cannot load transformers from other libraries. The file that <c>MLContext.Model.Save</c> had
    /// created for the model is removed, so no broken zip is left (see <see cref="AbandonedModelFile"/> for when that is
    /// possible; the message says when it was not).
    /// </summary>
    /// <exception cref="NotSupportedException">Always; the message names <see cref="DiffusionModelSaver"/>.</exception>
    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        string? removed = AbandonedModelFile.Remove(ctx, out string? problem);
        throw new NotSupportedException(
            $"{GetType().Name} cannot be saved with MLContext.Model.Save: ML.NET's model registry cannot load transformers from other libraries. " +
            "Save the model with MLNet.Diffusion.DiffusionModelSaver.Save(mlContext, model, inputSchema, path) " +
            "and load it with DiffusionModelSaver.Load(mlContext, path, out inputSchema); " +
            "standard ML.NET transformers in the same chain are saved inside that file with MLContext.Model.Save. " +
            (removed is not null
                ? $"The incomplete file '{removed}' that MLContext.Model.Save had created was removed."
                : $"What MLContext.Model.Save had already written was left as it is ({problem}): it is an incomplete model; discard it."));
    }

    /// <summary>Releases this transformer's hold on the loaded model (unloaded when no transformer holds it).</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the model (and, in derived classes, what they own).</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing) _lease.Dispose();
    }
}

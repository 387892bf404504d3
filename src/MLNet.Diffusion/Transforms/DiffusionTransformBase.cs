using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using Microsoft.ML;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion;

/// <summary>
/// What the diffusion estimators share: option checks, the output schema shape (which declares the generated columns, so
/// that downstream transforms such as <c>ResizeImages</c> can be appended), and fitting. Fitting trains nothing: it loads
/// the model (shared, see <see cref="DiffusionTransformerBase"/>) and checks the input schema.
/// </summary>
/// <typeparam name="TTransformer">The transformer <see cref="Fit"/> returns.</typeparam>
public abstract class DiffusionEstimatorBase<TTransformer> : IEstimator<TTransformer> where TTransformer : DiffusionTransformerBase
{
    private readonly DiffusionOptions _options;

    private protected DiffusionEstimatorBase(DiffusionHost host, DiffusionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.ImageGenerator is not null && this is not DiffusionEstimator)
            throw new ArgumentException($"DiffusionOptions.ImageGenerator is set for {GetType().Name}, but only GenerateImages (DiffusionEstimator) sends its work to an image generator: " +
                "a generator returns images, not embeddings or latents. Leave ImageGenerator null for this stage.", nameof(options));
        Host = host;
        _options = options.Clone();
        ModelDirectory = string.IsNullOrWhiteSpace(options.ModelPath) ? BuildDemoModel(host) : options.ModelPath;
        Folder = DiffusionModelFolder.Open(ModelDirectory); // a broken folder fails here, naming the missing file
    }

    private protected DiffusionHost Host { get; }

    private protected DiffusionOptions Settings => _options;

    private protected DiffusionModelFolder Folder { get; }

    /// <summary>The model folder: <see cref="DiffusionOptions.ModelPath"/>, or the demo model's when none is named.</summary>
    private protected string ModelDirectory { get; }

    private static string BuildDemoModel(DiffusionHost host)
    {
        using var logger = new MLContextLogger(host.Environment, "demo-model");
        return DemoModel.EnsureBuilt(logger);
    }

    /// <summary>A copy of the settings.</summary>
    public DiffusionOptions Options => _options.Clone();

    /// <summary>The input columns, checked by kind and item type (vector sizes are checked by <see cref="Fit"/>).</summary>
    private protected abstract IEnumerable<InputColumn> ShapeInputs { get; }

    /// <summary>The columns the transformer adds.</summary>
    private protected abstract IEnumerable<SchemaShape.Column> ShapeOutputs { get; }

    /// <summary>Loads (or shares) the model and makes the transformer.</summary>
    private protected abstract TTransformer CreateTransformer();

    /// <summary>Loads the model and checks <paramref name="input"/>'s schema; nothing is generated.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An input column is missing, of the wrong type or of the wrong vector size.</exception>
    /// <exception cref="InvalidOperationException">CUDA was asked for (GpuDeviceId) and cannot be used, and FallbackToCpu is false.</exception>
    public TTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        foreach (var column in ShapeInputs) column.Check(input.Schema); // before loading anything
        var transformer = CreateTransformer();
        try
        {
            transformer.GetOutputSchema(input.Schema);
        }
        catch
        {
            transformer.Dispose();
            throw;
        }
        return transformer;
    }

    /// <summary>The input shape plus the generated columns.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An input column is missing or of the wrong type; the message names it and both types.</exception>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        foreach (var column in ShapeInputs) column.Check(inputSchema);
        if (ShapeInputs.Any(c => c.Role == InputRole.Mask))
            InputColumn.CheckMaskSize(_options, name => inputSchema.Where(c => c.Name == name).Select(c => c.ItemType).LastOrDefault());
        var columns = new Dictionary<string, SchemaShape.Column>();
        foreach (var column in inputSchema) columns[column.Name] = column;
        foreach (var column in ShapeOutputs) columns[column.Name] = column;
        return new SchemaShape(columns.Values);
    }

    /// <summary>Takes a lease on the shared model and makes a transformer with it (releasing the lease if that fails).</summary>
    private protected T WithLease<T>(Func<ModelLease, T> create)
    {
        var lease = ModelLeases.Acquire(Host, _options, ModelDirectory);
        try
        {
            return create(lease);
        }
        catch
        {
            lease.Dispose();
            throw;
        }
    }

    /// <summary>The image column's shape, with the size when the options or unet/config.json give it.</summary>
    private protected SchemaShape.Column ImageShape(string name)
    {
        int? fromConfig = Folder.UnetSampleSize * 8;
        int? width = _options.Width ?? fromConfig, height = _options.Height ?? fromConfig;
        var type = width is int w && height is int h ? new ImageDataViewType(h, w) : new ImageDataViewType();
        return SchemaShapeColumns.Scalar(name, type);
    }

    /// <summary>The image-index column's shape when rows give several images.</summary>
    private protected IEnumerable<SchemaShape.Column> ImageIndexShape() =>
        _options.ImagesPerPrompt > 1 ? [SchemaShapeColumns.Scalar(_options.ImageIndexColumnName, Microsoft.ML.Data.NumberDataViewType.Int32)] : [];

    /// <summary>The per-row input columns the options name (negative prompt excepted).</summary>
    private protected IEnumerable<InputColumn> GenerationInputs()
    {
        if (_options.SeedColumnName is { } seed) yield return InputColumn.Seed(seed);
        if (_options.GuidanceScaleColumnName is { } guidance) yield return InputColumn.Single(InputRole.GuidanceScale, guidance);
        if (_options.StepsColumnName is { } steps) yield return InputColumn.Int32(InputRole.Steps, steps);
        foreach (var column in InputColumn.ImageToImage(_options)) yield return column;
        foreach (var column in InputColumn.Control(_options)) yield return column;
    }
}

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

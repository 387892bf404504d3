using Microsoft.ML;
using Microsoft.ML.Transforms.Image;
using MLNet.Diffusion.Models;
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
        var lease = DiffusionModelCache.Acquire(Host, _options, ModelDirectory);
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
    }
}

using System.Runtime.CompilerServices;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using Microsoft.ML;

namespace MLNet.Diffusion.Transforms;

/// <summary>What a diffusion transform reads from an input column.</summary>
internal enum InputRole
{
    Prompt,
    NegativePrompt,
    Seed,
    GuidanceScale,
    Steps,
    PromptEmbedding,
    NegativeEmbedding,
    PooledEmbedding,
    NegativePooledEmbedding,
    Latents,
    InitImage,
    Mask,
    Strength,
    ControlImage,
    ControlScale,
}

/// <summary>
/// An input column a transform needs: its role, its name and the types it accepts, checked against a
/// <see cref="DataViewSchema"/> (exact vector sizes) or a <see cref="SchemaShape"/> (kinds and item types only).
/// </summary>
internal sealed class InputColumn
{
    private readonly Func<DataViewType, bool> _accepts;
    private readonly Func<SchemaShape.Column, bool> _acceptsShape;

    private InputColumn(InputRole role, string name, string expected, Func<DataViewType, bool> accepts, Func<SchemaShape.Column, bool> acceptsShape,
        string? hint = null)
    {
        Hint = hint;
        Role = role;
        Name = name;
        Expected = expected;
        _accepts = accepts;
        _acceptsShape = acceptsShape;
    }

    public InputRole Role { get; }
    public string Name { get; }
    public string Expected { get; }

    /// <summary>How to supply the column, added to the message when it is missing; null for none.</summary>
    public string? Hint { get; }

    /// <summary>This column with <paramref name="hint"/> added to its missing-column message.</summary>
    public InputColumn WithHint(string hint) => new(Role, Name, Expected, _accepts, _acceptsShape, hint);

    public static InputColumn Text(InputRole role, string name) =>
        new(role, name, "String", t => t is TextDataViewType, c => Scalar(c) && c.ItemType is TextDataViewType);

    public static InputColumn Seed(string name) =>
        new(InputRole.Seed, name, "Int64, Int32 or UInt32", IsSeedType, c => Scalar(c) && IsSeedType(c.ItemType));

    public static InputColumn Single(InputRole role, string name) =>
        new(role, name, "Single", t => t == NumberDataViewType.Single, c => Scalar(c) && c.ItemType == NumberDataViewType.Single);

    public static InputColumn Int32(InputRole role, string name) =>
        new(role, name, "Int32", t => t == NumberDataViewType.Int32, c => Scalar(c) && c.ItemType == NumberDataViewType.Int32);

    /// <summary>An image column (<see cref="ImageDataViewType"/> of <see cref="MLImage"/>, any size).</summary>
    public static InputColumn Image(InputRole role, string name) =>
        new(role, name, "Image", t => t is ImageDataViewType, c => Scalar(c) && c.ItemType is ImageDataViewType);

    /// <summary>A Single vector of the given dimensions; with none, any known-size Single vector (estimator-level check).</summary>
    public static InputColumn Vector(InputRole role, string name, params int[] dimensions)
    {
        int size = dimensions.Length == 0 ? 0 : dimensions.Aggregate(1, (a, b) => a * b);
        string expected = dimensions.Length == 0 ? "Vector<Single>" : new VectorDataViewType(NumberDataViewType.Single, dimensions).ToString();
        return new(role, name, expected,
            t => t is VectorDataViewType v && v.ItemType == NumberDataViewType.Single && v.IsKnownSize && (size == 0 || v.Size == size),
            c => c.Kind == SchemaShape.Column.VectorKind.Vector && !c.IsKey && c.ItemType == NumberDataViewType.Single);
    }

    /// <summary>The init-image, mask and strength columns the options name.</summary>
    public static IEnumerable<InputColumn> ImageToImage(DiffusionOptions options)
    {
        if (options.InitImageColumnName is { } init) yield return Image(InputRole.InitImage, init);
        if (options.MaskColumnName is { } mask) yield return Image(InputRole.Mask, mask);
        if (options.StrengthColumnName is { } strength) yield return Single(InputRole.Strength, strength);
    }

    /// <summary>The ControlNet columns the options name: each row's control image (for the first ControlNet) and scale.</summary>
    public static IEnumerable<InputColumn> Control(DiffusionOptions options)
    {
        if (options.ControlImageColumnName is { } image) yield return Image(InputRole.ControlImage, image);
        if (options.ControlScaleColumnName is { } scale) yield return Single(InputRole.ControlScale, scale);
    }

    /// <summary>
    /// When both image columns declare a size (<c>ImageDataViewType(height, width)</c>), the mask's must be the init
    /// image's; columns of unknown size are checked per row when generating.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The declared sizes differ; the message names the mask column and both types.</exception>
    public static void CheckMaskSize(DiffusionOptions options, Func<string, DataViewType?> typeOf)
    {
        if (options.InitImageColumnName is not { } init || options.MaskColumnName is not { } mask) return;
        if (typeOf(init) is ImageDataViewType i && typeOf(mask) is ImageDataViewType m
            && i.Height > 0 && i.Width > 0 && m.Height > 0 && m.Width > 0 && (i.Height != m.Height || i.Width != m.Width))
            throw SchemaErrors.Mismatch(mask, $"{i} (the size of init-image column '{init}')", m.ToString() ?? "?");
    }

    /// <summary>Finds and checks the column in <paramref name="schema"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Missing or of another type; the message names the column and both types.</exception>
    public DataViewSchema.Column Check(DataViewSchema schema)
    {
        var column = schema.GetColumnOrNull(Name) ?? throw SchemaErrors.Missing(Name, Expected, Hint);
        if (!_accepts(column.Type)) throw SchemaErrors.Mismatch(Name, Expected, column.Type.ToString() ?? "?");
        return column;
    }

    /// <summary>Finds and checks the column in an estimator's input shape.</summary>
    public void Check(SchemaShape shape)
    {
        var found = shape.Where(c => c.Name == Name).ToArray();
        if (found.Length == 0) throw SchemaErrors.Missing(Name, Expected, Hint);
        var column = found[^1];
        if (!_acceptsShape(column)) throw SchemaErrors.Mismatch(Name, Expected, SchemaErrors.Describe(column));
    }

    private static bool Scalar(SchemaShape.Column c) => c.Kind == SchemaShape.Column.VectorKind.Scalar && !c.IsKey;

    private static bool IsSeedType(DataViewType t) => t == NumberDataViewType.Int64 || t == NumberDataViewType.Int32 || t == NumberDataViewType.UInt32;
}

/// <summary>What a diffusion transform writes to an output column.</summary>
internal enum OutputRole
{
    PromptEmbedding,
    NegativeEmbedding,
    PooledEmbedding,
    NegativePooledEmbedding,
    Latents,
    Image,
    ImageIndex,
}

/// <summary>An output column: role, name and exact type.</summary>
internal sealed record OutputColumn(OutputRole Role, string Name, DataViewType Type)
{
    /// <summary>The generated value this column needs computed (none for <see cref="OutputRole.ImageIndex"/>).</summary>
    public OutputSet Needs => Role switch
    {
        OutputRole.PromptEmbedding or OutputRole.PooledEmbedding => OutputSet.PromptEmbedding,
        OutputRole.NegativeEmbedding or OutputRole.NegativePooledEmbedding => OutputSet.NegativeEmbedding,
        OutputRole.Latents => OutputSet.Latents,
        OutputRole.Image => OutputSet.Image,
        _ => OutputSet.None,
    };
}

/// <summary>
/// Makes <see cref="SchemaShape.Column"/> values for estimators' <c>GetOutputSchema</c>. The type has only an internal
/// constructor (ML.NET keeps it so on purpose, dotnet/machinelearning#3243); a .NET 8+ <see cref="UnsafeAccessorAttribute"/>
/// binds to it — checked on Microsoft.ML.Core 6.0.0 (the tests use it on every build):
/// <c>Column(string name, VectorKind vecKind, DataViewType itemType, bool isKey, SchemaShape annotations)</c>.
/// </summary>
internal static class SchemaShapeColumns
{
    private static readonly SchemaShape s_noAnnotations = new([]);

    [UnsafeAccessor(UnsafeAccessorKind.Constructor)]
    private static extern SchemaShape.Column Construct(string name, SchemaShape.Column.VectorKind vecKind, DataViewType itemType, bool isKey, SchemaShape annotations);

    /// <summary>A scalar column (e.g. an image, or an Int32 index).</summary>
    public static SchemaShape.Column Scalar(string name, DataViewType itemType) => Create(name, SchemaShape.Column.VectorKind.Scalar, itemType);

    /// <summary>A fixed-size vector column of <paramref name="itemType"/>.</summary>
    public static SchemaShape.Column Vector(string name, DataViewType itemType) => Create(name, SchemaShape.Column.VectorKind.Vector, itemType);

    internal static SchemaShape.Column Create(string name, SchemaShape.Column.VectorKind kind, DataViewType itemType)
    {
        try
        {
            return Construct(name, kind, itemType, false, s_noAnnotations);
        }
        catch (MissingMethodException e)
        {
            throw Unavailable(e);
        }
    }

    internal static InvalidOperationException Unavailable(Exception inner) => new(
        "This version of Microsoft.ML no longer has SchemaShape.Column's internal constructor (string, VectorKind, DataViewType, bool, SchemaShape), " +
        "which MLNet.Diffusion uses to declare its output columns in GetOutputSchema. Use the Microsoft.ML version MLNet.Diffusion was built against (6.0.0).", inner);
}

/// <summary>Schema errors worded as ML.NET words them, naming the column, the type expected and the type found.</summary>
internal static class SchemaErrors
{
    public static ArgumentOutOfRangeException Missing(string column, string expected, string? hint = null) =>
        new("inputSchema", $"Could not find input column '{column}' (expected {expected})" + (hint is null ? "" : ". " + hint));

    public static ArgumentOutOfRangeException Mismatch(string column, string expected, string found) =>
        new("inputSchema", $"Schema mismatch for input column '{column}': expected {expected}, got {found}");

    /// <summary>A <see cref="SchemaShape.Column"/>'s type as ML.NET writes it: "Single", "Vector&lt;Single&gt;", "VarVector&lt;String&gt;", "Key&lt;UInt32&gt;".</summary>
    public static string Describe(SchemaShape.Column column)
    {
        string item = column.IsKey ? $"Key<{column.ItemType}>" : column.ItemType?.ToString() ?? "?";
        return column.Kind switch
        {
            SchemaShape.Column.VectorKind.Vector => $"Vector<{item}>",
            SchemaShape.Column.VectorKind.VariableVector => $"VarVector<{item}>",
            _ => item,
        };
    }
}

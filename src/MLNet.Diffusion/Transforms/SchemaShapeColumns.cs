using System.Runtime.CompilerServices;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Transforms;

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

using Microsoft.ML;

namespace MLNet.Diffusion.Transforms;

/// <summary>Schema errors worded as ML.NET words them, naming the column, the type expected and the type found.</summary>
internal static class SchemaErrors
{
    public static ArgumentOutOfRangeException Missing(string column, string expected) =>
        new("inputSchema", $"Could not find input column '{column}' (expected {expected})");

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

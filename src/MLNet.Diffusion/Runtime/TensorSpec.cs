using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace MLNet.Diffusion.Runtime;

/// <summary>An input or output of a model component as its ONNX metadata declares it: name, element type and
/// dimensions (−1 for a symbolic dimension).</summary>
internal sealed record TensorSpec(string Name, TensorElementType ElementType, int[] Dimensions)
{
    /// <summary>The rank (0 for a scalar).</summary>
    public int Rank => Dimensions.Length;

    /// <summary>Whether the element type is a floating-point type that we convert to and from <see cref="float"/>.</summary>
    public bool IsFloatingPoint => ElementType is TensorElementType.Float or TensorElementType.Float16;

    /// <summary>Reads the spec from session metadata.</summary>
    public static TensorSpec From(string name, NodeMetadata metadata) =>
        new(name, metadata.IsTensor ? metadata.ElementDataType : TensorElementType.DataTypeMax, metadata.IsTensor ? metadata.Dimensions.ToArray() : []);

    /// <inheritdoc />
    public override string ToString() =>
        $"{Name}: {ElementName(ElementType)}[{string.Join(", ", Dimensions.Select(d => d < 0 ? "?" : d.ToString(System.Globalization.CultureInfo.InvariantCulture)))}]";

    /// <summary>ONNX's name for an element type (float, float16, int64, …).</summary>
    public static string ElementName(TensorElementType t) => t switch
    {
        TensorElementType.Float => "float",
        TensorElementType.Float16 => "float16",
        TensorElementType.Int32 => "int32",
        TensorElementType.Int64 => "int64",
        TensorElementType.Double => "double",
        TensorElementType.DataTypeMax => "non-tensor",
        _ => t.ToString().ToLowerInvariant(),
    };
}

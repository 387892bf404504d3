using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace MLNet.Diffusion.Runtime;

/// <summary>
/// A tensor in managed memory, pinned as an <see cref="OrtValue"/> and reused across runs, in the element
/// type the model declares (float, float16, int32 or int64). Values are written and read as
/// <see cref="float"/>/<see cref="int"/>, converted with <see cref="TensorPrimitives"/>.
/// </summary>
internal sealed class OrtTensor : IDisposable
{
    private readonly float[]? _f32;
    private readonly Float16[]? _f16;
    private readonly int[]? _i32;
    private readonly long[]? _i64;

    private OrtTensor(TensorElementType type, long[] shape)
    {
        ElementType = type;
        Shape = shape;
        long n = 1;
        foreach (var d in shape)
        {
            if (d <= 0) throw new ArgumentException($"Tensor dimensions must be positive, got [{string.Join(", ", shape)}].");
            n *= d;
        }
        if (n > int.MaxValue) throw new ArgumentException($"Tensor of shape [{string.Join(", ", shape)}] is too large.");
        Length = (int)n;
        Value = type switch
        {
            TensorElementType.Float => OrtValue.CreateTensorValueFromMemory(_f32 = new float[n], shape),
            TensorElementType.Float16 => OrtValue.CreateTensorValueFromMemory(_f16 = new Float16[n], shape),
            TensorElementType.Int32 => OrtValue.CreateTensorValueFromMemory(_i32 = new int[n], shape),
            TensorElementType.Int64 => OrtValue.CreateTensorValueFromMemory(_i64 = new long[n], shape),
            _ => throw new NotSupportedException($"Element type {TensorSpec.ElementName(type)} is not supported."),
        };
    }

    /// <summary>Allocates a zeroed tensor.</summary>
    public static OrtTensor Create(TensorElementType type, params long[] shape) => new(type, shape);

    public TensorElementType ElementType { get; }
    public long[] Shape { get; }
    public int Length { get; }
    public OrtValue Value { get; }

    /// <summary>The tensor's bytes (in its element type).</summary>
    public Span<byte> RawBytes => Value.GetTensorMutableRawData();

    /// <summary>Whether this tensor has exactly <paramref name="type"/> and <paramref name="shape"/>.</summary>
    public bool Matches(TensorElementType type, ReadOnlySpan<long> shape) => type == ElementType && shape.SequenceEqual(Shape);

    /// <summary>
    /// A tensor value over part of this tensor's memory: <paramref name="shape"/>'s values from value
    /// <paramref name="offset"/> on (for example the conditional half of a guided batch), sharing the memory, so that what
    /// one model writes there another reads without a copy. The caller disposes the view before this tensor.
    /// </summary>
    public OrtValue View(int offset, long[] shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        if (offset < 0 || offset + n > Length)
            throw new ArgumentException($"A view of [{string.Join(", ", shape)}] at {offset} does not fit a tensor of {Length} values.", nameof(shape));
        var info = OrtMemoryInfo.DefaultInstance;
        int count = (int)n;
        return ElementType switch
        {
            TensorElementType.Float => OrtValue.CreateTensorValueFromMemory(info, _f32.AsMemory(offset, count), shape),
            TensorElementType.Float16 => OrtValue.CreateTensorValueFromMemory(info, _f16.AsMemory(offset, count), shape),
            TensorElementType.Int32 => OrtValue.CreateTensorValueFromMemory(info, _i32.AsMemory(offset, count), shape),
            _ => OrtValue.CreateTensorValueFromMemory(info, _i64.AsMemory(offset, count), shape),
        };
    }

    /// <summary>The values themselves as float16 (empty unless the element type is float16).</summary>
    public Span<Half> Halves => _f16 is null ? default : AsHalf(_f16);

    /// <summary>Writes floats (converted to the element type).</summary>
    public void Write(ReadOnlySpan<float> source, int offset = 0)
    {
        if (offset + source.Length > Length) throw new ArgumentException("Source does not fit the tensor.", nameof(source));
        switch (ElementType)
        {
            case TensorElementType.Float: source.CopyTo(_f32.AsSpan(offset)); break;
            case TensorElementType.Float16: TensorPrimitives.ConvertToHalf(source, AsHalf(_f16!).Slice(offset)); break;
            case TensorElementType.Int64:
                for (int i = 0; i < source.Length; i++) _i64![offset + i] = (long)source[i];
                break;
            case TensorElementType.Int32:
                for (int i = 0; i < source.Length; i++) _i32![offset + i] = (int)source[i];
                break;
        }
    }

    /// <summary>Sets every element to <paramref name="value"/> (integers truncate toward zero, as numpy's cast does).</summary>
    public void Fill(float value)
    {
        switch (ElementType)
        {
            case TensorElementType.Float: _f32.AsSpan().Fill(value); break;
            case TensorElementType.Float16: _f16.AsSpan().Fill((Float16)value); break;
            case TensorElementType.Int64: _i64.AsSpan().Fill((long)value); break;
            case TensorElementType.Int32: _i32.AsSpan().Fill((int)value); break;
        }
    }

    /// <summary>Writes integer ids (converted to the element type).</summary>
    public void Write(ReadOnlySpan<int> source, int offset = 0)
    {
        switch (ElementType)
        {
            case TensorElementType.Int32: source.CopyTo(_i32.AsSpan(offset)); break;
            case TensorElementType.Int64:
                for (int i = 0; i < source.Length; i++) _i64![offset + i] = source[i];
                break;
            default: throw new InvalidOperationException($"Cannot write integer ids into a {TensorSpec.ElementName(ElementType)} tensor.");
        }
    }

    /// <summary>The values themselves when the element type is float (the pinned array ONNX Runtime reads and writes); empty otherwise.</summary>
    public Span<float> Floats => _f32;

    /// <summary>Reads the values as floats.</summary>
    public void Read(Span<float> destination, int offset = 0) => ReadFloats(Value, ElementType, destination, offset);

    /// <summary>Reads floats out of any float or float16 <see cref="OrtValue"/>.</summary>
    public static void ReadFloats(OrtValue value, TensorElementType type, Span<float> destination, int offset = 0)
    {
        switch (type)
        {
            case TensorElementType.Float: value.GetTensorDataAsSpan<float>().Slice(offset, destination.Length).CopyTo(destination); break;
            case TensorElementType.Float16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<Float16, Half>(value.GetTensorDataAsSpan<Float16>()).Slice(offset, destination.Length), destination);
                break;
            default: throw new InvalidOperationException($"Cannot read a {TensorSpec.ElementName(type)} tensor as floats.");
        }
    }

    private static Span<Half> AsHalf(Float16[] data) => MemoryMarshal.Cast<Float16, Half>(data.AsSpan());

    public void Dispose() => Value.Dispose();
}

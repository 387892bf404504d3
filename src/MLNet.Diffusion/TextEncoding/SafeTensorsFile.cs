using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace MLNet.Diffusion.TextEncoding;

/// <summary>The element types of the safetensors format, as its header spells them.</summary>
internal enum SafeTensorsDType
{
    /// <summary>"BOOL", one byte.</summary>
    Bool,
    /// <summary>"U8".</summary>
    U8,
    /// <summary>"I8".</summary>
    I8,
    /// <summary>"F8_E5M2", one byte.</summary>
    F8E5M2,
    /// <summary>"F8_E4M3", one byte.</summary>
    F8E4M3,
    /// <summary>"I16".</summary>
    I16,
    /// <summary>"U16".</summary>
    U16,
    /// <summary>"F16", IEEE half precision.</summary>
    F16,
    /// <summary>"BF16", the upper 16 bits of a float32.</summary>
    BF16,
    /// <summary>"I32".</summary>
    I32,
    /// <summary>"U32".</summary>
    U32,
    /// <summary>"F32".</summary>
    F32,
    /// <summary>"F64".</summary>
    F64,
    /// <summary>"I64".</summary>
    I64,
    /// <summary>"U64".</summary>
    U64,
}

/// <summary>One tensor's header entry: its element type, shape and byte range inside the data buffer.</summary>
/// <param name="Name">The tensor's name in the header.</param>
/// <param name="DType">Its element type.</param>
/// <param name="Shape">Its dimensions (rank 0 is a scalar of one element).</param>
/// <param name="ElementCount">The product of <paramref name="Shape"/>.</param>
/// <param name="Begin">First byte, relative to the start of the data buffer.</param>
/// <param name="End">One past the last byte, relative to the start of the data buffer.</param>
internal sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, long[] Shape, long ElementCount, long Begin, long End)
{
    /// <summary>The shape as the header writes it, for messages: "[2, 768]".</summary>
    public string ShapeText => $"[{string.Join(", ", Shape)}]";
}

/// <summary>
/// A strict reader of the safetensors format (Hugging Face, <c>github.com/huggingface/safetensors</c>): 8 bytes of
/// little-endian header length N, N bytes of UTF-8 JSON mapping each tensor name to
/// <c>{"dtype", "shape", "data_offsets": [begin, end]}</c> with an optional <c>"__metadata__"</c> object of strings, then
/// the data buffer, which the offsets index from its start. The format holds only numbers, so reading it runs nothing.
/// </summary>
/// <remarks>
/// <see cref="Open"/> reads and checks the header alone; tensors are read on demand with bounded reads. Every refusal is
/// an <see cref="InvalidDataException"/> naming the file and the reason. Beyond each entry's own checks, the format's
/// rule that the data buffer is "entirely indexed, and cannot contain holes" (its README) is enforced as the reference
/// implementation does: the tensors' byte ranges, sorted, must tile the buffer exactly, with no overlap, gap or tail.
/// </remarks>
internal sealed class SafeTensorsFile
{
    /// <summary>The largest header accepted (16 MiB); a larger declared length is refused before anything is read.</summary>
    /// <remarks>The reference implementation caps headers at 100 MB; embedding and adapter headers are kilobytes.</remarks>
    public const int MaxHeaderBytes = 16 * 1024 * 1024;

    /// <summary>The key of the optional string-to-string metadata object.</summary>
    public const string MetadataKey = "__metadata__";

    private static readonly Dictionary<string, (SafeTensorsDType Type, int Size)> DTypes = new(StringComparer.Ordinal)
    {
        ["BOOL"] = (SafeTensorsDType.Bool, 1), ["U8"] = (SafeTensorsDType.U8, 1), ["I8"] = (SafeTensorsDType.I8, 1),
        ["F8_E5M2"] = (SafeTensorsDType.F8E5M2, 1), ["F8_E4M3"] = (SafeTensorsDType.F8E4M3, 1),
        ["I16"] = (SafeTensorsDType.I16, 2), ["U16"] = (SafeTensorsDType.U16, 2), ["F16"] = (SafeTensorsDType.F16, 2),
        ["BF16"] = (SafeTensorsDType.BF16, 2), ["I32"] = (SafeTensorsDType.I32, 4), ["U32"] = (SafeTensorsDType.U32, 4),
        ["F32"] = (SafeTensorsDType.F32, 4), ["F64"] = (SafeTensorsDType.F64, 8), ["I64"] = (SafeTensorsDType.I64, 8),
        ["U64"] = (SafeTensorsDType.U64, 8),
    };

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Dictionary<string, SafeTensorInfo> _byName;

    private SafeTensorsFile(string path, long fileLength, long dataStart, List<SafeTensorInfo> tensors,
        Dictionary<string, string> metadata)
    {
        FilePath = path;
        FileLength = fileLength;
        DataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The file as it was opened.</summary>
    public string FilePath { get; }

    /// <summary>The file's length when its header was read; a read refuses a file that changed since.</summary>
    public long FileLength { get; }

    /// <summary>Where the data buffer starts in the file: 8 + the header length.</summary>
    public long DataStart { get; }

    /// <summary>The tensors in the header's order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>The <c>__metadata__</c> strings (empty when the file has none).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Element size in bytes of <paramref name="type"/>.</summary>
    public static int SizeOf(SafeTensorsDType type) => DTypes.Values.First(d => d.Type == type).Size;

    /// <summary>The header spelling of <paramref name="type"/> ("F16", "BF16", ...).</summary>
    public static string NameOf(SafeTensorsDType type) => DTypes.First(d => d.Value.Type == type).Key;

    /// <summary>The tensor named <paramref name="name"/>, or null.</summary>
    public SafeTensorInfo? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>Reads and checks the header of the safetensors file at <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">The file breaks the format; the message names the file and the reason.</exception>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        long fileLength = stream.Length;
        if (fileLength < 8)
            throw Refuse(path, $"the file has {fileLength} bytes, fewer than the 8-byte header length that starts every safetensors file");

        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength == 0)
            throw Refuse(path, "the header length is 0; a safetensors header is a JSON object of at least 2 bytes");
        if (headerLength > MaxHeaderBytes)
            throw Refuse(path, $"the header length is {headerLength} bytes, over the {MaxHeaderBytes / (1024 * 1024)} MiB this reader accepts; " +
                "the file is damaged or not a safetensors file");
        if ((long)headerLength > fileLength - 8)
            throw Refuse(path, $"the header length is {headerLength} bytes but only {fileLength - 8} bytes follow it; the file is truncated or not a safetensors file");

        var headerBytes = new byte[(int)headerLength];
        stream.ReadExactly(headerBytes);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        string headerText;
        try { headerText = StrictUtf8.GetString(headerBytes); }
        catch (DecoderFallbackException e) { throw Refuse(path, $"the header is not valid UTF-8 ({e.Message})"); }

        JsonDocument document;
        try { document = JsonDocument.Parse(headerText); }
        catch (JsonException e) { throw Refuse(path, $"the header is not valid JSON ({e.Message})"); }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Refuse(path, $"the header is a JSON {Kind(document.RootElement)}, not an object of tensors");

            var tensors = new List<SafeTensorInfo>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            Dictionary<string, string>? metadata = null;
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (!names.Add(property.Name))
                    throw Refuse(path, $"the header names '{property.Name}' twice");
                if (property.Name == MetadataKey)
                    metadata = ReadMetadata(path, property.Value);
                else
                    tensors.Add(ReadEntry(path, property.Name, property.Value, dataLength));
            }
            CheckTiling(path, tensors, dataLength);
            return new SafeTensorsFile(path, fileLength, dataStart, tensors, metadata ?? new(StringComparer.Ordinal));
        }
    }

    /// <summary>
    /// Reads tensor <paramref name="tensor"/> as float32 values in row-major order, converting F16 and BF16 exactly.
    /// </summary>
    /// <exception cref="InvalidDataException">The tensor is of another element type, too large for one array, or the file
    /// changed since it was opened.</exception>
    public float[] ReadFloat32(SafeTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (Find(tensor.Name) != tensor)
            throw new ArgumentException($"The tensor '{tensor.Name}' is not one of '{FilePath}'.", nameof(tensor));
        if (tensor.DType is not (SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16))
            throw Refuse(FilePath, $"the tensor '{tensor.Name}' holds {NameOf(tensor.DType)} values; only F32, F16 and BF16 are read as float32");
        long byteLength = tensor.End - tensor.Begin;
        if (tensor.ElementCount > Array.MaxLength || byteLength > Array.MaxLength)
            throw Refuse(FilePath, $"the tensor '{tensor.Name}' {tensor.ShapeText} is too large to read into one array");

        var values = new float[tensor.ElementCount];
        if (values.Length == 0) return values;
        using var stream = new FileStream(FilePath, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        if (stream.Length != FileLength)
            throw Refuse(FilePath, $"the file's length changed from {FileLength} to {stream.Length} bytes since its header was read; open it again");
        stream.Seek(DataStart + tensor.Begin, SeekOrigin.Begin);

        if (tensor.DType == SafeTensorsDType.F32)
        {
            var bytes = MemoryMarshal.AsBytes(values.AsSpan());
            stream.ReadExactly(bytes);
            if (!BitConverter.IsLittleEndian)
            {
                var bits = MemoryMarshal.Cast<float, int>(values.AsSpan());
                BinaryPrimitives.ReverseEndianness(bits, bits);
            }
            return values;
        }

        var raw = new byte[byteLength];
        stream.ReadExactly(raw);
        for (int i = 0; i < values.Length; i++)
        {
            ushort bits = BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(2 * i, 2));
            values[i] = tensor.DType == SafeTensorsDType.F16
                ? (float)BitConverter.UInt16BitsToHalf(bits)
                : BitConverter.Int32BitsToSingle(bits << 16); // BF16 is the upper half of a float32
        }
        return values;
    }

    private static Dictionary<string, string> ReadMetadata(string path, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw Refuse(path, $"'{MetadataKey}' is a JSON {Kind(value)}; it must be an object of strings");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw Refuse(path, $"'{MetadataKey}' entry '{entry.Name}' is a JSON {Kind(entry.Value)}; metadata values must be strings");
            if (!metadata.TryAdd(entry.Name, entry.Value.GetString()!))
                throw Refuse(path, $"'{MetadataKey}' names '{entry.Name}' twice");
        }
        return metadata;
    }

    private static SafeTensorInfo ReadEntry(string path, string name, JsonElement entry, long dataLength)
    {
        if (entry.ValueKind != JsonValueKind.Object)
            throw Refuse(path, $"the entry of tensor '{name}' is a JSON {Kind(entry)}; it must be an object with \"dtype\", \"shape\" and \"data_offsets\"");

        var dtypeElement = Field(path, name, entry, "dtype", JsonValueKind.String);
        string dtypeName = dtypeElement.GetString()!;
        if (!DTypes.TryGetValue(dtypeName, out var dtype))
            throw Refuse(path, $"tensor '{name}' has the unknown dtype \"{dtypeName}\"; known: {string.Join(", ", DTypes.Keys)}");

        var shapeElement = Field(path, name, entry, "shape", JsonValueKind.Array);
        var shape = new long[shapeElement.GetArrayLength()];
        long count = 1;
        int axis = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long size))
                throw Refuse(path, $"tensor '{name}' has shape entry {axis} = {dim.GetRawText()}; dimensions must be integers");
            if (size < 0)
                throw Refuse(path, $"tensor '{name}' has the negative dimension {size} at axis {axis}");
            shape[axis++] = size;
            count = CheckedProduct(path, name, count, size, "element count");
        }
        long byteLength = CheckedProduct(path, name, count, dtype.Size, "byte length");

        var offsets = Field(path, name, entry, "data_offsets", JsonValueKind.Array);
        if (offsets.GetArrayLength() != 2)
            throw Refuse(path, $"tensor '{name}' has {offsets.GetArrayLength()} data_offsets; it needs two, [begin, end]");
        long begin = Offset(path, name, offsets[0], "begin");
        long end = Offset(path, name, offsets[1], "end");
        if (begin > end)
            throw Refuse(path, $"tensor '{name}' has data_offsets [{begin}, {end}]: begin is after end");
        if (end > dataLength)
            throw Refuse(path, $"tensor '{name}' has data_offsets [{begin}, {end}], outside the data buffer of {dataLength} bytes; the file is truncated or damaged");
        if (end - begin != byteLength)
            throw Refuse(path, $"tensor '{name}' spans {end - begin} bytes but its shape {FormatShape(shape)} of {dtypeName} needs {byteLength} ({count} × {dtype.Size})");
        return new SafeTensorInfo(name, dtype.Type, shape, count, begin, end);
    }

    /// <summary>The tensors' byte ranges, sorted, must cover the data buffer exactly once.</summary>
    private static void CheckTiling(string path, List<SafeTensorInfo> tensors, long dataLength)
    {
        var sorted = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        long covered = 0;
        SafeTensorInfo? previous = null;
        foreach (var tensor in sorted)
        {
            if (tensor.Begin < covered)
                throw Refuse(path, $"tensors '{previous!.Name}' [{previous.Begin}, {previous.End}] and '{tensor.Name}' [{tensor.Begin}, {tensor.End}] overlap");
            if (tensor.Begin > covered)
                throw Refuse(path, $"bytes [{covered}, {tensor.Begin}) of the data buffer belong to no tensor; the format allows no holes");
            covered = tensor.End;
            previous = tensor;
        }
        if (covered != dataLength)
            throw Refuse(path, $"the tensors end at byte {covered} of the data buffer but it has {dataLength} bytes; the format allows no trailing bytes");
    }

    private static JsonElement Field(string path, string name, JsonElement entry, string field, JsonValueKind kind)
    {
        if (!entry.TryGetProperty(field, out var value))
            throw Refuse(path, $"the entry of tensor '{name}' has no \"{field}\"");
        if (value.ValueKind != kind)
            throw Refuse(path, $"tensor '{name}' has \"{field}\" as a JSON {Kind(value)}; it must be a{(kind == JsonValueKind.Array ? "n" : "")} {kind.ToString().ToLowerInvariant()}");
        return value;
    }

    private static long Offset(string path, string name, JsonElement value, string which)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long offset) || offset < 0)
            throw Refuse(path, $"tensor '{name}' has the data_offsets {which} {value.GetRawText()}; offsets are non-negative integers");
        return offset;
    }

    private static long CheckedProduct(string path, string name, long a, long b, string what)
    {
        try { return checked(a * b); }
        catch (OverflowException) { throw Refuse(path, $"tensor '{name}' has a shape whose {what} overflows 64 bits"); }
    }

    private static string FormatShape(long[] shape) => $"[{string.Join(", ", shape)}]";

    private static string Kind(JsonElement value) => value.ValueKind.ToString().ToLowerInvariant();

    private static InvalidDataException Refuse(string path, string reason) =>
        new($"'{path}' is not a valid safetensors file: {reason}.");
}

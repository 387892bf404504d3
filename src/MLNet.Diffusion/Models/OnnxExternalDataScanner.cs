using System.Text;

namespace MLNet.Diffusion.Models;

/// <summary>A tensor whose data an ONNX file keeps in another file (<c>external_data</c>).</summary>
/// <param name="TensorName">The initializer's (or constant's) name, for messages.</param>
/// <param name="Location">The <c>location</c> entry as written (relative to the .onnx file's folder).</param>
/// <param name="Offset">The <c>offset</c> entry (0 when absent).</param>
/// <param name="Length">The <c>length</c> entry, when given.</param>
/// <param name="ExpectedBytes">The bytes the tensor's element type and dimensions call for, when they can be worked out.</param>
internal sealed record OnnxExternalDataReference(string TensorName, string Location, long Offset, long? Length, long? ExpectedBytes);

/// <summary>A graph input or output as the ONNX file declares it (−1 for a symbolic or missing dimension).</summary>
/// <param name="Name">The value's name.</param>
/// <param name="Dimensions">The declared dimensions; empty for a scalar or when no shape is declared.</param>
internal sealed record OnnxDeclaredTensor(string Name, long[] Dimensions);

/// <summary>An initializer of the main graph: its element type, dimensions and where its bytes are.</summary>
/// <param name="Name">The initializer's name.</param>
/// <param name="DataType">Its ONNX element type (TensorProto.DataType: 1 float, 10 float16, ...).</param>
/// <param name="Dimensions">Its dimensions.</param>
/// <param name="RawDataOffset">Where its <c>raw_data</c> bytes start in the ONNX file, or −1 when it has none.</param>
/// <param name="RawDataLength">How many <c>raw_data</c> bytes it has (0 without).</param>
/// <param name="External">Where its data lives when it is kept in another file, else null.</param>
internal sealed record OnnxInitializer(string Name, int DataType, long[] Dimensions, long RawDataOffset, long RawDataLength, OnnxExternalDataReference? External);

/// <summary>What <see cref="OnnxExternalDataScanner.Scan(string)"/> found in an ONNX file.</summary>
internal sealed class OnnxModelSummary
{
    internal OnnxModelSummary(IReadOnlyList<OnnxExternalDataReference> externalData, IReadOnlyList<OnnxDeclaredTensor> inputs, IReadOnlyList<OnnxDeclaredTensor> outputs, bool hasGraph,
        IReadOnlyList<OnnxInitializer>? initializers = null)
    {
        ExternalData = externalData;
        Initializers = initializers ?? [];
        Inputs = inputs;
        Outputs = outputs;
        HasGraph = hasGraph;
    }

    /// <summary>Every external-data reference, from the main graph, nested graphs (If/Loop bodies), constants and other tensor attributes, sparse initializers, functions (their nodes and attribute defaults) and training graphs.</summary>
    public IReadOnlyList<OnnxExternalDataReference> ExternalData { get; }

    /// <summary>The main graph's declared inputs (initializers listed as inputs included, as older exporters do).</summary>
    public IReadOnlyList<OnnxDeclaredTensor> Inputs { get; }

    /// <summary>The main graph's declared outputs.</summary>
    public IReadOnlyList<OnnxDeclaredTensor> Outputs { get; }

    /// <summary>Whether the file has a graph at all (a ModelProto without one is not a model).</summary>
    public bool HasGraph { get; }

    /// <summary>The main graph's initializers (dense ones), with where their data is; the token-embedding table of a text
    /// encoder is found among them.</summary>
    public IReadOnlyList<OnnxInitializer> Initializers { get; }
}

/// <summary>
/// Reads the structure of an ONNX file (a protobuf <c>ModelProto</c>) without loading it: where its tensors keep
/// external data, and the main graph's declared inputs and outputs. It is a streaming reader of the protobuf wire
/// format written for this purpose: length-delimited fields that are not needed (weights in <c>raw_data</c>, node
/// names, documentation) are skipped by seeking, so a multi-gigabyte file costs a few megabytes of reading and no
/// allocation proportional to its size.
/// </summary>
/// <remarks>
/// Every place onnx.proto (IR version 10) can hold a TensorProto is visited: graph initializers and sparse
/// initializers, node attributes of type TENSOR, TENSORS, SPARSE_TENSOR and SPARSE_TENSORS, subgraphs in GRAPH and
/// GRAPHS attributes at any depth, model-local functions' nodes and attribute defaults, and the training graphs.
/// Fields read: ModelProto.graph = 7, .training_info = 20 (TrainingInfoProto.initialization = 1, .algorithm = 2),
/// .functions = 25 (FunctionProto.node = 7, .attribute_proto = 11); GraphProto.node = 1, .initializer = 5,
/// .input = 11, .output = 12, .sparse_initializer = 15; NodeProto.attribute = 5; AttributeProto.t = 5, .g = 6,
/// .tensors = 10, .graphs = 11, .sparse_tensor = 22, .sparse_tensors = 23; SparseTensorProto.values = 1,
/// .indices = 2; TensorProto.dims = 1, .data_type = 2, .name = 8, .raw_data = 9, .external_data = 13
/// (StringStringEntryProto key = 1, value = 2), .data_location = 14; ValueInfoProto.type = 2 → TypeProto.tensor_type
/// = 1 (or sparse_tensor_type = 8) → shape = 2 → dim = 1 → dim_value = 1 / dim_param = 2. The other fields hold no
/// tensors (types, value infos, quantization annotations and metadata name tensors but hold none) and are skipped.
/// A tensor's external_data keys <c>location</c>, <c>offset</c> and <c>length</c> may each appear once, and every
/// key and value must be valid UTF-8 (a replacement character would make the name checked differ from the bytes
/// ONNX Runtime opens). Anything that is not valid wire format, or a field that runs past the
/// end of its message or of the file, is refused with an <see cref="InvalidDataException"/> naming the file, the
/// byte offset and the problem.
/// </remarks>
internal static class OnnxExternalDataScanner
{
    /// <summary>Graphs nested deeper than this (If/Loop bodies inside bodies…) are refused: real models nest two or three.</summary>
    public const int MaxGraphNesting = 32;

    /// <summary>The longest external-data key or value accepted, in bytes.</summary>
    public const int MaxEntryBytes = 4096;

    /// <summary>Scans an ONNX file.</summary>
    /// <exception cref="InvalidDataException">The file is empty, truncated or not ONNX protobuf; the message names it.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static OnnxModelSummary Scan(string onnxPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(onnxPath);
        using var stream = new FileStream(onnxPath, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
        return Scan(stream, onnxPath);
    }

    /// <summary>Scans an ONNX model from a seekable stream (read from its current position to its end).</summary>
    /// <param name="stream">A readable, seekable stream.</param>
    /// <param name="name">What to call the model in messages (its path).</param>
    /// <exception cref="InvalidDataException">The data is empty, truncated or not ONNX protobuf.</exception>
    public static OnnxModelSummary Scan(Stream stream, string name)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanRead || !stream.CanSeek) throw new ArgumentException("The stream must be readable and seekable.", nameof(stream));
        long start = stream.Position;
        var reader = new WireReader(stream, name);
        if (reader.End == reader.Position)
            throw new InvalidDataException($"'{name}' is empty (0 bytes); expected an ONNX model. The download or export may have failed.");
        var scan = new ModelScan(reader);
        try
        {
            scan.Model(reader.End);
        }
        catch (InvalidDataException e) when (Sniff(stream, start) is { } what)
        {
            throw new InvalidDataException($"'{name}' is not an ONNX model: it {what}.", e);
        }
        if (!scan.HasGraph)
            throw new InvalidDataException($"'{name}' is not an ONNX model: it parses as protobuf but has no graph (ModelProto field 7).");
        // Older exporters list initializers among the inputs; they are weights, not the inputs a caller feeds.
        var inputs = scan.Inputs.Where(i => !scan.MainInitializers.Contains(i.Name)).ToList();
        return new OnnxModelSummary(scan.External, inputs, scan.Outputs, scan.HasGraph, scan.Initializers);
    }

    /// <summary>Recognises the text files that most often stand in for a model: a Git LFS pointer, an HTML error page, JSON.</summary>
    private static string? Sniff(Stream stream, long start)
    {
        var head = new byte[64];
        stream.Seek(start, SeekOrigin.Begin);
        int n = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        var text = Encoding.ASCII.GetString(head, 0, n).TrimStart();
        if (text.StartsWith("version https://git-lfs", StringComparison.Ordinal))
            return "is a Git LFS pointer file; fetch the real file (git lfs pull, or download it through the Hugging Face hub)";
        if (text.StartsWith('<'))
            return "is an HTML or XML document (an error page saved in place of the download?)";
        if (text.StartsWith('{') || text.StartsWith('['))
            return "is a JSON document";
        return null;
    }

    /// <summary>The bytes of one element of an ONNX data type (TensorProto.DataType), or 0 where not fixed (strings, unknown types); 4-bit types give −2 (two per byte).</summary>
    internal static int ElementBytes(int dataType) => dataType switch
    {
        1 or 6 or 12 => 4,               // float, int32, uint32
        2 or 3 or 9 or 17 or 18 or 19 or 20 => 1, // uint8, int8, bool, float8 variants
        4 or 5 or 10 or 16 => 2,         // uint16, int16, float16, bfloat16
        7 or 11 or 13 or 14 => 8,        // int64, double, uint64, complex64
        15 => 16,                        // complex128
        21 or 22 or 23 => -2,            // uint4, int4, float4e2m1
        _ => 0,
    };

    /// <summary>The recursive descent over the messages that can hold tensors or the main graph's signature.</summary>
    private sealed class ModelScan(WireReader r)
    {
        public readonly List<OnnxExternalDataReference> External = [];
        public readonly List<OnnxDeclaredTensor> Inputs = [];
        public readonly List<OnnxDeclaredTensor> Outputs = [];
        public readonly HashSet<string> MainInitializers = new(StringComparer.Ordinal);
        public readonly List<OnnxInitializer> Initializers = [];
        public bool HasGraph;
        private int _depth;

        public void Model(long end)
        {
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire == 2 && field is 7 or 20 or 25)
                {
                    long sub = r.SubMessageEnd(end);
                    if (field == 7)
                    {
                        // A singular message field that occurs twice is merged by protobuf parsers, so every
                        // occurrence is scanned.
                        HasGraph = true;
                        Graph(sub, main: true);
                    }
                    else if (field == 20) TrainingInfo(sub);
                    else Function(sub);
                }
                else r.Skip(wire, end);
            }
            r.ExpectAt(end, "ModelProto");
        }

        private void TrainingInfo(long end)
        {
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire == 2 && field is 1 or 2) Graph(r.SubMessageEnd(end), main: false);
                else r.Skip(wire, end);
            }
            r.ExpectAt(end, "TrainingInfoProto");
        }

        private void Function(long end)
        {
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire == 2 && field == 7) Node(r.SubMessageEnd(end));
                else if (wire == 2 && field == 11) Attribute(r.SubMessageEnd(end)); // attribute defaults (IR 9)
                else r.Skip(wire, end);
            }
            r.ExpectAt(end, "FunctionProto");
        }

        private void Graph(long end, bool main)
        {
            if (++_depth > MaxGraphNesting)
                throw r.Corrupt($"graphs are nested more than {MaxGraphNesting} deep");
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire != 2) { r.Skip(wire, end); continue; }
                long sub = r.SubMessageEnd(end);
                switch (field)
                {
                    case 1: Node(sub); break;
                    case 5:
                        var initializer = Tensor(sub, main ? Initializers : null);
                        if (main) MainInitializers.Add(initializer);
                        break;
                    case 15: SparseTensor(sub); break;
                    case 11 when main: Inputs.Add(ValueInfo(sub)); break;
                    case 12 when main: Outputs.Add(ValueInfo(sub)); break;
                    default: r.SkipTo(sub); break;
                }
            }
            r.ExpectAt(end, "GraphProto");
            _depth--;
        }

        private void Node(long end)
        {
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire == 2 && field == 5) Attribute(r.SubMessageEnd(end));
                else r.Skip(wire, end);
            }
            r.ExpectAt(end, "NodeProto");
        }

        private void Attribute(long end)
        {
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire != 2) { r.Skip(wire, end); continue; }
                long sub = r.SubMessageEnd(end);
                switch (field)
                {
                    case 5 or 10: Tensor(sub); break;
                    case 6 or 11: Graph(sub, main: false); break;
                    case 22 or 23: SparseTensor(sub); break;
                    default: r.SkipTo(sub); break;
                }
            }
            r.ExpectAt(end, "AttributeProto");
        }

        private void SparseTensor(long end)
        {
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire == 2 && field is 1 or 2) Tensor(r.SubMessageEnd(end));
                else r.Skip(wire, end);
            }
            r.ExpectAt(end, "SparseTensorProto");
        }

        /// <summary>Scans a TensorProto and returns its name; a main-graph initializer is also added to <paramref name="initializers"/>.</summary>
        private string Tensor(long end, List<OnnxInitializer>? initializers = null)
        {
            long start = r.Position;
            var dims = new List<long>();
            int dataType = 0;
            long dataLocation = 0;
            long? rawBytes = null;
            long rawStart = -1;
            string? name = null, location = null;
            long offset = 0;
            long? length = null;
            bool anyEntry = false;
            HashSet<string>? seenKeys = null;
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                switch (field, wire)
                {
                    case (1, 0): dims.Add(r.Varint(end)); break;
                    case (1, 2):
                        long packedEnd = r.SubMessageEnd(end);
                        while (r.Position < packedEnd) dims.Add(r.Varint(packedEnd));
                        r.ExpectAt(packedEnd, "TensorProto.dims");
                        break;
                    case (2, 0): dataType = (int)r.Varint(end); break;
                    case (8, 2): name = r.String(r.SubMessageEnd(end), truncateAt: 256); break;
                    case (9, 2):
                        long rawEnd = r.SubMessageEnd(end);
                        rawStart = r.Position;
                        rawBytes = rawEnd - r.Position;
                        r.SkipTo(rawEnd);
                        break;
                    case (13, 2):
                        anyEntry = true;
                        var (key, value) = Entry(r.SubMessageEnd(end), name);
                        if (key is "location" or "offset" or "length" && !(seenKeys ??= new(StringComparer.Ordinal)).Add(key))
                            throw r.Corrupt($"tensor '{name ?? "?"}' gives the external_data key '{key}' more than once (readers differ in which one they use)");
                        switch (key)
                        {
                            case "location": location = value; break;
                            case "offset": offset = ParseNonNegative(value, "offset", name); break;
                            case "length": length = ParseNonNegative(value, "length", name); break;
                        }
                        break;
                    case (14, 0): dataLocation = r.Varint(end); break;
                    default: r.Skip(wire, end); break;
                }
            }
            r.ExpectAt(end, "TensorProto");
            name ??= $"(unnamed tensor at byte {start})";

            long? expected = ExpectedBytes(dims, dataType, name);
            if (rawBytes is long raw && expected is long e && raw != e)
                throw r.Corrupt($"tensor '{name}' declares {Describe(dims)} of ONNX type {dataType} ({e} bytes) but holds {raw} bytes of raw_data");
            OnnxExternalDataReference? external = null;
            if (dataLocation == 1 || anyEntry)
            {
                if (location is null)
                    throw r.Corrupt($"tensor '{name}' keeps its data externally but names no 'location'");
                external = new OnnxExternalDataReference(name, location, offset, length, expected);
                External.Add(external);
            }
            initializers?.Add(new OnnxInitializer(name, dataType, [.. dims], rawStart, rawBytes ?? 0, external));
            return name;
        }

        /// <summary>A StringStringEntryProto; both strings must be valid UTF-8, since ONNX Runtime opens the location's bytes as they are.</summary>
        private (string Key, string Value) Entry(long end, string? tensor)
        {
            string key = "", value = "";
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire == 2 && field is 1 or 2)
                {
                    long sub = r.SubMessageEnd(end);
                    if (sub - r.Position > MaxEntryBytes)
                        throw r.Corrupt($"an external_data entry is {sub - r.Position} bytes long (at most {MaxEntryBytes} are accepted)");
                    var s = r.StrictString(sub)
                        ?? throw r.Corrupt($"tensor '{tensor ?? "?"}' has an external_data {(field == 1 ? "key" : $"value for '{Shorten(key)}'")} that is not valid UTF-8");
                    if (field == 1) key = s; else value = s;
                }
                else r.Skip(wire, end);
            }
            r.ExpectAt(end, "StringStringEntryProto");
            return (key, value);
        }

        private OnnxDeclaredTensor ValueInfo(long end)
        {
            string name = "";
            long[] dims = [];
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire == 2 && field == 1) name = r.String(r.SubMessageEnd(end), truncateAt: 256);
                else if (wire == 2 && field == 2) dims = TypeShape(r.SubMessageEnd(end));
                else r.Skip(wire, end);
            }
            r.ExpectAt(end, "ValueInfoProto");
            return new OnnxDeclaredTensor(name, dims);
        }

        /// <summary>TypeProto → tensor_type (1) or sparse_tensor_type (8) → shape (2) → dims.</summary>
        private long[] TypeShape(long end)
        {
            long[] dims = [];
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire == 2 && field is 1 or 8)
                {
                    long tensorEnd = r.SubMessageEnd(end);
                    while (r.Position < tensorEnd)
                    {
                        var (f2, w2) = r.Tag(tensorEnd);
                        if (w2 == 2 && f2 == 2) dims = Shape(r.SubMessageEnd(tensorEnd));
                        else r.Skip(w2, tensorEnd);
                    }
                    r.ExpectAt(tensorEnd, "TypeProto.Tensor");
                }
                else r.Skip(wire, end);
            }
            r.ExpectAt(end, "TypeProto");
            return dims;
        }

        private long[] Shape(long end)
        {
            var dims = new List<long>();
            while (r.Position < end)
            {
                var (field, wire) = r.Tag(end);
                if (wire == 2 && field == 1)
                {
                    long dimEnd = r.SubMessageEnd(end);
                    long value = -1;
                    while (r.Position < dimEnd)
                    {
                        var (f2, w2) = r.Tag(dimEnd);
                        if (w2 == 0 && f2 == 1) value = r.Varint(dimEnd);
                        else r.Skip(w2, dimEnd);
                    }
                    r.ExpectAt(dimEnd, "TensorShapeProto.Dimension");
                    dims.Add(value);
                }
                else r.Skip(wire, end);
            }
            r.ExpectAt(end, "TensorShapeProto");
            return [.. dims];
        }

        private long? ExpectedBytes(List<long> dims, int dataType, string name)
        {
            int size = ElementBytes(dataType);
            long count = 1;
            foreach (var d in dims)
            {
                if (d < 0) throw r.Corrupt($"tensor '{name}' has a negative dimension in {Describe(dims)}");
                if (d != 0 && count > long.MaxValue / d)
                    throw r.Corrupt($"tensor '{name}' declares dimensions {Describe(dims)} whose element count overflows 64 bits");
                count *= d;
            }
            if (size == 0) return null;
            if (size < 0) return (count + 1) / 2;
            if (count > long.MaxValue / size)
                throw r.Corrupt($"tensor '{name}' declares dimensions {Describe(dims)} whose size in bytes overflows 64 bits");
            return count * size;
        }

        private long ParseNonNegative(string text, string key, string? tensor)
        {
            if (!long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long value))
                throw r.Corrupt($"tensor '{tensor ?? "?"}' has external_data {key} '{Shorten(text)}', which is not a non-negative integer");
            return value;
        }

        private static string Describe(List<long> dims) => $"[{string.Join(", ", dims)}]";
    }

    internal static string Shorten(string s) => s.Length > 80 ? s[..80] + "…" : s;

    /// <summary>A protobuf wire-format reader over a seekable stream with its own buffer; skips by seeking.</summary>
    private sealed class WireReader
    {
        private readonly Stream _stream;
        private readonly string _name;
        private readonly byte[] _buffer = new byte[1 << 16];
        private long _bufferStart;
        private int _pos, _len;

        public WireReader(Stream stream, string name)
        {
            _stream = stream;
            _name = name;
            _bufferStart = stream.Position;
            End = stream.Length;
        }

        public long End { get; }

        public long Position => _bufferStart + _pos;

        public InvalidDataException Corrupt(string problem) =>
            new($"'{_name}' is not a valid ONNX model: {problem} (at byte {Position} of {End}). The file may be corrupt or truncated; download or export it again.");

        private InvalidDataException Truncated(string what) =>
            new($"'{_name}' is truncated or corrupt: {what} runs past the end of the file (at byte {Position} of {End}). Download or export it again.");

        private byte ReadByte(long end)
        {
            if (Position >= end)
                throw Position >= End ? Truncated("a field") : Corrupt("a field runs past the end of its enclosing message");
            if (_pos == _len) Fill();
            return _buffer[_pos++];
        }

        private void Fill()
        {
            _bufferStart += _len;
            _pos = 0;
            _len = _stream.Read(_buffer, 0, (int)Math.Min(_buffer.Length, End - _bufferStart));
            if (_len <= 0) throw Truncated("the data");
        }

        public long Varint(long end)
        {
            ulong result = 0;
            for (int shift = 0; shift < 70; shift += 7)
            {
                byte b = ReadByte(end);
                if (shift == 63 && b > 1) throw Corrupt("a varint overflows 64 bits");
                result |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return (long)result;
            }
            throw Corrupt("a varint is longer than 10 bytes");
        }

        public (int Field, int Wire) Tag(long end)
        {
            long tag = Varint(end);
            int wire = (int)(tag & 7);
            long field = (long)((ulong)tag >> 3);
            if (field == 0 || field > 536_870_911) throw Corrupt($"field number {field} is not valid protobuf");
            if (wire is 3 or 4 or 6 or 7) throw Corrupt($"wire type {wire} (field {field}) is not used by ONNX; this is not an ONNX protobuf file");
            return ((int)field, wire);
        }

        /// <summary>Reads a length prefix and returns where the field ends, checked against the enclosing message and the file.</summary>
        public long SubMessageEnd(long end)
        {
            long length = Varint(end);
            if (length < 0 || length > end - Position)
            {
                if (length < 0 || Position + length > End) throw Truncated($"a field of {(ulong)length} bytes");
                throw Corrupt($"a field of {length} bytes runs past the end of its enclosing message");
            }
            return Position + length;
        }

        public void Skip(int wire, long end)
        {
            switch (wire)
            {
                case 0: Varint(end); break;
                case 1: SkipBytes(8, end); break;
                case 2: SkipTo(SubMessageEnd(end)); break;
                case 5: SkipBytes(4, end); break;
                default: throw Corrupt($"wire type {wire} is not valid");
            }
        }

        private void SkipBytes(long n, long end)
        {
            if (n > end - Position) throw Position + n > End ? Truncated($"a fixed-size field") : Corrupt("a fixed-size field runs past the end of its enclosing message");
            SkipTo(Position + n);
        }

        /// <summary>Moves to <paramref name="target"/> (within the buffer, or by seeking the stream).</summary>
        public void SkipTo(long target)
        {
            if (target > End) throw Truncated("a field");
            if (target >= _bufferStart && target <= _bufferStart + _len)
            {
                _pos = (int)(target - _bufferStart);
                return;
            }
            _stream.Seek(target, SeekOrigin.Begin);
            _bufferStart = target;
            _pos = _len = 0;
        }

        /// <summary>Reads a UTF-8 string that ends at <paramref name="end"/>, keeping at most <paramref name="truncateAt"/> bytes of it.</summary>
        public string String(long end, int truncateAt)
        {
            long length = end - Position;
            int keep = (int)Math.Min(length, truncateAt);
            var bytes = new byte[keep];
            for (int i = 0; i < keep; i++) bytes[i] = ReadByte(end);
            SkipTo(end);
            return Encoding.UTF8.GetString(bytes);
        }

        /// <summary>Reads a UTF-8 string that ends at <paramref name="end"/> whole; null when its bytes are not valid UTF-8.</summary>
        public string? StrictString(long end)
        {
            var bytes = new byte[(int)(end - Position)];
            for (int i = 0; i < bytes.Length; i++) bytes[i] = ReadByte(end);
            try
            {
                return s_strictUtf8.GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                return null;
            }
        }

        private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

        public void ExpectAt(long end, string message)
        {
            if (Position != end) throw Corrupt($"a {message} does not end where its length says");
        }
    }
}

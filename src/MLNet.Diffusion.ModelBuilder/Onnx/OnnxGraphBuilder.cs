using Google.Protobuf;
using Onnx;

namespace MLNet.Diffusion.ModelBuilder.Onnx;

/// <summary>
/// Builds an ONNX model (one graph, default domain) from code: declare inputs and outputs, add
/// initializers and nodes, then <see cref="Save"/>. Output is deterministic: the same calls give the same
/// bytes. Node output names are generated (<c>opType_N</c>) unless given.
/// </summary>
public sealed class OnnxGraphBuilder
{
    private readonly GraphProto _graph;
    private readonly int _opset;
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private int _counter;

    /// <summary>Starts a graph.</summary>
    /// <param name="graphName">The graph's name.</param>
    /// <param name="opset">The default-domain opset version (17 unless an operator needs newer).</param>
    public OnnxGraphBuilder(string graphName, int opset = 17)
    {
        _graph = new GraphProto { Name = graphName };
        _opset = opset;
    }

    /// <summary>Declares a graph input. Each dimension is an <see cref="int"/> (fixed) or a <see cref="string"/>
    /// (symbolic, e.g. "batch"); no dimensions means a scalar (rank 0).</summary>
    public string Input(string name, OnnxElementType type, params object[] dims)
    {
        Claim(name);
        _graph.Input.Add(ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>Declares a graph output (the value must be produced by a node or be an input).</summary>
    public void Output(string name, OnnxElementType type, params object[] dims) =>
        _graph.Output.Add(ValueInfo(name, type, dims));

    /// <summary>Adds a float initializer.</summary>
    public string Initializer(string name, ReadOnlySpan<float> data, params long[] dims)
    {
        var t = Tensor(name, OnnxElementType.Float, dims, data.Length);
        var bytes = new byte[data.Length * 4];
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(data).CopyTo(bytes);
        t.RawData = ByteString.CopyFrom(bytes);
        return AddInitializer(t);
    }

    /// <summary>Adds a half-precision initializer (values rounded from <paramref name="data"/>).</summary>
    public string InitializerHalf(string name, ReadOnlySpan<float> data, params long[] dims)
    {
        var t = Tensor(name, OnnxElementType.Float16, dims, data.Length);
        var bytes = new byte[data.Length * 2];
        for (int i = 0; i < data.Length; i++)
            BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), BitConverter.HalfToUInt16Bits((Half)data[i]));
        t.RawData = ByteString.CopyFrom(bytes);
        return AddInitializer(t);
    }

    /// <summary>Adds an int64 initializer.</summary>
    public string Initializer(string name, ReadOnlySpan<long> data, params long[] dims)
    {
        var t = Tensor(name, OnnxElementType.Int64, dims, data.Length);
        var bytes = new byte[data.Length * 8];
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(data).CopyTo(bytes);
        t.RawData = ByteString.CopyFrom(bytes);
        return AddInitializer(t);
    }

    /// <summary>A float scalar (rank 0) constant, as an initializer.</summary>
    public string Scalar(float value, string? name = null) => Initializer(name ?? Fresh("c"), [value]);

    /// <summary>An int64 vector constant (shapes, axes), as an initializer.</summary>
    public string Longs(params long[] values) => Initializer(Fresh("i64"), values, values.Length);

    /// <summary>Adds a node with one output and returns the output's name.</summary>
    /// <param name="opType">The operator (e.g. "MatMul").</param>
    /// <param name="inputs">Input value names ("" for an omitted optional input).</param>
    /// <param name="attributes">Attributes: int, long, float, string, long[], int[], float[] or <see cref="TensorProto"/>.</param>
    public string Node(string opType, string[] inputs, params (string Name, object Value)[] attributes) =>
        NodeNamed(opType, inputs, Fresh(opType.ToLowerInvariant()), attributes);

    /// <summary>Adds a node whose single output has the given name (e.g. a graph output).</summary>
    public string NodeNamed(string opType, string[] inputs, string output, params (string Name, object Value)[] attributes)
    {
        Claim(output);
        var node = new NodeProto { OpType = opType, Name = $"{opType}_{_graph.Node.Count}" };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        foreach (var (n, v) in attributes) node.Attribute.Add(Attribute(n, v));
        _graph.Node.Add(node);
        return output;
    }

    // Short forms for the operators the model builders use most.
    /// <summary>a + b (broadcasting).</summary>
    public string Add(string a, string b) => Node("Add", [a, b]);
    /// <summary>a − b (broadcasting).</summary>
    public string Sub(string a, string b) => Node("Sub", [a, b]);
    /// <summary>a · b element-wise (broadcasting).</summary>
    public string Mul(string a, string b) => Node("Mul", [a, b]);
    /// <summary>a / b element-wise (broadcasting).</summary>
    public string Div(string a, string b) => Node("Div", [a, b]);
    /// <summary>Matrix product (numpy semantics).</summary>
    public string MatMul(string a, string b) => Node("MatMul", [a, b]);
    /// <summary>Element-wise square root.</summary>
    public string Sqrt(string x) => Node("Sqrt", [x]);
    /// <summary>Element-wise exponential.</summary>
    public string Exp(string x) => Node("Exp", [x]);
    /// <summary>Casts to <paramref name="to"/>.</summary>
    public string Cast(string x, OnnxElementType to) => Node("Cast", [x], ("to", (long)to));
    /// <summary>Reshapes to a fixed or partly inferred (−1, 0) shape.</summary>
    public string Reshape(string x, params long[] shape) => Node("Reshape", [x, Longs(shape)]);
    /// <summary>Permutes axes.</summary>
    public string Transpose(string x, params long[] perm) => Node("Transpose", [x], ("perm", perm));
    /// <summary>Gathers rows of <paramref name="data"/> along <paramref name="axis"/>.</summary>
    public string Gather(string data, string indices, long axis = 0) => Node("Gather", [data, indices], ("axis", axis));
    /// <summary>Softmax along <paramref name="axis"/>.</summary>
    public string Softmax(string x, long axis = -1) => Node("Softmax", [x], ("axis", axis));
    /// <summary>Sum over <paramref name="axes"/> (opset 13+: axes as an input).</summary>
    public string ReduceSum(string x, long[] axes, bool keepDims = true) => Node("ReduceSum", [x, Longs(axes)], ("keepdims", keepDims ? 1L : 0L));
    /// <summary>Mean over <paramref name="axes"/> (opset 18+ takes axes as an input; before that, an attribute).</summary>
    public string ReduceMean(string x, long[] axes, bool keepDims = true) =>
        _opset >= 18 ? Node("ReduceMean", [x, Longs(axes)], ("keepdims", keepDims ? 1L : 0L)) : Node("ReduceMean", [x], ("axes", axes), ("keepdims", keepDims ? 1L : 0L));
    /// <summary>Inserts size-1 axes.</summary>
    public string Unsqueeze(string x, params long[] axes) => Node("Unsqueeze", [x, Longs(axes)]);
    /// <summary>Concatenates along <paramref name="axis"/>.</summary>
    public string Concat(long axis, params string[] xs) => Node("Concat", xs, ("axis", axis));
    /// <summary>Maximum over <paramref name="axes"/> (opset 18+ takes axes as an input; before that, an attribute).</summary>
    public string ReduceMax(string x, long[] axes, bool keepDims = true) =>
        _opset >= 18 ? Node("ReduceMax", [x, Longs(axes)], ("keepdims", keepDims ? 1L : 0L)) : Node("ReduceMax", [x], ("axes", axes), ("keepdims", keepDims ? 1L : 0L));
    /// <summary>Minimum over <paramref name="axes"/> (opset 18+ takes axes as an input; before that, an attribute).</summary>
    public string ReduceMin(string x, long[] axes, bool keepDims = true) =>
        _opset >= 18 ? Node("ReduceMin", [x, Longs(axes)], ("keepdims", keepDims ? 1L : 0L)) : Node("ReduceMin", [x], ("axes", axes), ("keepdims", keepDims ? 1L : 0L));
    /// <summary>Clamps a float tensor to [<paramref name="min"/>, <paramref name="max"/>] (opset 11+: bounds as scalar inputs).</summary>
    public string Clip(string x, float min, float max) => Node("Clip", [x, Scalar(min), Scalar(max)]);
    /// <summary>Element-wise logistic sigmoid.</summary>
    public string Sigmoid(string x) => Node("Sigmoid", [x]);
    /// <summary>Element-wise natural logarithm.</summary>
    public string Log(string x) => Node("Log", [x]);
    /// <summary>Element-wise absolute value.</summary>
    public string Abs(string x) => Node("Abs", [x]);
    /// <summary>Element-wise floor.</summary>
    public string Floor(string x) => Node("Floor", [x]);
    /// <summary>Element-wise choice: <paramref name="whenTrue"/> where <paramref name="condition"/> holds, else <paramref name="whenFalse"/>.</summary>
    public string Where(string condition, string whenTrue, string whenFalse) => Node("Where", [condition, whenTrue, whenFalse]);
    /// <summary>Element-wise a &gt; b (boolean).</summary>
    public string Greater(string a, string b) => Node("Greater", [a, b]);
    /// <summary>Slices <paramref name="x"/> along <paramref name="axes"/> from <paramref name="starts"/> to <paramref name="ends"/>
    /// (ends may be negative, counted from the end, or <see cref="long.MaxValue"/> for "to the end").</summary>
    public string Slice(string x, long[] starts, long[] ends, long[] axes) => Node("Slice", [x, Longs(starts), Longs(ends), Longs(axes)]);
    /// <summary>x · scale + shift with float scalars (skipping a factor of 1 or a shift of 0).</summary>
    public string Affine(string x, float scale, float shift)
    {
        var y = scale == 1f ? x : Mul(x, Scalar(scale));
        return shift == 0f ? y : Add(y, Scalar(shift));
    }
    /// <summary>2-D convolution with the given weight (and optional bias) initializer names.</summary>
    public string Conv(string x, string weight, string? bias = null, long[]? strides = null, long[]? pads = null, long group = 1)
    {
        var attributes = new List<(string, object)> { ("group", group) };
        if (strides is not null) attributes.Add(("strides", strides));
        if (pads is not null) attributes.Add(("pads", pads));
        return Node("Conv", bias is null ? [x, weight] : [x, weight, bias], [.. attributes]);
    }
    /// <summary>Element-wise hyperbolic tangent.</summary>
    public string Tanh(string x) => Node("Tanh", [x]);
    /// <summary>SiLU (swish), x·σ(x), as Stable Diffusion's UNet and VAE use.</summary>
    public string Silu(string x) => Mul(x, Sigmoid(x));
    /// <summary>Element-wise sine.</summary>
    public string Sin(string x) => Node("Sin", [x]);
    /// <summary>Element-wise cosine.</summary>
    public string Cos(string x) => Node("Cos", [x]);
    /// <summary>Passes <paramref name="x"/> on under the name <paramref name="output"/>.</summary>
    public string Identity(string x, string output) => NodeNamed("Identity", [x], output);

    /// <summary>
    /// Turns the graph so far into half precision, as an fp16 export is: every float initializer is rounded to float16,
    /// every float input and output is declared float16, and every <c>Cast</c> to float casts to float16 instead. Integer
    /// values are kept. Call it once the graph is complete; the operators used must accept float16 (ONNX Runtime's CUDA
    /// provider has float16 kernels for the element-wise, convolution, pooling, attention and resize operators; its CPU
    /// provider lacks most of them).
    /// </summary>
    public void ConvertToFloat16()
    {
        foreach (var t in _graph.Initializer)
        {
            if (t.DataType != (int)OnnxElementType.Float) continue;
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span);
            var bytes = new byte[values.Length * 2];
            for (int i = 0; i < values.Length; i++)
                BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), BitConverter.HalfToUInt16Bits((Half)values[i]));
            t.DataType = (int)OnnxElementType.Float16;
            t.RawData = ByteString.CopyFrom(bytes);
        }
        foreach (var v in _graph.Input.Concat(_graph.Output).Concat(_graph.ValueInfo))
            if (v.Type.TensorType.ElemType == (int)OnnxElementType.Float) v.Type.TensorType.ElemType = (int)OnnxElementType.Float16;
        foreach (var node in _graph.Node)
            if (node.OpType == "Cast")
                foreach (var a in node.Attribute)
                    if (a.Name == "to" && a.I == (long)OnnxElementType.Float) a.I = (long)OnnxElementType.Float16;
    }

    /// <summary>The finished model.</summary>
    public ModelProto Build(string producer = "MLNet.Diffusion.ModelBuilder")
    {
        var model = new ModelProto
        {
            IrVersion = 8,
            ProducerName = producer,
            ProducerVersion = "1",
            Graph = _graph.Clone(),
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = _opset });
        return model;
    }

    /// <summary>The model's serialized bytes.</summary>
    public byte[] ToBytes() => Build().ToByteArray();

    /// <summary>Writes the model to <paramref name="path"/> (creating the folder).</summary>
    /// <param name="path">The .onnx file.</param>
    /// <param name="externalDataFile">When given, every initializer of at least <paramref name="externalThresholdBytes"/>
    /// bytes is stored in this file beside the model (the external-data layout of large exports,
    /// e.g. <c>weights.pb</c> or <c>model.onnx_data</c>).</param>
    /// <param name="externalThresholdBytes">The size from which initializers move out.</param>
    public void Save(string path, string? externalDataFile = null, int externalThresholdBytes = 1024)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var model = Build();
        if (externalDataFile is not null)
        {
            using var data = File.Create(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, externalDataFile));
            foreach (var t in model.Graph.Initializer)
            {
                if (t.RawData.Length < externalThresholdBytes) continue;
                long offset = data.Position;
                t.RawData.WriteTo(data);
                t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = externalDataFile });
                t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = t.RawData.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                t.DataLocation = TensorProto.Types.DataLocation.External;
                t.RawData = ByteString.Empty;
            }
        }
        File.WriteAllBytes(path, model.ToByteArray());
    }

    /// <summary>A fresh value name with the given prefix.</summary>
    public string Fresh(string prefix)
    {
        string name;
        do name = $"{prefix}_{_counter++}"; while (_names.Contains(name));
        return name;
    }

    private string AddInitializer(TensorProto t)
    {
        Claim(t.Name);
        _graph.Initializer.Add(t);
        return t.Name;
    }

    private void Claim(string name)
    {
        if (!_names.Add(name)) throw new ArgumentException($"The value name '{name}' is already used in graph '{_graph.Name}'.", nameof(name));
    }

    private static TensorProto Tensor(string name, OnnxElementType type, long[] dims, int count)
    {
        long expected = 1;
        foreach (var d in dims) expected *= d;
        if (expected != count)
            throw new ArgumentException($"Initializer '{name}': {count} values do not fill shape [{string.Join(", ", dims)}].");
        var t = new TensorProto { Name = name, DataType = (int)type };
        t.Dims.AddRange(dims);
        return t;
    }

    private static ValueInfoProto ValueInfo(string name, OnnxElementType type, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
        {
            shape.Dim.Add(d switch
            {
                int i => new TensorShapeProto.Types.Dimension { DimValue = i },
                long l => new TensorShapeProto.Types.Dimension { DimValue = l },
                string s => new TensorShapeProto.Types.Dimension { DimParam = s },
                _ => throw new ArgumentException($"Dimension of '{name}' must be an int or a string, not {d?.GetType().Name ?? "null"}."),
            });
        }
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    private static AttributeProto Attribute(string name, object value)
    {
        var a = new AttributeProto { Name = name };
        switch (value)
        {
            case int i: a.Type = AttributeProto.Types.AttributeType.Int; a.I = i; break;
            case long l: a.Type = AttributeProto.Types.AttributeType.Int; a.I = l; break;
            case float f: a.Type = AttributeProto.Types.AttributeType.Float; a.F = f; break;
            case string s: a.Type = AttributeProto.Types.AttributeType.String; a.S = ByteString.CopyFromUtf8(s); break;
            case long[] ls: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ls); break;
            case int[] ints: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ints.Select(x => (long)x)); break;
            case float[] fs: a.Type = AttributeProto.Types.AttributeType.Floats; a.Floats.AddRange(fs); break;
            case TensorProto t: a.Type = AttributeProto.Types.AttributeType.Tensor; a.T = t; break;
            default: throw new ArgumentException($"Attribute '{name}' has an unsupported value type {value?.GetType().Name ?? "null"}.");
        }
        return a;
    }
}

using Google.Protobuf;
using MLNet.Diffusion.Models;
using Onnx;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>
/// Issue 12: the external-data scanner looks in every place onnx.proto can hold a <c>TensorProto</c> (graph and
/// sparse initializers, node attributes, subgraphs at any depth, model-local functions and their attribute
/// defaults, training graphs), so an escaping <c>location</c> is refused by <see cref="DiffusionModelFolder.Open"/>
/// wherever it hides, before ONNX Runtime reads the file.
/// </summary>
public class ExternalDataPlacesTests(UntrustedFolderFixture fixture) : IClassFixture<UntrustedFolderFixture>
{
    private const string Escaping = "../../outside.bin";

    /// <summary>Where a tensor can sit: each entry puts the given tensor there in a model.</summary>
    private static readonly Dictionary<string, Action<ModelProto, TensorProto>> s_places = new()
    {
        ["graph-initializer"] = (p, t) => p.Graph.Initializer.Add(t),
        ["sparse-initializer-values"] = (p, t) => p.Graph.SparseInitializer.Add(Sparse(values: t, indices: Int64Indices())),
        ["sparse-initializer-indices"] = (p, t) => p.Graph.SparseInitializer.Add(Sparse(values: InlineFloats(), indices: AsInt64(t))),
        ["attribute-tensor"] = (p, t) => p.Graph.Node.Insert(0, NodeWith(new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = t })),
        ["attribute-tensors"] = (p, t) => p.Graph.Node.Insert(0, NodeWith(new AttributeProto { Name = "values", Type = AttributeProto.Types.AttributeType.Tensors, Tensors = { InlineFloats(), t } })),
        ["attribute-sparse-tensor"] = (p, t) => p.Graph.Node.Insert(0, NodeWith(new AttributeProto { Name = "sparse_value", Type = AttributeProto.Types.AttributeType.SparseTensor, SparseTensor = Sparse(t, Int64Indices()) })),
        ["attribute-sparse-tensors"] = (p, t) => p.Graph.Node.Insert(0, NodeWith(new AttributeProto { Name = "sparse_values", Type = AttributeProto.Types.AttributeType.SparseTensors, SparseTensors = { Sparse(InlineFloats(), AsInt64(t)) } })),
        ["attribute-graph"] = (p, t) => p.Graph.Node.Insert(0, NodeWith(GraphAttribute("then_branch", new GraphProto { Name = "then", Initializer = { t } }))),
        ["attribute-graphs"] = (p, t) => p.Graph.Node.Insert(0, NodeWith(new AttributeProto { Name = "branches", Type = AttributeProto.Types.AttributeType.Graphs, Graphs = { new GraphProto { Name = "a" }, new GraphProto { Name = "b", Initializer = { t } } } })),
        ["subgraph-sparse-initializer"] = (p, t) => p.Graph.Node.Insert(0, NodeWith(GraphAttribute("body", new GraphProto { Name = "body", SparseInitializer = { Sparse(t, Int64Indices()) } }))),
        ["subgraph-of-subgraph-constant"] = (p, t) => p.Graph.Node.Insert(0, NodeWith(GraphAttribute("body", new GraphProto
        {
            Name = "outer",
            Node = { NodeWith(GraphAttribute("then_branch", new GraphProto { Name = "inner", Node = { NodeWith(new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = t }) } })) },
        }))),
        ["function-node-attribute"] = (p, t) => p.Functions.Add(new FunctionProto { Name = "f", Domain = "local", Node = { NodeWith(new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = t }) } }),
        ["function-node-subgraph"] = (p, t) => p.Functions.Add(new FunctionProto { Name = "f", Domain = "local", Node = { NodeWith(GraphAttribute("then_branch", new GraphProto { Name = "g", Initializer = { t } })) } }),
        ["function-attribute-default-tensor"] = (p, t) => p.Functions.Add(new FunctionProto { Name = "f", Domain = "local", AttributeProto = { new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = t } } }),
        ["function-attribute-default-tensors"] = (p, t) => p.Functions.Add(new FunctionProto { Name = "f", Domain = "local", AttributeProto = { new AttributeProto { Name = "values", Type = AttributeProto.Types.AttributeType.Tensors, Tensors = { t } } } }),
        ["function-attribute-default-sparse-tensor"] = (p, t) => p.Functions.Add(new FunctionProto { Name = "f", Domain = "local", AttributeProto = { new AttributeProto { Name = "sparse", Type = AttributeProto.Types.AttributeType.SparseTensor, SparseTensor = Sparse(t, Int64Indices()) } } }),
        ["function-attribute-default-graph"] = (p, t) => p.Functions.Add(new FunctionProto { Name = "f", Domain = "local", AttributeProto = { GraphAttribute("body", new GraphProto { Name = "g", Initializer = { t } }) } }),
        ["training-initialization-initializer"] = (p, t) => p.TrainingInfo.Add(new TrainingInfoProto { Initialization = new GraphProto { Name = "init", Initializer = { t } } }),
        ["training-algorithm-initializer"] = (p, t) => p.TrainingInfo.Add(new TrainingInfoProto { Algorithm = new GraphProto { Name = "step", Initializer = { t } } }),
        ["training-algorithm-node-attribute"] = (p, t) => p.TrainingInfo.Add(new TrainingInfoProto { Algorithm = new GraphProto { Name = "step", Node = { NodeWith(new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = t }) } } }),
    };

    public static TheoryData<string> Places => [.. s_places.Keys];

    [Theory]
    [MemberData(nameof(Places))]
    public void ScannerFindsTheReferenceWhereverTheTensorSits(string place)
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(fixture.Plain, "unet", "model.onnx")));
        s_places[place](proto, External("stolen", Escaping));
        using var stream = new MemoryStream(proto.ToByteArray());
        var summary = OnnxExternalDataScanner.Scan(stream, "model.onnx");
        var reference = Assert.Single(summary.ExternalData);
        Assert.Equal("stolen", reference.TensorName);
        Assert.Equal(Escaping, reference.Location);
    }

    [Theory]
    [MemberData(nameof(Places))]
    public void EscapingLocationIsRefusedByTheFolderCheckWhereverTheTensorSits(string place)
    {
        string model = fixture.CopyOf(fixture.Plain);
        string unet = Path.Combine(model, "unet", "model.onnx");
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(unet));
        s_places[place](proto, External("stolen", Escaping));
        File.WriteAllBytes(unet, proto.ToByteArray());
        File.WriteAllBytes(Path.Combine(model, "..", "outside.bin"), new byte[16]);

        var e = Assert.Throws<InvalidDataException>(() => DiffusionModelFolder.Open(model));
        Assert.Contains(Path.Combine("unet", "model.onnx"), e.Message);
        Assert.Contains("'stolen'", e.Message);
        Assert.Contains("'..'", e.Message);
    }

    [Theory]
    [InlineData("location")]
    [InlineData("offset")]
    [InlineData("length")]
    public void RepeatedExternalDataKeyIsRefused(string key)
    {
        // onnx.proto's key-value lists allow no duplicate keys; readers differ in which one wins, so a second
        // 'location' could name a file other than the one checked.
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(fixture.Plain, "unet", "model.onnx")));
        var tensor = External("twice", "weights.pb");
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = "0" });
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = "16" });
        tensor.ExternalData.Add(new StringStringEntryProto { Key = key, Value = key == "location" ? Escaping : "0" });
        proto.Graph.Initializer.Add(tensor);
        using var stream = new MemoryStream(proto.ToByteArray());
        var e = Assert.Throws<InvalidDataException>(() => OnnxExternalDataScanner.Scan(stream, "model.onnx"));
        Assert.Contains("'twice'", e.Message);
        Assert.Contains($"'{key}'", e.Message);
    }

    [Fact]
    public void LocationThatIsNotUtf8IsRefused()
    {
        // ONNX Runtime opens the location's bytes; a decoder that replaced bad bytes would check another name.
        // The protobuf classes cannot hold invalid UTF-8, so the tensor is written field by field and appended as a
        // second occurrence of ModelProto.graph (7), which protobuf readers merge into the first.
        byte[] entry = Message(o =>
        {
            o.WriteTag(1, WireFormat.WireType.LengthDelimited);
            o.WriteString("location");
            o.WriteTag(2, WireFormat.WireType.LengthDelimited);
            o.WriteBytes(ByteString.CopyFrom((byte)'w', 0xFF, (byte)'b'));
        });
        byte[] tensor = Message(o =>
        {
            o.WriteTag(1, WireFormat.WireType.Varint);
            o.WriteInt64(4);
            o.WriteTag(2, WireFormat.WireType.Varint);
            o.WriteInt32((int)TensorProto.Types.DataType.Float);
            o.WriteTag(8, WireFormat.WireType.LengthDelimited);
            o.WriteString("bytes");
            o.WriteTag(13, WireFormat.WireType.LengthDelimited);
            o.WriteBytes(ByteString.CopyFrom(entry));
            o.WriteTag(14, WireFormat.WireType.Varint);
            o.WriteEnum(1);
        });
        byte[] graph = Message(o =>
        {
            o.WriteTag(5, WireFormat.WireType.LengthDelimited);
            o.WriteBytes(ByteString.CopyFrom(tensor));
        });
        byte[] model = [.. File.ReadAllBytes(Path.Combine(fixture.Plain, "unet", "model.onnx")), .. Message(o =>
        {
            o.WriteTag(7, WireFormat.WireType.LengthDelimited);
            o.WriteBytes(ByteString.CopyFrom(graph));
        })];
        using var stream = new MemoryStream(model);
        var e = Assert.Throws<InvalidDataException>(() => OnnxExternalDataScanner.Scan(stream, "model.onnx"));
        Assert.Contains("'bytes'", e.Message);
        Assert.Contains("UTF-8", e.Message);
    }

    // ---- helpers ----------------------------------------------------------------------------------------

    private static byte[] Message(Action<CodedOutputStream> write)
    {
        using var buffer = new MemoryStream();
        var output = new CodedOutputStream(buffer);
        write(output);
        output.Flush();
        return buffer.ToArray();
    }

    private static TensorProto External(string name, string location) => new()
    {
        Name = name,
        DataType = (int)TensorProto.Types.DataType.Float,
        Dims = { 4 },
        DataLocation = TensorProto.Types.DataLocation.External,
        ExternalData = { new StringStringEntryProto { Key = "location", Value = location } },
    };

    private static TensorProto AsInt64(TensorProto t)
    {
        t.DataType = (int)TensorProto.Types.DataType.Int64;
        return t;
    }

    private static TensorProto InlineFloats() => new()
    {
        Name = "inline_values",
        DataType = (int)TensorProto.Types.DataType.Float,
        Dims = { 4 },
        FloatData = { 1, 2, 3, 4 },
    };

    private static TensorProto Int64Indices() => new()
    {
        Name = "inline_indices",
        DataType = (int)TensorProto.Types.DataType.Int64,
        Dims = { 4 },
        Int64Data = { 0, 1, 2, 3 },
    };

    private static SparseTensorProto Sparse(TensorProto values, TensorProto indices) => new() { Values = values, Indices = indices, Dims = { 8 } };

    private static NodeProto NodeWith(AttributeProto attribute) => new() { OpType = "Constant", Output = { $"out_{Guid.NewGuid():N}" }, Attribute = { attribute } };

    private static AttributeProto GraphAttribute(string name, GraphProto graph) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Graph, G = graph };
}

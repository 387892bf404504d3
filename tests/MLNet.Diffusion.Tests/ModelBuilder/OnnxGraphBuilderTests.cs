using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.Tests.ModelBuilder;

public class OnnxGraphBuilderTests
{
    private static OnnxGraphBuilder AffineGraph()
    {
        var g = new OnnxGraphBuilder("affine");
        var x = g.Input("x", OnnxElementType.Float, "batch", 3);
        var w = g.Initializer("w", new float[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, 3, 3);
        var b = g.InitializerHalf("b", new float[] { 0.5f, -1, 2 }, 3);
        g.NodeNamed("Add", [g.MatMul(x, w), g.Cast(b, OnnxElementType.Float)], "y");
        g.Output("y", OnnxElementType.Float, "batch", 3);
        return g;
    }

    [Theory]
    [InlineData(null)]
    [InlineData("weights.pb")]
    public void BuiltGraphRunsInOnnxRuntime(string? externalData)
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-builder-");
        try
        {
            var path = Path.Combine(dir.FullName, "model.onnx");
            AffineGraph().Save(path, externalData, externalThresholdBytes: 8);
            if (externalData is not null) Assert.True(new FileInfo(Path.Combine(dir.FullName, externalData)).Length >= 36);
            using var session = new InferenceSession(path);
            using var input = OrtValue.CreateTensorValueFromMemory(new float[] { 1, 0, 0, 0, 1, 1 }, new long[] { 2, 3 });
            using var outputs = session.Run(new RunOptions(), new[] { "x" }, new[] { input }, new[] { "y" });
            var y = outputs[0].GetTensorDataAsSpan<float>().ToArray();
            Assert.Equal(new float[] { 1.5f, 1, 5, 11.5f, 12, 17 }, y);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void SliceTakesARangeAlongAnAxis()
    {
        var g = new OnnxGraphBuilder("slice");
        var x = g.Input("x", OnnxElementType.Float, 2, 3);
        g.Identity(g.Slice(x, [1], [3], [1]), "y");
        g.Output("y", OnnxElementType.Float, 2, 2);
        using var session = new InferenceSession(g.ToBytes());
        using var input = OrtValue.CreateTensorValueFromMemory(new float[] { 1, 2, 3, 4, 5, 6 }, new long[] { 2, 3 });
        using var outputs = session.Run(new RunOptions(), new[] { "x" }, new[] { input }, new[] { "y" });
        Assert.Equal(new float[] { 2, 3, 5, 6 }, outputs[0].GetTensorDataAsSpan<float>().ToArray());
    }

    [Fact]
    public void SameCallsGiveSameBytes() => Assert.Equal(AffineGraph().ToBytes(), AffineGraph().ToBytes());

    [Fact]
    public void DuplicateNamesAreRejected()
    {
        var g = new OnnxGraphBuilder("dup");
        g.Input("x", OnnxElementType.Float, 1);
        var e = Assert.Throws<ArgumentException>(() => g.Initializer("x", new float[] { 1 }, 1));
        Assert.Contains("'x'", e.Message);
    }
}

using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.ModelBuilder.Synthetic;

namespace MLNet.Diffusion.Tests.ModelBuilder;

/// <summary>The synthetic builders' <c>Float16</c> option (the GPU check's fp16 UNets): the whole UNet in half precision, as an fp16 export.</summary>
public class SyntheticFloat16Tests
{
    [Fact]
    public void TheSdxlShapedUNetIsHalfPrecisionThroughout()
    {
        var options = new SyntheticXlModelOptions { Channels = 8, ResidualBlocks = 2, AttentionWidth = 4, TextEncoderWidth = 8, TextEncoder2Width = 12, SampleSize = 8, Float16 = true };
        var model = SyntheticXlModelFolder.UNet(options, new WeightRandom(1)).Build();
        var graph = model.Graph;
        Assert.Equal(["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"], graph.Input.Select(i => i.Name));
        Assert.All(graph.Input.Concat(graph.Output), v => Assert.Equal((int)OnnxElementType.Float16, v.Type.TensorType.ElemType));
        Assert.DoesNotContain(graph.Initializer, t => t.DataType == (int)OnnxElementType.Float);
        Assert.Contains(graph.Initializer, t => t.DataType == (int)OnnxElementType.Float16 && t.Name == "res0");
        Assert.Contains(graph.Initializer, t => t.DataType == (int)OnnxElementType.Int64); // shapes stay integers

        // The same weights, rounded: the float32 build's first convolution rounded to half is the float16 build's.
        var single = SyntheticXlModelFolder.UNet(options with { Float16 = false }, new WeightRandom(1)).Build().Graph.Initializer.Single(t => t.Name == "res0");
        var half = graph.Initializer.Single(t => t.Name == "res0");
        var expected = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(single.RawData.Span).ToArray().Select(v => (Half)v);
        var actual = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(half.RawData.Span).ToArray();
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void TheSd15ShapedUNetDeclaresFloat16ToTheLibrary()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-synthetic-fp16-");
        try
        {
            string root = SyntheticModelFolder.Write(dir.FullName, new SyntheticModelOptions { Channels = 8, ResidualBlocks = 2, AttentionWidth = 4, EmbeddingWidth = 16, SampleSize = 8, Float16 = true });
            using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(Path.Combine(root, "unet", "model.onnx"));
            Assert.All(session.InputMetadata.Values, m => Assert.Equal(TensorElementType.Float16, m.ElementDataType));
            Assert.Equal(TensorElementType.Float16, session.OutputMetadata["out_sample"].ElementDataType);
            using var pipeline = StableDiffusionPipeline.Load(root);
            Assert.Equal(TensorElementType.Float16, pipeline.UNet.SampleSpec.ElementType);
            using var result = pipeline.Generate("a photo", 1, new GenerationOptions { Steps = 2, Width = 64, Height = 64 }).Image;
            Assert.Equal(64, result.Width);
        }
        finally
        {
            dir.Delete(true);
        }
    }
}

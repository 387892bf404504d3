using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>
/// What the test-model factories' tests do with a written graph: open it in ONNX Runtime directly (not through the
/// engine), feed float or float16 tensors, read every output back as floats, and compare against the closed forms.
/// </summary>
internal static class OnnxGraphTestKit
{
    /// <summary>A session on <c>root/component/model.onnx</c>.</summary>
    public static InferenceSession Open(string root, string component) => new(Path.Combine(root, component, "model.onnx"));

    /// <summary>A float tensor, or float16 when <paramref name="fp16"/>.</summary>
    public static OrtValue Floats(float[] data, long[] shape, bool fp16) =>
        fp16 ? OrtValue.CreateTensorValueFromMemory(Array.ConvertAll(data, v => (Float16)v), shape)
             : OrtValue.CreateTensorValueFromMemory(data, shape);

    /// <summary>The values as the model sees them: rounded to float16 for fp16 boundaries.</summary>
    public static float[] AsSeen(float[] data, bool fp16) => fp16 ? Array.ConvertAll(data, v => (float)(Half)v) : data;

    /// <summary>A float or float16 output, as floats.</summary>
    public static float[] ReadFloats(OrtValue value) =>
        value.GetTensorTypeAndShape().ElementDataType == TensorElementType.Float16
            ? Array.ConvertAll(value.GetTensorDataAsSpan<Float16>().ToArray(), h => h.ToFloat())
            : value.GetTensorDataAsSpan<float>().ToArray();

    /// <summary>Runs every output of <paramref name="session"/> on <paramref name="inputs"/> (disposed after); returns them by name.</summary>
    public static Dictionary<string, float[]> Run(InferenceSession session, params (string Name, OrtValue Value)[] inputs)
    {
        using var options = new RunOptions();
        var names = session.OutputMetadata.Keys.ToArray();
        try
        {
            using var outputs = session.Run(options, inputs.Select(i => i.Name).ToArray(), inputs.Select(i => i.Value).ToArray(), names);
            return names.Zip(outputs.Select(ReadFloats)).ToDictionary(p => p.First, p => p.Second);
        }
        finally
        {
            foreach (var (_, v) in inputs) v.Dispose();
        }
    }

    /// <summary><paramref name="count"/> seeded standard normal values times <paramref name="scale"/>.</summary>
    public static float[] Random(int count, long seed, float scale = 1)
    {
        var values = new float[count];
        new GaussianNoise(seed).Fill(values);
        for (int i = 0; i < count; i++) values[i] *= scale;
        return values;
    }

    /// <summary>Every value within <paramref name="tolerance"/> relative to max(1, |expected|); the message names the index.</summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double allowed = tolerance * Math.Max(1, Math.Abs(expected[i]));
            Assert.True(Math.Abs(expected[i] - actual[i]) <= allowed, $"{what}[{i}]: expected {expected[i]}, got {actual[i]} (tolerance {allowed}).");
        }
    }

    /// <summary>Checks a declared input or output's element type and dimensions (−1 = symbolic).</summary>
    public static void AssertNode(IReadOnlyDictionary<string, NodeMetadata> metadata, string name, TensorElementType type, params int[] dims)
    {
        Assert.True(metadata.ContainsKey(name), $"'{name}' missing; found {string.Join(", ", metadata.Keys)}.");
        Assert.Equal(type, metadata[name].ElementDataType);
        Assert.Equal(dims, metadata[name].Dimensions);
    }

    /// <summary>A JSON file of the model folder.</summary>
    public static JsonElement ReadJson(string root, string file) => JsonDocument.Parse(File.ReadAllText(Path.Combine(root, file))).RootElement;
}

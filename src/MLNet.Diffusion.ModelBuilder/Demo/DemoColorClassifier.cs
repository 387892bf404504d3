using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// A tiny ONNX "classifier" for composing the demo model's images with ML.NET's <c>ApplyOnnxModel</c>: it takes the
/// planar RGB pixels that <c>ExtractPixels</c> makes of a small image and scores which primary colour stands out.
/// </summary>
/// <remarks>
/// Input <see cref="InputName"/>: float [1, 3·S·S] (the red plane, then green, then blue; values 0–1, i.e.
/// <c>ExtractPixels(scaleImage: 1/255)</c> of an S×S image). Output <see cref="OutputName"/>: float [1, 3], the softmax
/// over red, green, blue of <see cref="Sharpness"/>·(m_c − (m_r + m_g + m_b)/3), where m_c is the mean of plane c. A
/// white, gray or black background adds the same to every m_c and drops out, so the shape's colour decides. No
/// training: the weights are written down.
/// </remarks>
public static class DemoColorClassifier
{
    /// <summary>The input tensor's name (use it as the pixel column's name, or map it in <c>ApplyOnnxModel</c>).</summary>
    public const string InputName = "Pixels";

    /// <summary>The output tensor's name: scores for red, green, blue.</summary>
    public const string OutputName = "ColorScores";

    /// <summary>The labels of the output, in order.</summary>
    public static readonly IReadOnlyList<string> Labels = ["red", "green", "blue"];

    /// <summary>How sharply the scores separate (a colour excess of 0.1 gives e^2 odds).</summary>
    public const float Sharpness = 20f;

    /// <summary>Builds the classifier for <paramref name="side"/>×<paramref name="side"/> images and writes it to <paramref name="path"/>.</summary>
    public static void Write(string path, int side)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(side, 1);
        int plane = side * side;
        // Weight [3·S², 3]: column c averages plane c and subtracts a third of the average of all planes.
        var weights = new float[3 * plane * 3];
        for (int p = 0; p < 3; p++)
            for (int i = 0; i < plane; i++)
                for (int c = 0; c < 3; c++)
                    weights[(p * plane + i) * 3 + c] = Sharpness * ((p == c ? 1f : 0f) - 1f / 3) / plane;
        var g = new OnnxGraphBuilder("demo_color_classifier");
        var pixels = g.Input(InputName, OnnxElementType.Float, 1, 3 * plane);
        var logits = g.MatMul(pixels, g.Initializer("color_weights", weights, 3 * plane, 3));
        g.Identity(g.Softmax(logits, axis: -1), OutputName);
        g.Output(OutputName, OnnxElementType.Float, 1, 3);
        g.Save(path);
    }
}

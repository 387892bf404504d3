using Microsoft.ML.Data;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Control;

/// <summary>
/// A temporary folder with a test model whose ControlNet-ready UNet sits beside the plain one (or is the UNet), and
/// ControlNet folders beside it; control images of one colour, whose mean is known.
/// </summary>
internal sealed class ControlNetTestKit : IDisposable
{
    public ControlNetTestKit(TestModelOptions? model = null, ControlUNetPlace place = ControlUNetPlace.Beside, ControlNetTestOptions? residuals = null)
    {
        Model = model ?? new TestModelOptions();
        Root = Directory.CreateTempSubdirectory("mlnd-controlnet-").FullName;
        ModelPath = ControlNetTestModelFactory.CreateModel(Path.Combine(Root, "model"), Model, place, residuals);
    }

    public TestModelOptions Model { get; }

    public string Root { get; }

    public string ModelPath { get; }

    /// <summary>Writes a ControlNet folder named <paramref name="name"/> and returns it.</summary>
    public string ControlNet(string name = "controlnet-a", ControlNetTestOptions? o = null) =>
        ControlNetTestModelFactory.CreateControlNet(Path.Combine(Root, name), Model, o);

    /// <summary>An image of one colour.</summary>
    public static MLImage Solid(int size, byte r, byte g, byte b)
    {
        var rgba = new byte[size * size * 4];
        for (int i = 0; i < size * size; i++)
        {
            rgba[4 * i] = r;
            rgba[4 * i + 1] = g;
            rgba[4 * i + 2] = b;
            rgba[4 * i + 3] = 255;
        }
        return MLImage.CreateFromPixels(size, size, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>The mean of a solid image's RGB values read from 0 to 1.</summary>
    public static float Mean(byte r, byte g, byte b) => (r / 255f + g / 255f + b / 255f) / 3;

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Tests.Demo;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion.Tests.Transforms;

/// <summary>
/// The composition the README promises: generated images through ML.NET's own <c>ResizeImages</c>, <c>ExtractPixels</c> and
/// <c>ApplyOnnxModel</c> (a second ONNX model, run by ML.NET's OnnxTransformer) in one estimator chain.
/// </summary>
[Collection(DemoCollection.Name)]
public class OnnxCompositionTests(DemoModelFixture demo)
{
    private sealed class Row
    {
        public string Prompt { get; set; } = "";
    }

    [Fact]
    public void AnOnnxClassifierAfterResizeAndExtractPixelsSeesThePromptedColour()
    {
        const int side = 8;
        var classifier = demo.Scratch("color-classifier.onnx");
        DemoColorClassifier.Write(classifier, side);
        string[] prompts =
        [
            "a large red circle on a white background", "a large blue square on a black background",
            "a red star on a gray background", "a large blue circle on a white background",
        ];
        var ml = new MLContext(seed: 1);
        var table = ml.Data.LoadFromEnumerable(prompts.Select(p => new Row { Prompt = p }));
        var chain = ml.Transforms.GenerateImages(new DiffusionOptions { ModelPath = demo.Folder, Steps = 20, Seed = 7, BatchSize = 2, IntraOpThreads = 1 })
            .Append(ml.Transforms.ResizeImages("Small", side, side, "Image"))
            .Append(ml.Transforms.ExtractPixels(DemoColorClassifier.InputName, "Small", scaleImage: 1f / 255))
            .Append(ml.Transforms.ApplyOnnxModel(DemoColorClassifier.OutputName, DemoColorClassifier.InputName, classifier));
        using var model = chain.Fit(table);
        var output = model.Transform(table);

        var type = Assert.IsType<VectorDataViewType>(output.Schema[DemoColorClassifier.OutputName].Type);
        Assert.Equal((NumberDataViewType.Single, 3), (type.ItemType, type.Size)); // [1, 3]: the model's output shape
        var scores = output.GetColumn<float[]>(DemoColorClassifier.OutputName).ToArray();
        var labels = scores.Select(s => DemoColorClassifier.Labels[Array.IndexOf(s, s.Max())]).ToArray();
        Assert.Equal(["red", "blue", "red", "blue"], labels);
        Assert.All(scores, s => Assert.Equal(1f, s.Sum(), 1e-4f));
        (model as IDisposable)?.Dispose();
    }
}

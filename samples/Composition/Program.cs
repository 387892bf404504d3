// Composition: generated images feed ordinary ML.NET steps. GenerateImages → ResizeImages → ExtractPixels → KMeans,
// then prints which prompts cluster together. Each image is shrunk to one pixel, its mean colour, so the shape's place
// and size drop out (at 4×4 or more the demo model's shapes cluster by where they were drawn); with the demo model,
// red shapes and blue shapes then land in different clusters whatever their shape: k-means sees the pixels, not the words.
// Then GenerateImages → ResizeImages → ExtractPixels → ApplyOnnxModel: a second ONNX model (a tiny colour scorer the
// ModelBuilder writes, DemoColorClassifier) run by ML.NET's own OnnxTransformer on the generated pixels.
//
//   dotnet run --project samples/Composition                      # demo model
//   dotnet run --project samples/Composition -- /models/sd15-onnx  # a real model folder (use prompts it knows)
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Samples;
using MLNet.Diffusion;

string modelDir = SampleModel.Resolve(args.Length > 0 ? args[0] : null);
var ml = new MLContext(seed: 1);

string[] prompts =
[
    "a large red circle on a white background",
    "a large red square on a white background",
    "a large red triangle on a white background",
    "a large red star on a white background",
    "a large blue circle on a white background",
    "a large blue square on a white background",
    "a large blue triangle on a white background",
    "a large blue star on a white background",
];
IDataView table = ml.Data.LoadFromEnumerable(prompts.Select(p => new PromptRow { Prompt = p }));

var pipeline = ml.Transforms.GenerateImages("Image", "Prompt", new DiffusionOptions { ModelPath = modelDir, Steps = 20, Seed = 42, BatchSize = 4 })
    .Append(ml.Transforms.ResizeImages("Small", imageWidth: 1, imageHeight: 1, inputColumnName: "Image"))   // the mean colour
    .Append(ml.Transforms.ExtractPixels("Features", inputColumnName: "Small", scaleImage: 1f / 255))
    .Append(ml.Transforms.DropColumns("Image", "Small"))
    .AppendCacheCheckpoint(ml)   // k-means reads the data several times; generate each image once
    .Append(ml.Clustering.Trainers.KMeans(featureColumnName: "Features", numberOfClusters: 2));

using var model = pipeline.Fit(table);
var clustered = ml.Data.CreateEnumerable<ClusteredRow>(model.Transform(table), reuseRowObject: false).ToList();

foreach (var group in clustered.GroupBy(r => r.PredictedLabel).OrderBy(g => g.Key))
{
    Console.WriteLine($"Cluster {group.Key}:");
    foreach (var row in group) Console.WriteLine($"  {row.Prompt}");
}

// Does each cluster hold one colour only?
bool byColour = clustered.GroupBy(r => r.PredictedLabel)
    .All(g => g.Select(r => r.Prompt.Contains("red") ? "red" : "blue").Distinct().Count() == 1);
Console.WriteLine(byColour ? "The clusters split the images by colour." : "The clusters mix colours.");

// The same images scored by another ONNX model through ApplyOnnxModel (8×8 planar RGB in, red/green/blue scores out).
const int side = 8;
string classifier = Path.Combine("out", "composition", "color-classifier.onnx");
DemoColorClassifier.Write(classifier, side);
var scoring = ml.Transforms.GenerateImages("Image", "Prompt", new DiffusionOptions { ModelPath = modelDir, Steps = 20, Seed = 42, BatchSize = 4 })
    .Append(ml.Transforms.ResizeImages("Small", side, side, "Image"))
    .Append(ml.Transforms.ExtractPixels(DemoColorClassifier.InputName, "Small", scaleImage: 1f / 255))
    .Append(ml.Transforms.ApplyOnnxModel(DemoColorClassifier.OutputName, DemoColorClassifier.InputName, classifier));
using var scorer = scoring.Fit(table);
var scored = scorer.Transform(table);
var promptsOut = scored.GetColumn<string>("Prompt").ToArray();
var scores = scored.GetColumn<float[]>(DemoColorClassifier.OutputName).ToArray();
Console.WriteLine($"ApplyOnnxModel ({classifier}):");
for (int i = 0; i < promptsOut.Length; i++)
{
    int best = Array.IndexOf(scores[i], scores[i].Max());
    Console.WriteLine($"  {promptsOut[i],-45} → {DemoColorClassifier.Labels[best]} ({scores[i][best]:P0})");
}

internal sealed class PromptRow
{
    public string Prompt { get; set; } = "";
}

internal sealed class ClusteredRow
{
    public string Prompt { get; set; } = "";
    public uint PredictedLabel { get; set; }
}

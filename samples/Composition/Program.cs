// Composition: generated images feed ordinary ML.NET steps. GenerateImages → ResizeImages → ExtractPixels → KMeans,
// then prints which prompts cluster together. With the demo model, red shapes and blue shapes land in different
// clusters whatever their shape: the clustering sees colour, not the words.
//
//   dotnet run --project samples/Composition                      # demo model
//   dotnet run --project samples/Composition -- /models/sd15-onnx  # a real model folder (use prompts it knows)
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Samples;
using MLNet.Diffusion.Transforms;

string modelDir = SampleModel.Resolve(args.Length > 0 ? args[0] : null);
var ml = new MLContext(seed: 1);

string[] prompts =
[
    "a large red circle in the center",
    "a large red square in the center",
    "a large red triangle in the center",
    "a large red star in the center",
    "a large blue circle in the center",
    "a large blue square in the center",
    "a large blue triangle in the center",
    "a large blue star in the center",
];
IDataView table = ml.Data.LoadFromEnumerable(prompts.Select(p => new PromptRow { Prompt = p }));

var pipeline = ml.Transforms.GenerateImages(new DiffusionOptions { ModelPath = modelDir, Steps = 20, Seed = 42, BatchSize = 4 },
                                            promptColumn: "Prompt", outputColumn: "Image")
    .Append(ml.Transforms.ResizeImages("Small", imageWidth: 16, imageHeight: 16, inputColumnName: "Image"))
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

internal sealed class PromptRow
{
    public string Prompt { get; set; } = "";
}

internal sealed class ClusteredRow
{
    public string Prompt { get; set; } = "";
    public uint PredictedLabel { get; set; }
}

// Sketch to image: draws a rough red blob in the top-left corner of a white canvas and turns it into
// "a red circle" with image-to-image, once with the engine and once through an ML.NET pipeline (an init-image
// column on GenerateImages). Uses the built-in demo model (built on first run into .demo-model/) or a
// Stable Diffusion ONNX folder (with vae_encoder/) given as the first argument.
//
//   dotnet run --project samples/SketchToImage                       # demo model, images in out/sketch-to-image
//   dotnet run --project samples/SketchToImage -- /models/sd15-onnx  # a real model folder
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MLNet.Diffusion;
using MLNet.Diffusion.Samples;

string modelDir = SampleSupport.ModelFolder(args);
string prompt = args.Length > 1 ? args[1] : "a red circle";
string outDir = SampleSupport.OutputFolder("sketch-to-image");
const float strength = 0.7f; // keep the sketch's layout, let the model redraw the shape

using var pipeline = StableDiffusionPipeline.Load(modelDir);
int size = pipeline.DefaultSize;
using var sketch = SampleSupport.WobblyBlob(size, 0.27f * size, 0.27f * size, 0.17f * size, (220, 45, 35));
sketch.Save(Path.Combine(outDir, "sketch.png"));

// The engine: one ImagePrompt with an init image and a strength.
var options = new GenerationOptions { Steps = 20, GuidanceScale = 7.5f };
var result = pipeline.Generate([new ImagePrompt(prompt, Seed: 1) { InitImage = sketch, Strength = strength }], options)[0];
result.Save(Path.Combine(outDir, "result.png"));
result.Image.Dispose();
Console.WriteLine($"'{prompt}' from the sketch at strength {strength}: {Path.Combine(outDir, "result.png")}");

// The same through ML.NET: a table of sketches, per-row strengths (NaN = DiffusionOptions.Strength).
var ml = new MLContext();
var rows = new[]
{
    new SketchRow { Prompt = prompt, Seed = 1, Sketch = sketch, Strength = float.NaN },
    new SketchRow { Prompt = prompt, Seed = 2, Sketch = sketch, Strength = 0.5f },
};
var data = ml.Data.LoadFromEnumerable(rows);
var estimator = ml.Transforms.GenerateImages("Image", nameof(SketchRow.Prompt), new DiffusionOptions
{
    ModelPath = modelDir,
    Steps = options.Steps,
    GuidanceScale = options.GuidanceScale,
    Strength = strength,
    BatchSize = 2,
    SeedColumnName = nameof(SketchRow.Seed),
    InitImageColumnName = nameof(SketchRow.Sketch),
    StrengthColumnName = nameof(SketchRow.Strength),
});
using var model = estimator.Fit(data);
var images = model.Transform(data);
using (var cursor = images.GetRowCursor([images.Schema["Image"]]))
{
    var getImage = cursor.GetGetter<MLImage>(images.Schema["Image"]);
    MLImage image = null!;
    while (cursor.MoveNext())
    {
        getImage(ref image);
        var file = Path.Combine(outDir, $"mlnet-row{cursor.Position}.png");
        image.Save(file);
        Console.WriteLine($"ML.NET row {cursor.Position}: {file}");
    }
    image?.Dispose();
}

/// <summary>A row of the ML.NET table: a prompt, a seed, a sketch and its strength.</summary>
internal sealed class SketchRow
{
    public string Prompt { get; set; } = "";
    public long Seed { get; set; }

    [ImageType(128, 128)] // LoadFromEnumerable needs a declared size; any size of image is accepted
    public MLImage? Sketch { get; set; }

    public float Strength { get; set; } = float.NaN;
}

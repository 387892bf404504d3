// Batch generation from a CSV table: prompts.csv (Prompt,Seed) → LoadFromTextFile → GenerateImages → one PNG per row.
//
//   dotnet run --project samples/BatchFromCsv                              # demo model, prompts.csv, PNGs in out/batch-from-csv
//   dotnet run --project samples/BatchFromCsv -- my-prompts.csv            # another table (header Prompt,Seed)
//   dotnet run --project samples/BatchFromCsv -- my-prompts.csv /models/sd15-onnx
using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Samples;
using MLNet.Diffusion;

string csv = args.Length > 0 ? args[0] : Path.Combine(AppContext.BaseDirectory, "prompts.csv");
string modelDir = SampleModel.Resolve(args.Length > 1 ? args[1] : null);
string outDir = SampleModel.OutputFolder("batch-from-csv");

var ml = new MLContext(seed: 0);
IDataView table = ml.Data.LoadFromTextFile<PromptRow>(csv, separatorChar: ',', hasHeader: true, allowQuoting: true);

var options = new DiffusionOptions { ModelPath = modelDir, Steps = 25, GuidanceScale = 7.5f, SeedColumnName = nameof(PromptRow.Seed), BatchSize = 2 };
using var model = ml.Transforms.GenerateImages("Image", nameof(PromptRow.Prompt), options).Fit(table);
IDataView images = model.Transform(table);   // lazy: images are generated as the cursor moves

var sw = Stopwatch.StartNew();
using var cursor = images.GetRowCursor(images.Schema);
var prompt = cursor.GetGetter<ReadOnlyMemory<char>>(images.Schema[nameof(PromptRow.Prompt)]);
var seed = cursor.GetGetter<long>(images.Schema[nameof(PromptRow.Seed)]);
var image = cursor.GetGetter<MLImage>(images.Schema["Image"]);
ReadOnlyMemory<char> p = default; long s = 0; MLImage? img = null;
int n = 0;
while (cursor.MoveNext())
{
    prompt(ref p); seed(ref s); image(ref img!);
    string file = Path.Combine(outDir, $"{n:D2}-seed{s}-{SampleModel.Slug(p.ToString())}.png");
    img!.Save(file);
    Console.WriteLine($"{file}  ({img.Width}×{img.Height})");
    n++;
}
img?.Dispose();
Console.WriteLine($"{n} images from {Path.GetFileName(csv)} in {sw.Elapsed.TotalSeconds:F1} s.");

/// <summary>A row of the CSV table: the prompt and its seed (same seed, same image).</summary>
internal sealed class PromptRow
{
    [LoadColumn(0)] public string Prompt { get; set; } = "";
    [LoadColumn(1)] public long Seed { get; set; }
}

// SDXL quick start: the same pipeline with an SDXL-family folder. By default it uses the built-in demo model's SDXL-layout
// sibling (built on first run into .demo-xl-model/: two text encoders, pooled embeddings and time ids, 256×256 images),
// or an SDXL / SDXL-Turbo ONNX folder given as the first argument, and an SDXL refiner folder as the second.
//
//   dotnet run --project samples/SdxlQuickStart                                          # demo XL model
//   dotnet run --project samples/SdxlQuickStart -- /models/sdxl-base-onnx /models/sdxl-refiner-onnx
using System.Diagnostics;
using MLNet.Diffusion;
using MLNet.Diffusion.ModelBuilder.Demo;

string repoRoot = FindRepoRoot();
string modelDir = args.Length > 0 ? args[0] : Path.Combine(repoRoot, ".demo-xl-model");
if (args.Length == 0 && DemoXlModelBuilder.EnsureBuilt(modelDir))
    Console.WriteLine($"Built the demo XL model in {modelDir}.");
string outDir = Path.Combine(repoRoot, "out", "sdxl-quickstart");
Directory.CreateDirectory(outDir);

using var pipeline = StableDiffusionPipeline.Load(modelDir);
Console.WriteLine($"Model: {modelDir}: {pipeline.Family} on {pipeline.Device}, {pipeline.DefaultSize}×{pipeline.DefaultSize}.");

// SDXL's micro-conditioning: the same prompt and seed told it comes from a full-size picture, then from a tiny one
// (OriginalWidth/OriginalHeight). The demo XL model loosens the prompt's hold for small original sizes, as SDXL gives
// blurrier, less faithful pictures.
string prompt = "a large red circle on a white background";
foreach (int original in new[] { pipeline.DefaultSize, pipeline.DefaultSize / 8 })
{
    var options = new GenerationOptions { Steps = 20, GuidanceScale = 7.5f, OriginalWidth = original, OriginalHeight = original };
    var clock = Stopwatch.StartNew();
    using var image = pipeline.Generate(prompt, seed: 7, options);
    var file = Path.Combine(outDir, $"original-{original}.png");
    image.Save(file);
    Console.WriteLine($"{clock.Elapsed.TotalSeconds,6:F2} s  {file}  (original size {original}×{original})");
}

// The base → refiner hand-off, when a refiner folder is given: the base runs the first 80 % of the schedule.
if (args.Length > 1)
{
    using var refiner = StableDiffusionPipeline.Load(args[1]);
    var refined = pipeline.Generate([new ImagePrompt(prompt, 7)], refiner, denoisingEnd: 0.8f, new GenerationOptions { Steps = 40 });
    var file = Path.Combine(outDir, "refined.png");
    refined[0].Save(file);
    refined[0].Dispose();
    Console.WriteLine($"refined with {args[1]}: {file}");
}

static string FindRepoRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "MLNet.Diffusion.sln"))) return dir.FullName;
    return Directory.GetCurrentDirectory();
}

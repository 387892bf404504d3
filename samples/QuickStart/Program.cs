// Quick start: generates a few images with the built-in demo model (built on first run into .demo-model/)
// or with a Stable Diffusion ONNX folder given as the first argument.
//
//   dotnet run --project samples/QuickStart                       # demo model, images in out/quickstart
//   dotnet run --project samples/QuickStart -- /models/sd15-onnx  # a real model folder
using System.Diagnostics;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion;

string repoRoot = FindRepoRoot();
string modelDir = args.Length > 0 ? args[0] : Path.Combine(repoRoot, ".demo-model");
if (args.Length == 0)
{
    var sw = Stopwatch.StartNew();
    if (DemoModelBuilder.EnsureBuilt(modelDir))
        Console.WriteLine($"Built the demo model in {modelDir} ({sw.Elapsed.TotalSeconds:F1} s).");
}
string outDir = Path.Combine(repoRoot, "out", "quickstart");
Directory.CreateDirectory(outDir);

string[] prompts = args.Length > 1 ? args[1..] :
[
    "a red circle on a white background",
    "a blue square in the top left corner",
    "a small yellow star on a black background",
    "a green triangle",
];

using var pipeline = StableDiffusionPipeline.Load(modelDir);
var options = new GenerationOptions { Steps = 25, GuidanceScale = 7.5f };
Console.WriteLine($"Model: {modelDir} on {pipeline.Device}; {pipeline.DefaultSize}×{pipeline.DefaultSize}, {options.Steps} steps, guidance {options.GuidanceScale}.");
pipeline.Generate("warm-up", seed: 0, new GenerationOptions { Steps = 1 }).Image.Dispose();
for (int i = 0; i < prompts.Length; i++)
{
    var sw = Stopwatch.StartNew();
    var image = pipeline.Generate(prompts[i], seed: 42 + i, options);
    sw.Stop();
    var file = Path.Combine(outDir, $"{i:D2}-{Slug(prompts[i])}.png");
    image.Save(file);
    image.Image.Dispose();
    Console.WriteLine($"{sw.Elapsed.TotalSeconds,6:F2} s  {file}");
}

static string Slug(string s) => new string(s.ToLowerInvariant().Select(c => char.IsLetterOrDigit(c) ? c : '-').ToArray()).Trim('-');

static string FindRepoRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "MLNet.Diffusion.sln"))) return dir.FullName;
    return Directory.GetCurrentDirectory();
}

#!/usr/bin/env -S dotnet run
// The file-based-app twin of GettingStarted.ipynb: the same steps, writing PNGs instead of showing them.
//
//   dotnet run notebooks/GettingStarted.cs                                   # images in out/notebook/
//   dotnet run notebooks/GettingStarted.cs -- docs/images/demo-grid.png      # also (re)writes the README's grid
#:property PublishAot=false
#:package Microsoft.ML.OnnxRuntime
#:project ../src/MLNet.Diffusion/MLNet.Diffusion.csproj
#:project ../src/MLNet.Diffusion.ModelBuilder/MLNet.Diffusion.ModelBuilder.csproj
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion;

// 1. The built-in demo model (built once into the repository's .demo-model/).
string repoRoot = Path.GetFullPath(Path.Combine(SourceDirectory(), ".."));
string modelDir = Path.Combine(repoRoot, ".demo-model");
var total = Stopwatch.StartNew();
DemoModelBuilder.EnsureBuilt(modelDir);
string outDir = Path.Combine(repoRoot, "out", "notebook");
Directory.CreateDirectory(outDir);

// 2. One image.
using var sd = StableDiffusionPipeline.Load(modelDir);
var options = new GenerationOptions { Steps = 25, GuidanceScale = 7.5f };
var one = sd.Generate("a large red circle on a white background", seed: 42, options);
one.Save(Path.Combine(outDir, "one.png"));
Console.WriteLine($"one.png: {one.Image.Width}×{one.Image.Height} on {sd.Device}");
one.Image.Dispose();

// 3. A seed grid: prompts × seeds, one UNet batch per prompt.
string[] prompts =
[
    "a red circle on a white background",
    "a large blue square in the center",
    "a small yellow star on a black background",
    "a green triangle on a gray background",
];
long[] seeds = [1, 2, 3, 4];
var rows = prompts.Select(p => sd.Generate(seeds.Select(s => new ImagePrompt(p, s)).ToArray(), options)
                                 .Select(g => g.Image).ToArray()).ToArray();
using var grid = Grid(rows);
grid.Save(Path.Combine(outDir, "demo-grid.png"));
if (args.Length > 0) { grid.Save(Path.GetFullPath(args[0])); Console.WriteLine($"Wrote {args[0]}"); }
foreach (var image in rows.SelectMany(r => r)) image.Dispose();
Console.WriteLine($"demo-grid.png: {prompts.Length} prompts × {seeds.Length} seeds");

// 4. The ML.NET pipeline on a small table: prompts and seeds in, images out, then resized and turned into pixels.
var ml = new MLContext(seed: 0);
var table = ml.Data.LoadFromEnumerable(new[]
{
    new PromptRow { Prompt = "a purple star", Seed = 7 },
    new PromptRow { Prompt = "a small green circle in the top left corner", Seed = 8 },
    new PromptRow { Prompt = "a large yellow square on a black background", Seed = 9 },
});
var pipeline = ml.Transforms.GenerateImages("Image", "Prompt", new DiffusionOptions { ModelPath = modelDir, Steps = 25, SeedColumnName = "Seed" })
    .Append(ml.Transforms.ResizeImages("Small", 32, 32, "Image"))
    .Append(ml.Transforms.ExtractPixels("Pixels", "Small"));
using var model = pipeline.Fit(table);
var result = model.Transform(table);
using (var cursor = result.GetRowCursor(result.Schema))
{
    var prompt = cursor.GetGetter<ReadOnlyMemory<char>>(result.Schema["Prompt"]);
    var seed = cursor.GetGetter<long>(result.Schema["Seed"]);
    var image = cursor.GetGetter<MLImage>(result.Schema["Image"]);
    var pixels = cursor.GetGetter<VBuffer<float>>(result.Schema["Pixels"]);
    ReadOnlyMemory<char> p = default; long s = 0; MLImage? img = null; VBuffer<float> px = default;
    while (cursor.MoveNext())
    {
        prompt(ref p); seed(ref s); image(ref img!); pixels(ref px);   // the image getter disposes the image passed back in
        string file = Path.Combine(outDir, $"table-seed{s}.png");
        img!.Save(file);
        Console.WriteLine($"{p} (seed {s}) → {Path.GetFileName(file)}, {px.Length} pixel values");
    }
    img?.Dispose();
}
Console.WriteLine($"Done in {total.Elapsed.TotalSeconds:F1} s; images in {outDir}");

// Tiles the images (rows × columns, all one size) on a light-gray canvas (so white backgrounds show) with 4-pixel gaps.
static MLImage Grid(MLImage[][] rows, int gap = 4)
{
    int w = rows[0][0].Width, h = rows[0][0].Height, cols = rows.Max(r => r.Length);
    int gw = cols * w + (cols + 1) * gap, gh = rows.Length * h + (rows.Length + 1) * gap;
    var canvas = new byte[gw * gh * 4];
    Array.Fill(canvas, (byte)200);
    for (int i = 3; i < canvas.Length; i += 4) canvas[i] = 255;   // opaque
    for (int r = 0; r < rows.Length; r++)
        for (int c = 0; c < rows[r].Length; c++)
        {
            var image = rows[r][c];
            if (image.PixelFormat != MLPixelFormat.Bgra32 && image.PixelFormat != MLPixelFormat.Rgba32)
                throw new NotSupportedException($"Pixel format {image.PixelFormat}");
            var src = image.Pixels;   // 4 bytes a pixel
            bool swap = image.PixelFormat == MLPixelFormat.Rgba32;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    int s = (y * w + x) * 4, d = ((gap + r * (h + gap) + y) * gw + gap + c * (w + gap) + x) * 4;
                    canvas[d] = src[swap ? s + 2 : s]; canvas[d + 1] = src[s + 1]; canvas[d + 2] = src[swap ? s : s + 2]; canvas[d + 3] = 255;
                }
        }
    return MLImage.CreateFromPixels(gw, gh, MLPixelFormat.Bgra32, canvas);
}

static string SourceDirectory([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

internal sealed class PromptRow
{
    public string Prompt { get; set; } = "";
    public long Seed { get; set; }
}

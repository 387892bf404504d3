// Inpainting: generates an image, masks a region of it and repaints that region with another prompt. Saves
// original.png, mask.png and inpainted.png. Uses the built-in demo model (built on first run into .demo-model/)
// or a Stable Diffusion ONNX folder (with vae_encoder/; an inpainting UNet works too) given as the first argument.
//
//   dotnet run --project samples/Inpainting                       # demo model, images in out/inpainting
//   dotnet run --project samples/Inpainting -- /models/sd15-onnx  # a real model folder
using MLNet.Diffusion;
using MLNet.Diffusion.Samples;

string modelDir = SampleSupport.ModelFolder(args);
string outDir = SampleSupport.OutputFolder("inpainting");

using var pipeline = StableDiffusionPipeline.Load(modelDir);
int size = pipeline.DefaultSize;
var options = new GenerationOptions { Steps = 25, GuidanceScale = 7.5f };

// 1. An image to edit: a shape in the top-left corner on a white background.
var original = pipeline.Generate("a large blue square in the top left corner on a white background", seed: 7, options);
original.Save(Path.Combine(outDir, "original.png"));

// 2. The mask: white = repaint. The top-left quadrant, where the square is.
using var mask = SampleSupport.RectangleMask(size, size, 0, 0, size / 2, size / 2);
mask.Save(Path.Combine(outDir, "mask.png"));

// 3. Repaint the masked region with another prompt; outside the mask the original is kept. (The demo model
//    knows one shape per picture, so the sample replaces the shape rather than adding a second one.)
var inpainted = pipeline.Generate(
    [new ImagePrompt("a large yellow circle in the top left corner on a white background", Seed: 8) { InitImage = original.Image, Mask = mask }],
    options)[0];
inpainted.Save(Path.Combine(outDir, "inpainted.png"));
original.Image.Dispose();
inpainted.Image.Dispose();
foreach (var file in new[] { "original.png", "mask.png", "inpainted.png" })
    Console.WriteLine(Path.Combine(outDir, file));

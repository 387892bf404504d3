// Outline to image with a ControlNet: draws a rough blue-ink star on a white canvas, lets Canny find its outline, and
// steers generation with that outline, so the prompt only says what the picture is about and the ControlNet says where
// its shape lies and which shape it is. Uses the built-in demo model and its outline ControlNet (built on first run into
// .demo-model/), or a Stable Diffusion ONNX folder and a Canny ControlNet folder given as the first two arguments.
//
//   dotnet run --project samples/OutlineControl                                         # demo model, out/outline-control
//   dotnet run --project samples/OutlineControl -- /models/sd15-onnx /models/canny-onnx "a starfish on the beach"
using Microsoft.ML.Data;
using MLNet.Diffusion;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Samples;

string modelDir = SampleSupport.ModelFolder(args);
string controlNetDir = args.Length > 1 ? args[1] : Path.Combine(modelDir, DemoModelBuilder.OutlineControlNetFolder);
string prompt = args.Length > 2 ? args[2] : "a purple shape on a black background";
string outDir = SampleSupport.OutputFolder("outline-control");

using var pipeline = StableDiffusionPipeline.Load(modelDir);
int size = pipeline.DefaultSize;
using var sketch = SampleSupport.WobblyStar(size, 0.5f * size, 0.52f * size, 0.225f * size, (30, 50, 150)); // blue ink on white
sketch.Save(Path.Combine(outDir, "sketch.png"));

// Without the ControlNet the prompt leaves the shape open; with it, the sketch's outline decides it.
var options = new GenerationOptions { Steps = 20, GuidanceScale = 7.5f };
using var free = pipeline.Generate(prompt, seed: 3, options);
free.Save(Path.Combine(outDir, "without-controlnet.png"));

options.ControlNets.Add(new ControlNetInput(controlNetDir, sketch) { CannyThresholds = (100, 200) });
using var steered = pipeline.Generate(prompt, seed: 3, options);
steered.Save(Path.Combine(outDir, "with-controlnet.png"));

using var strip = SampleSupport.SideBySide(sketch, free.Image, steered.Image);
strip.Save(Path.Combine(outDir, "strip.png"));
Console.WriteLine($"'{prompt}': sketch, without and with the outline ControlNet side by side in {Path.Combine(outDir, "strip.png")}");

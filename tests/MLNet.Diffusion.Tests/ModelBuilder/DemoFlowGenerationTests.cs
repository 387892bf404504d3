using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Tests.Demo;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.ModelBuilder;

/// <summary>
/// Text to image with the demo flow model through the library (StableDiffusion3 conditioning, FlowMatchEulerDiscreteScheduler
/// with shift 3, 20 steps, CFG): it draws what the demo model draws for the same prompt.
/// </summary>
[Collection(DemoFlowCollection.Name)]
public class DemoFlowGenerationTests(DemoFlowModelFixture model, ITestOutputHelper output)
{
    private const int Steps = 20;
    private static readonly DemoImageClassifier Classifier = new();

    private (DemoAttributes Attributes, float[] Pixels, DemoItem Nearest, double Distance) Generate(StableDiffusionPipeline pipeline, string prompt, long seed)
    {
        using var result = pipeline.Generate(prompt, seed, new GenerationOptions { Steps = Steps, GuidanceScale = 4.5f });
        var attributes = Classifier.Classify(result.Image);
        var pixels = result.Image.Pixels.ToArray().Select(b => b / 255f).ToArray();   // both models' pictures have the same pixel format
        var latents = result.Latents;
        (DemoItem, double) nearest = latents is null ? (DemoDataset.Items[0], double.NaN)
            : latents.Length == DemoFlowTransformer.LatentLength
                ? DemoImages.Nearest(DemoFlowVae.Narrow(latents, DemoUnet.LatentSize * DemoUnet.LatentSize), model.DatasetLatents)
                : DemoImages.Nearest(latents, model.DatasetLatents);
        return (attributes, pixels, nearest.Item1, nearest.Item2);
    }

    [Theory]
    [InlineData("a red circle", 1)]
    [InlineData("a green square on a black background", 2)]
    [InlineData("a large blue star in the top left corner", 3)]
    public void DrawsWhatThePromptAsks(string prompt, long seed)
    {
        var (attributes, _, nearest, distance) = Generate(model.Pipeline, prompt, seed);
        output.WriteLine($"\"{prompt}\", seed {seed}: nearest dataset image \"{nearest.Caption}\" (relative latent distance {distance:F4}); classified {attributes}");
        Assert.True(attributes.HasEveryAttributeOf(prompt), $"wrong: {string.Join(", ", attributes.WrongAttributes(prompt))}");
        Assert.True(distance < 0.02, $"relative distance {distance}");
    }

    [Fact]
    public void AFullCaptionGivesTheDemoModelsPicture()
    {
        const string prompt = "a small yellow triangle in the bottom right corner on a gray background";
        var demoFolder = model.Scratch("demo");
        DemoModelBuilder.EnsureBuilt(demoFolder);
        using var demo = StableDiffusionPipeline.Load(demoFolder);
        var (flowAttributes, flowPixels, flowNearest, _) = Generate(model.Pipeline, prompt, 5);
        var (demoAttributes, demoPixels, _, _) = Generate(demo, prompt, 5);
        double meanDifference = flowPixels.Zip(demoPixels, (a, b) => (double)Math.Abs(a - b)).Average();
        output.WriteLine($"flow: {flowAttributes}; demo: {demoAttributes}; mean |pixel difference| {meanDifference:F4}");
        Assert.Equal(prompt, flowNearest.Caption);
        Assert.Equal(demoAttributes.Item, flowAttributes.Item);
        Assert.True(meanDifference < 0.01, $"mean pixel difference {meanDifference}");
    }

    [Fact]
    public void WithoutT5ThePlaceIsLeftToChance()
    {
        const string prompt = "a small yellow triangle in the bottom right corner on a gray background";
        using var pipeline = StableDiffusionPipeline.Load(model.Folder, new DiffusionRuntimeOptions { WithoutT5 = true });
        var places = new HashSet<DemoPosition>();
        for (long seed = 1; seed <= 4; seed++)
        {
            var (attributes, _, _, _) = Generate(pipeline, prompt, seed);
            output.WriteLine($"seed {seed} without T5: {attributes}");
            var wrong = attributes.WrongAttributes(prompt);
            Assert.DoesNotContain(wrong, a => a is not ("vertical" or "horizontal"));
            places.Add(attributes.Position);
        }
        Assert.True(places.Count > 1, "every seed drew the same place without T5");
    }
}

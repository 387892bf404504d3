#pragma warning disable MEAI001 // IImageGenerator is experimental in Microsoft.Extensions.AI; these tests call it.
using Microsoft.Extensions.AI;
using Microsoft.ML.Data;
using MLNet.Diffusion.Hosting;
using MLNet.Diffusion.Tests.Hosting;

namespace MLNet.Diffusion.Tests.Control;

/// <summary>IImageGenerator: the request's original images are the control images of the generator's ControlNets.</summary>
public sealed class ControlNetImageGeneratorTests : IDisposable
{
    private readonly ControlNetTestKit _kit = new();
    private readonly StableDiffusionPipeline _pipeline;
    private readonly string _controlNet;

    public ControlNetImageGeneratorTests()
    {
        _pipeline = StableDiffusionPipeline.Load(_kit.ModelPath);
        _controlNet = _kit.ControlNet();
    }

    public void Dispose()
    {
        _pipeline.Dispose();
        _kit.Dispose();
    }

    private GenerationOptions Defaults(MLImage? fixedImage = null)
    {
        var options = new GenerationOptions { Steps = 3, Scheduler = "euler", GuidanceScale = 2 };
        options.ControlNets.Add(new ControlNetInput(_controlNet, fixedImage));
        return options;
    }

    private static byte[] Rgba(AIContent content)
    {
        var data = Assert.IsType<DataContent>(content);
        using var image = MLImage.CreateFromStream(new MemoryStream(data.Data.ToArray()));
        return PngEncoderTests.ToRgba(image);
    }

    [Fact]
    public async Task TheOriginalImageIsTheControlImageAndControlScaleIsRead()
    {
        using var control = ControlNetTestKit.Solid(64, 30, 160, 220);
        var png = PngEncoder.Encode(control);
        var generator = new StableDiffusionImageGenerator(_pipeline, Defaults());
        var options = new ImageGenerationOptions { AdditionalProperties = new() { [StableDiffusionImageGenerator.SeedProperty] = 9L, [StableDiffusionImageGenerator.ControlScaleProperty] = 0.7 } };
        var response = await generator.GenerateAsync(new ImageGenerationRequest("a red cat", [new DataContent(png, "image/png")]), options);

        var expectedOptions = Defaults();
        using var decoded = MLImage.CreateFromStream(new MemoryStream(png));
        var expected = _pipeline.Generate([new ImagePrompt("a red cat", 9) { ControlImages = [decoded], ControlScale = 0.7f }], expectedOptions)[0];
        using (expected.Image) Assert.Equal(PngEncoderTests.ToRgba(expected.Image), Rgba(Assert.Single(response.Contents)));

        // Another control image gives another image.
        using var other = ControlNetTestKit.Solid(64, 250, 0, 0);
        var second = await generator.GenerateAsync(new ImageGenerationRequest("a red cat", [new DataContent(PngEncoder.Encode(other), "image/png")]), options);
        Assert.NotEqual(Rgba(response.Contents[0]), Rgba(second.Contents[0]));
    }

    [Fact]
    public async Task WithoutAnOriginalImageTheControlNetsOwnImageIsUsed()
    {
        using var control = ControlNetTestKit.Solid(64, 100, 100, 100);
        var generator = new StableDiffusionImageGenerator(_pipeline, Defaults(control));
        var response = await generator.GenerateAsync(new ImageGenerationRequest("a red cat"), new ImageGenerationOptions { AdditionalProperties = new() { ["seed"] = 4L } });
        var expected = _pipeline.Generate([new ImagePrompt("a red cat", 4)], Defaults(control))[0];
        using (expected.Image) Assert.Equal(PngEncoderTests.ToRgba(expected.Image), Rgba(Assert.Single(response.Contents)));
    }

    [Fact]
    public async Task MoreOriginalImagesThanControlNetsOrNonImagesAreRefused()
    {
        using var control = ControlNetTestKit.Solid(8, 1, 1, 1);
        var png = new DataContent(PngEncoder.Encode(control), "image/png");
        var generator = new StableDiffusionImageGenerator(_pipeline, Defaults());
        var tooMany = await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync(new ImageGenerationRequest("a cat", [png, png])));
        Assert.Contains("2 images for the generator's 1 ControlNets", tooMany.Message);
        var text = await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync(new ImageGenerationRequest("a cat", [new DataContent(new byte[] { 1 }, "text/plain")])));
        Assert.Contains("OriginalImages[0] must be a DataContent holding an image", text.Message);
        var plain = new StableDiffusionImageGenerator(_pipeline, new GenerationOptions { Steps = 1 });
        var scale = await Assert.ThrowsAsync<ArgumentException>(() => plain.GenerateAsync(new ImageGenerationRequest("a cat"),
            new ImageGenerationOptions { AdditionalProperties = new() { ["control_scale"] = 1.0 } }));
        Assert.Contains("has no ControlNets", scale.Message);
    }
}

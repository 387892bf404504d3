using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Tests.ModelBuilder;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Demo;

/// <summary>
/// The demo XL model through the library: <see cref="StableDiffusionPipeline"/> with the folder's SDXL contract gives the
/// latents of the DDIM loop written out over the graphs (<see cref="DemoXlGenerationTests.ReferenceLoop"/>), so the two
/// encoders' penultimate states, the pooled embedding, the default time ids and the zero negative reach the UNet as SDXL
/// has them.
/// </summary>
[Collection(DemoXlCollection.Name)]
public class DemoXlPipelineTests(DemoXlModelFixture model)
{
    [Fact]
    public void TheEngineGivesTheReferenceLoopsLatents()
    {
        using var pipeline = StableDiffusionPipeline.Load(model.Folder);
        Assert.Equal(ModelFamily.StableDiffusionXL, pipeline.Family);
        Assert.Equal(DemoDataset.ImageSize, pipeline.DefaultSize);
        var result = pipeline.Generate("a red circle", 1, new GenerationOptions { Steps = 12, GuidanceScale = 7.5f, Scheduler = "ddim" });
        var expected = DemoXlGenerationTests.ReferenceLoop(model, "a red circle", 1, [256, 256, 0, 0, 256, 256], 12, 7.5f);
        Assert.True(MaxAbsDiff(result.Latents, expected) < 1e-3, $"max error {MaxAbsDiff(result.Latents, expected)}");
        result.Image.Dispose();
    }

    [Fact]
    public void DemoModelBuildsTheXlSiblingIntoItsOwnFolder()
    {
        Assert.EndsWith("demo-xl-model", DemoModel.XlDirectory);
        Assert.NotEqual(DemoModel.Directory, DemoModel.XlDirectory);
    }
}

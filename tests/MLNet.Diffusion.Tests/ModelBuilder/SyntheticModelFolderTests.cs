using MLNet.Diffusion.ModelBuilder.Synthetic;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Tests.ModelBuilder;

public class SyntheticModelFolderTests
{
    [Fact]
    public void WritesALoadableSd15ContractFolderThatGenerates()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-synthetic-");
        try
        {
            var options = new SyntheticModelOptions { Channels = 8, ResidualBlocks = 2, AttentionWidth = 4, SampleSize = 8 };
            string root = SyntheticModelFolder.Write(dir.FullName, options);
            Assert.True(SyntheticModelFolder.ModelBytes(root) > 0);
            using var pipeline = StableDiffusionPipeline.Load(root);
            Assert.Equal(768, pipeline.UNet.EmbeddingWidth);
            Assert.Equal(64, pipeline.DefaultSize);
            var result = pipeline.Generate([new ImagePrompt("a photo of an astronaut", 1), new ImagePrompt("a red circle", 2)],
                new GenerationOptions { Steps = 2, Scheduler = "euler" });
            Assert.All(result, r => Assert.Equal(64, r.Image.Width));
            Assert.All(result, r => Assert.All(r.Latents, v => Assert.True(float.IsFinite(v))));
            Assert.NotEqual(result[0].Latents, result[1].Latents);
            foreach (var r in result) r.Image.Dispose();
            Assert.True(options.Flops(2, 8, 8) > 0);
        }
        finally
        {
            dir.Delete(true);
        }
    }
}

using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.ModelBuilder.Synthetic;

namespace MLNet.Diffusion.Tests.ModelBuilder;

public class SyntheticFlowModelFolderTests
{
    /// <summary>Tiny widths, the real names, shapes and element types (T5 wider than both CLIP encoders together, as SD3 needs).</summary>
    private static readonly SyntheticFlowModelOptions Tiny = new()
    {
        Width = 16, Blocks = 1, TextEncoderWidth = 8, TextEncoder2Width = 12, T5Width = 24, SampleSize = 8,
    };

    [Fact]
    public void WritesALoadableSd3ContractFolderThatGenerates()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-synthetic-sd3-");
        try
        {
            string root = SyntheticFlowModelFolder.WriteSd3(dir.FullName, Tiny);
            using var pipeline = StableDiffusionPipeline.Load(root, new DiffusionRuntimeOptions { MaxSequenceLength = 32 });
            Assert.Equal(ModelFamily.StableDiffusion3, pipeline.Family);
            Assert.True(pipeline.UNet.IsTransformer);
            Assert.False(pipeline.UNet.IsPacked);
            Assert.Equal(16, pipeline.UNet.LatentChannels);
            Assert.Equal(24, pipeline.UNet.EmbeddingWidth);
            Assert.Equal(0.0609f, pipeline.Folder.VaeShiftFactor);
            Assert.Equal(1.5305f, pipeline.Folder.VaeScalingFactor);
            Assert.NotNull(pipeline.PromptEncoder.T5);
            Assert.Equal(20, pipeline.PromptEncoder.PooledWidth);
            Assert.Equal(77 + 32, pipeline.ConditioningLength);
            Assert.Equal(64, pipeline.DefaultSize);
            var result = pipeline.Generate([new ImagePrompt("a photo of an astronaut", 1), new ImagePrompt("a red circle", 2)],
                new GenerationOptions { Steps = 2, Width = 64, Height = 48, GuidanceScale = 5f });
            Assert.All(result, r => Assert.Equal(64, r.Image.Width));
            Assert.All(result, r => Assert.All(r.Latents, v => Assert.True(float.IsFinite(v))));
            Assert.Equal(16 * 8 * 6, result[0].Latents.Length);
            Assert.NotEqual(result[0].Latents, result[1].Latents);
            foreach (var r in result) r.Image.Dispose();
            Assert.True(Tiny.Flops(2, 16, 16, 109) > Tiny.Flops(2, 8, 8, 109));
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WritesALoadableFluxContractFolderThatGenerates(bool dev)
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-synthetic-flux-");
        try
        {
            string root = SyntheticFlowModelFolder.WriteFlux(dir.FullName, Tiny, dev);
            using var pipeline = StableDiffusionPipeline.Load(root);
            Assert.Equal(ModelFamily.Flux, pipeline.Family);
            Assert.True(pipeline.UNet.IsPacked);
            Assert.Equal(dev, pipeline.UNet.Guidance is not null);
            Assert.Equal(1f / 1000, pipeline.UNet.TimestepScale);
            Assert.Equal(dev ? 512 : 256, pipeline.ConditioningLength); // diffusers' max_sequence_length defaults
            Assert.Equal(0.1159f, pipeline.Folder.VaeShiftFactor);
            var result = pipeline.Generate([new ImagePrompt("a photo of an astronaut", 1)], new GenerationOptions { Steps = 2, Width = 64, Height = 64, GuidanceScale = 3.5f });
            Assert.Equal(64, result[0].Image.Height);
            Assert.All(result[0].Latents, v => Assert.True(float.IsFinite(v)));
            Assert.Contains(result[0].Latents, v => v != 0);
            result[0].Image.Dispose();
            Assert.Equal(2, pipeline.UNet.RowCount); // no classifier-free guidance: one row per call
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void RefusesAT5NarrowerThanSd3sPaddedClipStates()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-synthetic-sd3-");
        try
        {
            var e = Assert.Throws<ArgumentException>(() => SyntheticFlowModelFolder.WriteSd3(dir.FullName, Tiny with { T5Width = 16 }));
            Assert.Contains("T5Width must be at least 20", e.Message);
        }
        finally
        {
            dir.Delete(true);
        }
    }
}

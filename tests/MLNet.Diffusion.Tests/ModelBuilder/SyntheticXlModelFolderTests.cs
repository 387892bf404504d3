using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.ModelBuilder.Synthetic;

namespace MLNet.Diffusion.Tests.ModelBuilder;

public class SyntheticXlModelFolderTests
{
    [Fact]
    public void WritesALoadableSdxlContractFolderThatGenerates()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-synthetic-xl-");
        try
        {
            var options = new SyntheticXlModelOptions { Channels = 8, ResidualBlocks = 2, AttentionWidth = 4, TextEncoderWidth = 8, TextEncoder2Width = 12, SampleSize = 8 };
            string root = SyntheticXlModelFolder.Write(dir.FullName, options);
            using var pipeline = StableDiffusionPipeline.Load(root);
            Assert.Equal(ModelFamily.StableDiffusionXL, pipeline.Family);
            Assert.Equal(20, pipeline.UNet.EmbeddingWidth);
            Assert.Equal(64, pipeline.DefaultSize);
            Assert.Equal(0.13025f, pipeline.Folder.VaeScalingFactor);
            Assert.True(pipeline.Folder.ForceZerosForEmptyPrompt);
            Assert.Equal([UNetExtraKind.TextEmbeds, UNetExtraKind.TimeIds], pipeline.UNet.Extras.Select(e => e.Kind));
            Assert.Equal(["hidden_states.1", "hidden_states.1"], pipeline.PromptEncoder.Encoders.Select(e => e.HiddenStateName));
            Assert.Equal(["pooler_output", "text_embeds"], pipeline.PromptEncoder.Encoders.Select(e => e.PooledName));
            Assert.Equal(0, pipeline.PromptEncoder.Encoders[1].Tokenizer.PadId); // "!" as SDXL's tokenizer_2
            Assert.NotEqual(0, pipeline.PromptEncoder.Encoders[0].Tokenizer.PadId);
            var result = pipeline.Generate([new ImagePrompt("a photo of an astronaut", 1), new ImagePrompt("a red circle", 2)],
                new GenerationOptions { Steps = 2, Width = 72, Height = 56 }); // odd latent sizes (9×7): attention pools with ceil
            Assert.All(result, r => Assert.Equal(72, r.Image.Width));
            Assert.All(result, r => Assert.All(r.Latents, v => Assert.True(float.IsFinite(v))));
            Assert.NotEqual(result[0].Latents, result[1].Latents);
            foreach (var r in result) r.Image.Dispose();
            Assert.True(options.Flops(2, 16, 16) > options.Flops(2, 8, 8));
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void TheUNetAnswerDependsOnThePooledEmbeddingAndTheTimeIds()
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-synthetic-xl-");
        try
        {
            string root = SyntheticXlModelFolder.Write(dir.FullName, new SyntheticXlModelOptions { Channels = 8, ResidualBlocks = 2, AttentionWidth = 4, TextEncoderWidth = 8, TextEncoder2Width = 12, SampleSize = 8 });
            using var unet = new UNet(Path.Combine(root, "unet", "model.onnx"), new Runtime.OnnxSessionFactory(new DiffusionRuntimeOptions { IntraOpThreads = 1 }));
            using var binding = unet.Bind(1, 8, 8, 77, 20, [12, 6]);
            var hidden = new float[77 * 20];
            new Noise.GaussianNoise(1).Fill(hidden);
            binding.SetHiddenStates(hidden);
            var sample = new float[binding.SampleLength];
            new Noise.GaussianNoise(2).Fill(sample);
            binding.WriteSample(sample, 0);
            using var runOptions = new Microsoft.ML.OnnxRuntime.RunOptions();
            float[] Run(float pooled, float[] timeIds)
            {
                binding.SetExtra(0, Enumerable.Repeat(pooled, 12).ToArray());
                binding.SetExtra(1, timeIds);
                var output = new float[binding.OutputLength];
                binding.Run(500, output, runOptions);
                return output;
            }
            var reference = Run(0.5f, [1024, 1024, 0, 0, 1024, 1024]);
            Assert.Equal(reference, Run(0.5f, [1024, 1024, 0, 0, 1024, 1024]));
            Assert.NotEqual(reference, Run(-0.5f, [1024, 1024, 0, 0, 1024, 1024]));
            Assert.NotEqual(reference, Run(0.5f, [1024, 1024, 16, 0, 1024, 1024]));
        }
        finally
        {
            dir.Delete(true);
        }
    }
}

using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.ModelBuilder.Synthetic;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Tests.Performance;

/// <summary>
/// The denoising loop of an SDXL-contract UNet (pooled text embedding and time ids beside the per-token context) allocates
/// nothing per step after warm-up: the extra inputs are written once per batch, not per step.
/// </summary>
[Collection(AllocationCollection.Name)]
public class SdxlAllocationTests
{
    [Theory]
    [InlineData(nameof(UNetRunPath.IoBinding))]
    [InlineData(nameof(UNetRunPath.FixedBuffers))]
    public void SdxlDenoisingLoopAllocatesNothingPerStepAfterWarmUp(string pathName)
    {
        var path = Enum.Parse<UNetRunPath>(pathName);
        var dir = Directory.CreateTempSubdirectory("mlnd-sdxl-alloc-");
        try
        {
            // SDXL's contract at tiny widths: context 8 + 12, pooled 12, 6 time ids.
            string root = SyntheticXlModelFolder.Write(dir.FullName,
                new SyntheticXlModelOptions { Channels = 8, ResidualBlocks = 2, AttentionWidth = 4, TextEncoderWidth = 8, TextEncoder2Width = 12, SampleSize = 8 });
            using var pipeline = StableDiffusionPipeline.Load(root, new DiffusionRuntimeOptions
            {
                UseIoBinding = true, ForceFixedBuffers = path == UNetRunPath.FixedBuffers, IntraOpThreads = 1,
            });
            Assert.Equal(path, pipeline.UNet.RunPath);
            Assert.Equal([UNetExtraKind.TextEmbeds, UNetExtraKind.TimeIds], pipeline.UNet.Extras.Select(e => e.Kind));
            var texts = pipeline.EncodeTexts(["a photo of a cat", "a dog"], null, CancellationToken.None);
            var negative = pipeline.UnconditionalEmbedding;
            var embeddings = texts.Select(t => new PromptEmbedding(t.Hidden, negative.Hidden) { ConditionalPooled = t.Pooled, UnconditionalPooled = negative.Pooled }).ToArray();
            ImagePrompt[] requests = [new("", 1) { GuidanceScale = 7.5f }, new("", 2) { GuidanceScale = 5f }];
            foreach (var scheduler in new[] { "euler", "euler_a", "dpm++2m" })
            {
                var options = new GenerationOptions { Width = 64, Height = 64, Steps = 10, Scheduler = scheduler };
                pipeline.Denoise(requests, embeddings, options, new StepAllocations(), CancellationToken.None); // warm-up
                var runs = new List<IReadOnlyList<(long, bool)>>();
                for (int run = 0; run < 3; run++)
                {
                    var probe = new StepAllocations();
                    pipeline.Denoise(requests, embeddings, options, probe, CancellationToken.None);
                    runs.Add(probe.Deltas);
                }
                AllocationProbe.AssertZeroPerStep(runs, $"{pathName}, {scheduler}");
            }
        }
        finally
        {
            dir.Delete(true);
        }
    }
}

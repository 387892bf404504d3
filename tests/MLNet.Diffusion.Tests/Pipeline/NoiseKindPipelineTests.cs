using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Pipeline;

/// <summary>
/// <see cref="GenerationOptions.Noise"/> through the pipeline with the oracle test model: the initial latents are the
/// chosen generator's values for each image's seed, a batch equals its images generated one by one, and the default
/// keeps the library's own generator.
/// </summary>
public class NoiseKindPipelineTests
{
    private const string Prompt = "a photo of a red cat";

    /// <summary>
    /// DDIM (η = 0) driven by the exact oracle keeps its noise estimate ε̂ = (ε − √ᾱ_T·z)/√(1 − ᾱ_T) from the first call
    /// on, so latents stopped part-way (DenoisingEnd) are a·z + b·ε with ε the initial noise and a, b fixed by the
    /// schedule. Two seeds with the same prompt then differ by exactly b·(ε₁ − ε₂): this holds for torch's values only if
    /// the pipeline drew its initial latents from them.
    /// </summary>
    [Theory]
    [InlineData(NoiseKind.Torch)]
    [InlineData(NoiseKind.Numpy)]
    [InlineData(NoiseKind.TorchCuda)]
    [InlineData(NoiseKind.Default)]
    public void InitialLatentsAreTheGeneratorsValuesForEachSeed(NoiseKind kind)
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var options = new GenerationOptions { Steps = 10, GuidanceScale = 1, Scheduler = "ddim", DenoisingEnd = 0.5f, Noise = kind };
        long[] seeds = [42, 4294967301];
        var results = pipeline.Generate(seeds.Select(s => new ImagePrompt(Prompt, s)).ToArray(), options);
        foreach (var r in results) r.Image.Dispose();
        var noise = seeds.Select(s => Draw(kind, s, results[0].Latents.Length)).ToArray();

        var dx = results[0].Latents.Zip(results[1].Latents, (a, b) => (double)a - b).ToArray();
        var de = noise[0].Zip(noise[1], (a, b) => (double)a - b).ToArray();
        double slope = dx.Zip(de, (x, e) => x * e).Sum() / de.Sum(e => e * e);
        double residual = dx.Zip(de, (x, e) => Math.Abs(x - slope * e)).Max();
        Assert.InRange(slope, 0.05, 1.5);
        Assert.True(residual < 1e-4, $"{kind}: latents − b·noise varies by {residual} (b = {slope}); the initial latents are not this generator's values.");
    }

    [Theory]
    [InlineData(NoiseKind.Torch, "euler-a")]
    [InlineData(NoiseKind.Torch, "ddim")]
    [InlineData(NoiseKind.Numpy, "euler-a")]
    [InlineData(NoiseKind.TorchCuda, "euler-a")]
    public void BatchEqualsImagesGeneratedOneByOne(NoiseKind kind, string scheduler)
    {
        // 72×72 pixels: 4×9×9 = 324 latent values, not a multiple of 16, so torch's recomputed last block is used too.
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var options = new GenerationOptions { Steps = 4, GuidanceScale = 2, Scheduler = scheduler, Width = 72, Height = 72, Noise = kind };
        long[] seeds = [0, 42, -1];
        var batch = pipeline.Generate(seeds.Select(s => new ImagePrompt(Prompt, s)).ToArray(), options);
        for (int i = 0; i < seeds.Length; i++)
        {
            var alone = pipeline.Generate([new ImagePrompt(Prompt, seeds[i])], options)[0];
            Assert.Equal(alone.Latents, batch[i].Latents);
            alone.Image.Dispose();
            batch[i].Image.Dispose();
        }
    }

    [Fact]
    public void DefaultKeepsTheLibrarysGenerator()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var options = new GenerationOptions { Steps = 3, GuidanceScale = 2, Scheduler = "euler-a" };
        var unset = pipeline.Generate([new ImagePrompt(Prompt, 5)], options)[0];
        var explicitDefault = pipeline.Generate([new ImagePrompt(Prompt, 5)], options.With(o => o.Noise = NoiseKind.Default))[0];
        var torch = pipeline.Generate([new ImagePrompt(Prompt, 5)], options.With(o => o.Noise = NoiseKind.Torch))[0];
        Assert.Equal(NoiseKind.Default, new GenerationOptions().Noise);
        Assert.Equal(unset.Latents, explicitDefault.Latents);
        Assert.NotEqual(unset.Latents, torch.Latents);
        foreach (var r in new[] { unset, explicitDefault, torch }) r.Image.Dispose();
    }

    [Fact]
    public void UndefinedNoiseKindIsRefusedWithTheChoices()
    {
        var problems = SettingLimits.Problems(new GenerationOptions { Noise = (NoiseKind)7 }, "options").ToArray();
        var problem = Assert.Single(problems);
        Assert.Contains("options.Noise", problem);
        Assert.Contains("Default, Torch, Numpy, TorchCuda", problem);
        Assert.Contains("7", problem);
    }

    private static float[] Draw(NoiseKind kind, long seed, int count)
    {
        var values = new float[count];
        NoiseFactory.Create(kind, seed).Fill(values);
        return values;
    }
}

internal static class GenerationOptionsTestExtensions
{
    public static GenerationOptions With(this GenerationOptions options, Action<GenerationOptions> change)
    {
        var copy = options.Clone();
        change(copy);
        return copy;
    }
}

using MLNet.Diffusion.ModelBuilder.Demo;
using BenchmarkDotNet.Attributes;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>Text → image on the built-in demo model (DemoDataset.ImageSize square, one latent per 8×8 pixels): the library against the naive baseline.</summary>
[ModelJob(iterations: 5)]
[MemoryDiagnoser]
public class DemoEndToEndBenchmarks
{
    private StableDiffusionPipeline _pipeline = null!;
    private NaiveStableDiffusion _naive = null!;
    private readonly GenerationOptions _options = new() { Steps = 25, Scheduler = "euler", GuidanceScale = 7.5f };

    /// <summary>Loads both.</summary>
    [GlobalSetup]
    public void Setup()
    {
        string folder = ModelFolders.Demo;
        _pipeline = StableDiffusionPipeline.Load(folder);
        _naive = new NaiveStableDiffusion(folder);
    }

    /// <summary>Releases both.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _pipeline.Dispose();
        _naive.Dispose();
    }

    /// <summary>The naive baseline, 25 Euler steps with CFG.</summary>
    [Benchmark(Baseline = true)]
    public byte[] Naive() => _naive.Generate("a red circle on a black background", 3, 25, 7.5f, DemoDataset.ImageSize, DemoDataset.ImageSize);

    /// <summary>MLNet.Diffusion, the same work.</summary>
    [Benchmark]
    public int Library()
    {
        using var image = _pipeline.Generate("a red circle on a black background", 3, _options).Image;
        return image.Width;
    }
}

/// <summary>Images per second on the demo model by batch size (one UNet batch of 2 × Batch with CFG): images/s = Batch ÷ Mean.</summary>
[ModelJob(iterations: 3)]
[MemoryDiagnoser]
public class DemoThroughputBenchmarks
{
    private StableDiffusionPipeline _pipeline = null!;
    private ImagePrompt[] _prompts = [];
    private readonly GenerationOptions _options = new() { Steps = 25, Scheduler = "euler", GuidanceScale = 7.5f };

    /// <summary>Images per call.</summary>
    [Params(1, 2, 4, 8)]
    public int Batch { get; set; }

    /// <summary>Loads the pipeline.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _pipeline = StableDiffusionPipeline.Load(ModelFolders.Demo);
        string[] words = ["red", "yellow", "green", "blue", "purple"];
        _prompts = Enumerable.Range(0, Batch).Select(i => new ImagePrompt($"a {words[i % words.Length]} star", i)).ToArray();
    }

    /// <summary>Releases it.</summary>
    [GlobalCleanup]
    public void Cleanup() => _pipeline.Dispose();

    /// <summary>One batch of <see cref="Batch"/> images.</summary>
    [Benchmark]
    public int Generate()
    {
        var images = _pipeline.Generate(_prompts, _options);
        foreach (var image in images) image.Image.Dispose();
        return images.Count;
    }
}

/// <summary>
/// The denoising loop alone on the compute-realistic synthetic UNet (SD 1.5's shape: 4×64×64, CFG batch 2,
/// [2, 77, 768] embeddings): 3 Euler steps, library against naive (whole text → 512×512 image for the naive path
/// is in <c>report</c>).
/// </summary>
[ModelJob(iterations: 3)]
[MemoryDiagnoser]
public class SyntheticSd15Benchmarks
{
    private StableDiffusionPipeline _pipeline = null!;
    private NaiveStableDiffusion _naive = null!;
    private float[] _cond = [], _uncond = [];
    private readonly GenerationOptions _options = new() { Steps = 3, Scheduler = "euler", GuidanceScale = 7.5f, Width = 512, Height = 512 };

    /// <summary>Loads both.</summary>
    [GlobalSetup]
    public void Setup()
    {
        string folder = ModelFolders.SyntheticSd15;
        _pipeline = StableDiffusionPipeline.Load(folder);
        _naive = new NaiveStableDiffusion(folder);
        _cond = _pipeline.EncodeText(["a photo of an astronaut riding a horse"]);
        _uncond = _pipeline.EncodeText([""]);
    }

    /// <summary>Releases both.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _pipeline.Dispose();
        _naive.Dispose();
    }

    /// <summary>The library's denoising loop: 3 UNet calls.</summary>
    [Benchmark]
    public int LibraryDenoise() => _pipeline.Denoise(_cond, _uncond, [1], [7.5f], _options).Length;

    /// <summary>Text → 512×512 image, library, 3 steps.</summary>
    [Benchmark]
    public int LibraryTextToImage()
    {
        using var image = _pipeline.Generate("a photo of an astronaut riding a horse", 1, _options).Image;
        return image.Width;
    }

    /// <summary>Text → 512×512 image, naive, 3 steps.</summary>
    [Benchmark(Baseline = true)]
    public byte[] NaiveTextToImage() => _naive.Generate("a photo of an astronaut riding a horse", 1, 3, 7.5f, 512, 512);
}

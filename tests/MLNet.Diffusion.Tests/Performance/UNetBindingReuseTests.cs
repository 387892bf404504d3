using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Performance;

/// <summary>
/// The UNet's bindings are kept for the next generation of their shape: a generation takes one exclusively (a concurrent
/// one gets its own), disposing the UNet releases the kept ones, and the images are the same with and without reuse.
/// </summary>
public class UNetBindingReuseTests
{
    private static DiffusionRuntimeOptions Options(UNetRunPath path) => new()
    {
        UseIoBinding = path != UNetRunPath.SessionRun,
        ForceFixedBuffers = path == UNetRunPath.FixedBuffers,
        IntraOpThreads = 1,
    };

    private static UNet LoadUNet(string folder, UNetRunPath path) =>
        new(Path.Combine(folder, "unet", "model.onnx"), new OnnxSessionFactory(Options(path)));

    [Theory]
    [InlineData(nameof(UNetRunPath.SessionRun))]
    [InlineData(nameof(UNetRunPath.IoBinding))]
    [InlineData(nameof(UNetRunPath.FixedBuffers))]
    public void ADisposedBindingIsHandedToTheNextBindOfItsShape(string pathName)
    {
        using var folder = TestModelFactory.CreateTemp();
        using var unet = LoadUNet(folder.Path, Enum.Parse<UNetRunPath>(pathName));
        var first = unet.Bind(2, 8, 8, 77, 768);
        var scratch = first.Scratch(0, 256);
        first.Dispose();
        Assert.Equal(1, unet.IdleBindingCount);
        Assert.Throws<ObjectDisposedException>(() => first.Scratch(0, 256));

        using (var other = unet.Bind(2, 16, 16, 77, 768)) // another shape: buffers of its own
            Assert.NotSame(first, other);
        Assert.Equal(2, unet.IdleBindingCount);

        using var again = unet.Bind(2, 8, 8, 77, 768);
        Assert.Same(first, again);
        Assert.Same(scratch, again.Scratch(0, 256));
        Assert.Equal(1, unet.IdleBindingCount);
        // It runs as a new one does.
        var hidden = new float[2 * 77 * 768];
        new GaussianNoise(1).Fill(hidden);
        again.SetHiddenStates(hidden);
        using var runOptions = new RunOptions();
        again.Run(500, new float[again.OutputLength], runOptions);
    }

    [Fact]
    public void AfterASwitchOfRunPathABindingIsReusedOnlyForItsOwnPathAndTheOutputsAgree()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var unet = LoadUNet(folder.Path, UNetRunPath.IoBinding);
        var hidden = new float[2 * 77 * 768];
        new GaussianNoise(1).Fill(hidden);
        var sample = new float[2 * 4 * 8 * 8];
        new GaussianNoise(2).Fill(sample);
        using var runOptions = new RunOptions();
        float[] RunOnce(out UNetBinding made)
        {
            using var binding = unet.Bind(2, 8, 8, 77, 768);
            made = binding;
            Assert.Equal(unet.RunPath, binding.RunPath);
            binding.SetHiddenStates(hidden);
            binding.WriteSample(sample, 0);
            var output = new float[binding.OutputLength];
            binding.Run(500, output, runOptions);
            return output;
        }

        var bound = RunOnce(out var ioBinding);
        unet.RunPath = UNetRunPath.SessionRun;
        var plain = RunOnce(out var sessionRun);
        Assert.NotSame(ioBinding, sessionRun);
        Assert.Equal(bound, plain);
        Assert.Equal(2, unet.IdleBindingCount);
        unet.RunPath = UNetRunPath.IoBinding;
        RunOnce(out var again);
        Assert.Same(ioBinding, again);

        var refused = Assert.Throws<ArgumentException>(() => unet.RunPath = UNetRunPath.FixedBuffers);
        Assert.Contains("unet", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TwoGenerationsOfOneShapeAtOnceGetDifferentBuffers()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var unet = LoadUNet(folder.Path, UNetRunPath.IoBinding);
        unet.Bind(2, 8, 8, 77, 768).Dispose(); // one kept
        using var a = unet.Bind(2, 8, 8, 77, 768);
        using var b = unet.Bind(2, 8, 8, 77, 768);
        Assert.NotSame(a, b);
        Assert.NotSame(a.Scratch(0, 256), b.Scratch(0, 256));
        Assert.Equal(0, unet.IdleBindingCount);
    }

    [Fact]
    public void TheUNetKeepsAtMostMaxIdleBindings()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var unet = LoadUNet(folder.Path, UNetRunPath.IoBinding);
        var bindings = Enumerable.Range(1, UNet.MaxIdleBindings + 2).Select(batch => unet.Bind(batch, 8, 8, 77, 768)).ToArray();
        foreach (var binding in bindings) binding.Dispose();
        Assert.Equal(UNet.MaxIdleBindings, unet.IdleBindingCount);
        // The oldest returned were released; the newest are kept.
        using var newest = unet.Bind(bindings.Length, 8, 8, 77, 768);
        Assert.Same(bindings[^1], newest);
        using var oldest = unet.Bind(1, 8, 8, 77, 768);
        Assert.NotSame(bindings[0], oldest);
    }

    [Fact]
    public void DisposingTheUNetReleasesTheKeptBindings()
    {
        using var folder = TestModelFactory.CreateTemp();
        var unet = LoadUNet(folder.Path, UNetRunPath.IoBinding);
        unet.Bind(2, 8, 8, 77, 768).Dispose();
        var held = unet.Bind(1, 8, 8, 77, 768);
        Assert.Equal(1, unet.IdleBindingCount);
        unet.Dispose();
        Assert.Equal(0, unet.IdleBindingCount);
        held.Dispose(); // after the UNet: released, not kept
        Assert.Equal(0, unet.IdleBindingCount);
        unet.ReleaseIdleBindings();
        unet.ReleaseIdleBindings();
        Assert.Throws<ObjectDisposedException>(() => unet.Bind(2, 8, 8, 77, 768));
    }

    [Fact]
    public void ReleaseIdleBindingsEmptiesThePool()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var unet = LoadUNet(folder.Path, UNetRunPath.IoBinding);
        var first = unet.Bind(2, 8, 8, 77, 768);
        first.Dispose();
        unet.ReleaseIdleBindings();
        Assert.Equal(0, unet.IdleBindingCount);
        using var next = unet.Bind(2, 8, 8, 77, 768);
        Assert.NotSame(first, next);
    }

    [Theory]
    [InlineData(nameof(UNetRunPath.SessionRun), false)]
    [InlineData(nameof(UNetRunPath.IoBinding), false)]
    [InlineData(nameof(UNetRunPath.IoBinding), true)]
    [InlineData(nameof(UNetRunPath.FixedBuffers), false)]
    public void ImagesAreBitIdenticalWithAndWithoutReuse(string pathName, bool fp16)
    {
        var path = Enum.Parse<UNetRunPath>(pathName);
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { Fp16 = fp16 });
        // Guidance ended half-way: each generation holds both bindings (the guided batch and the conditional half alone).
        var options = new GenerationOptions { Steps = 6, GuidanceScale = 5, Scheduler = "euler_a", GuidanceEnd = 0.5f };
        ImagePrompt[] cat = [new("a photo of a cat", 1), new("a red horse", 2) { NegativePrompt = "blue" }];
        ImagePrompt[] dog = [new("a dog", 7) { GuidanceScale = 9 }];

        // Without reuse: each generation on a fresh pipeline.
        float[][] Fresh(ImagePrompt[] prompts, GenerationOptions o)
        {
            using var p = StableDiffusionPipeline.Load(folder.Path, Options(path));
            return Latents(p.Generate(prompts, o));
        }
        var catFresh = Fresh(cat, options);
        var dogFresh = Fresh(dog, options);

        using var pipeline = StableDiffusionPipeline.Load(folder.Path, Options(path));
        var catFirst = Latents(pipeline.Generate(cat, options));
        var dogReused = Latents(pipeline.Generate(dog, options));        // reuses the buffers cat's batch left
        var catReused = Latents(pipeline.Generate(cat, options));
        Assert.True(pipeline.UNet.IdleBindingCount > 0);
        Assert.Equal(catFresh, catFirst);
        Assert.Equal(catFresh, catReused);
        Assert.Equal(dogFresh, dogReused);
    }

    [Fact]
    public void ConcurrentGenerationsOfOneShapeGiveTheirOwnImages()
    {
        using var folder = TestModelFactory.CreateTemp();
        var options = new GenerationOptions { Steps = 8, GuidanceScale = 6, Scheduler = "dpm++2m" };
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, Options(UNetRunPath.IoBinding));
        var prompts = Enumerable.Range(0, 4).Select(i => new ImagePrompt[] { new($"prompt {i}", 10 + i) }).ToArray();
        var sequential = prompts.Select(p => Latents(pipeline.Generate(p, options))).ToArray();
        for (int round = 0; round < 3; round++)
        {
            var parallel = new float[prompts.Length][][];
            Parallel.For(0, prompts.Length, new ParallelOptions { MaxDegreeOfParallelism = prompts.Length }, i => parallel[i] = Latents(pipeline.Generate(prompts[i], options)));
            for (int i = 0; i < prompts.Length; i++) Assert.Equal(sequential[i], parallel[i]);
        }
        Assert.InRange(pipeline.UNet.IdleBindingCount, 1, UNet.MaxIdleBindings);
    }

    private static float[][] Latents(IReadOnlyList<GeneratedImage> images)
    {
        var latents = images.Select(i => i.Latents).ToArray();
        foreach (var image in images) image.Image.Dispose();
        return latents;
    }
}

using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Performance;

/// <summary>
/// The UNet step path: zero managed allocation per step after warm-up, and the same numbers from every way of
/// handing buffers to ONNX Runtime (arrays, IO binding, fixed device buffers as CUDA graphs use them).
/// </summary>
[Collection(AllocationCollection.Name)]
public class UNetBindingPerformanceTests
{
    public static TheoryData<bool, TimestepForm> Forms => new()
    {
        { false, TimestepForm.FloatBatch },
        { false, TimestepForm.FloatScalar },
        { false, TimestepForm.Int64Batch },
        { true, TimestepForm.FloatBatch },
    };

    private static DiffusionRuntimeOptions Options(UNetRunPath path) => new()
    {
        UseIoBinding = path != UNetRunPath.SessionRun,
        ForceFixedBuffers = path == UNetRunPath.FixedBuffers,
        IntraOpThreads = 1,
    };

    private static UNet LoadUNet(string folder, UNetRunPath path) =>
        new(Path.Combine(folder, "unet", "model.onnx"), new OnnxSessionFactory(Options(path)));

    [Theory]
    [MemberData(nameof(Forms))]
    public void IoBindingAndFixedBuffersAllocateNothingPerStep(bool fp16, TimestepForm timestep)
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { Fp16 = fp16, Timestep = timestep });
        foreach (var path in new[] { UNetRunPath.IoBinding, UNetRunPath.FixedBuffers })
        {
            using var unet = LoadUNet(folder.Path, path);
            Assert.Equal(path, unet.RunPath);
            using var binding = unet.Bind(2, 8, 8, 77, 768);
            var hidden = new float[2 * 77 * 768];
            new GaussianNoise(3).Fill(hidden);
            binding.SetHiddenStates(hidden);
            var latents = new float[4 * 64];
            var prediction = new float[binding.OutputLength];
            var guided = new float[latents.Length];
            using var runOptions = new RunOptions();
            float t = 999;
            void Step()
            {
                binding.WriteSample(latents, 0);
                binding.WriteSample(latents, latents.Length);
                binding.Run(t, prediction, runOptions);
                System.Numerics.Tensors.TensorPrimitives.Subtract(prediction.AsSpan(latents.Length), prediction.AsSpan(0, latents.Length), guided);
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(guided, 7.5f, prediction.AsSpan(0, latents.Length), guided);
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(guided, -0.01f, latents, latents);
                t -= 20;
            }
            for (int i = 0; i < 3; i++) Step();
            var runs = new List<IReadOnlyList<(long, bool)>>();
            for (int run = 0; run < 3; run++)
            {
                var samples = new List<(long, bool)>();
                for (int i = 0; i < 4; i++) samples.Add(AllocationProbe.Measure(Step));
                runs.Add(samples);
            }
            AllocationProbe.AssertZeroPerStep(runs, path.ToString());
            Assert.Equal(15, unet.RunCount);
        }
    }

    [Theory]
    [MemberData(nameof(Forms))]
    public void EveryRunPathGivesIdenticalPredictions(bool fp16, TimestepForm timestep)
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { Fp16 = fp16, Timestep = timestep });
        var hidden = new float[2 * 77 * 768];
        new GaussianNoise(5).Fill(hidden);
        var sample = new float[2 * 4 * 64];
        var results = new Dictionary<UNetRunPath, float[][]>();
        foreach (var path in Enum.GetValues<UNetRunPath>())
        {
            using var unet = LoadUNet(folder.Path, path);
            using var binding = unet.Bind(2, 8, 8, 77, 768);
            binding.SetHiddenStates(hidden);
            using var runOptions = new RunOptions();
            var outputs = new float[3][];
            var noise = new GaussianNoise(9);
            for (int step = 0; step < 3; step++)
            {
                noise.Fill(sample); // new values each step: a path that ran on stale inputs would show
                binding.WriteSample(sample, 0);
                outputs[step] = new float[binding.OutputLength];
                binding.Run(900 - 300 * step, outputs[step], runOptions);
            }
            results[path] = outputs;
        }
        for (int step = 0; step < 3; step++)
        {
            Assert.Equal(results[UNetRunPath.SessionRun][step], results[UNetRunPath.IoBinding][step]);
            Assert.Equal(results[UNetRunPath.SessionRun][step], results[UNetRunPath.FixedBuffers][step]);
        }
        Assert.NotEqual(results[UNetRunPath.SessionRun][0], results[UNetRunPath.SessionRun][1]);
    }

    [Fact]
    public void FixedBuffersAreReusedAcrossGenerationsOfOneShape()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var unet = LoadUNet(folder.Path, UNetRunPath.FixedBuffers);
        var first = RunOnce(unet, 1, 8);
        var other = RunOnce(unet, 2, 16); // another shape: its own buffers (and, on CUDA, its own graph)
        var again = RunOnce(unet, 1, 8);
        Assert.Equal(first, again);
        Assert.Equal(4 * 2 * 16 * 16, other.Length);

        static float[] RunOnce(UNet unet, int batch, int size)
        {
            using var binding = unet.Bind(batch, size, size, 77, 768);
            var hidden = new float[batch * 77 * 768];
            new GaussianNoise(batch).Fill(hidden);
            binding.SetHiddenStates(hidden);
            var sample = new float[binding.SampleLength];
            new GaussianNoise(11).Fill(sample);
            binding.WriteSample(sample, 0);
            var output = new float[binding.OutputLength];
            using var runOptions = new RunOptions();
            binding.Run(500, output, runOptions);
            return output;
        }
    }

    [Theory]
    [InlineData(nameof(UNetRunPath.SessionRun))]
    [InlineData(nameof(UNetRunPath.IoBinding))]
    [InlineData(nameof(UNetRunPath.FixedBuffers))]
    public void PipelineGivesIdenticalImagesOnEveryRunPath(string pathName)
    {
        var path = Enum.Parse<UNetRunPath>(pathName);
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { Fp16 = true });
        var options = new GenerationOptions { Steps = 6, GuidanceScale = 4, Scheduler = "dpm++2m" };
        using var reference = StableDiffusionPipeline.Load(folder.Path, Options(UNetRunPath.SessionRun));
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, Options(path));
        Assert.Equal(path, pipeline.UNet.RunPath);
        var prompts = new[] { new ImagePrompt("a photo of a cat", 1), new ImagePrompt("a red horse", 2) { NegativePrompt = "blue" } };
        var expected = reference.Generate(prompts, options);
        var actual = pipeline.Generate(prompts, options);
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(expected[i].Latents, actual[i].Latents);
            Assert.Equal(expected[i].Image.Pixels.ToArray(), actual[i].Image.Pixels.ToArray());
            expected[i].Image.Dispose();
            actual[i].Image.Dispose();
        }
    }

    [Fact]
    public void DenoisingLoopAllocatesNothingPerStepAfterWarmUp()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, Options(UNetRunPath.IoBinding));
        var cond = pipeline.EncodeText(["a photo of a cat", "a dog"]);
        var uncond = pipeline.EncodeText(["", ""]);
        foreach (var scheduler in new[] { "pndm", "euler", "dpm++2m", "ddim" })
        {
            // A first generation warms up: JIT, first-use statics, the schedulers' history buffers.
            pipeline.Denoise(cond, uncond, [1, 2], [7.5f, 5f], new GenerationOptions { Width = 64, Height = 64, Steps = 12, Scheduler = scheduler }, new StepAllocations());
            // Reports come right after each step; the bytes between consecutive reports are one whole step.
            var runs = new List<IReadOnlyList<(long, bool)>>();
            for (int run = 0; run < 3; run++)
            {
                var probe = new StepAllocations();
                pipeline.Denoise(cond, uncond, [1, 2], [7.5f, 5f], new GenerationOptions { Width = 64, Height = 64, Steps = 12, Scheduler = scheduler }, probe);
                runs.Add(probe.Deltas);
            }
            AllocationProbe.AssertZeroPerStep(runs, scheduler);
        }
    }

    [Fact]
    public void RunTimeAccumulatesTheTimeInsideOnnxRuntime()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.Equal(TimeSpan.Zero, pipeline.UNet.RunTime);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        pipeline.Generate("a cat", 1, new GenerationOptions { Steps = 5 }).Image.Dispose();
        clock.Stop();
        var first = pipeline.UNet.RunTime;
        Assert.True(first > TimeSpan.Zero);
        Assert.True(first <= clock.Elapsed, $"{first} inside Run, {clock.Elapsed} in all");
        pipeline.Generate("a dog", 2, new GenerationOptions { Steps = 5 }).Image.Dispose();
        Assert.True(pipeline.UNet.RunTime > first);
        Assert.Equal(12, pipeline.UNet.RunCount); // PNDM: 6 calls for 5 steps
    }
}

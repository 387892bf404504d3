using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.ImageToImage.ImageToImageTestKit;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.ImageToImage;

public class ImageToImageTests(PipelineCache models) : IClassFixture<PipelineCache>
{
    [Theory]
    [InlineData(VaeEncoderForm.LatentSample, false, "ddim")]
    [InlineData(VaeEncoderForm.LatentParameters, false, "heun")]
    [InlineData(VaeEncoderForm.LatentParameters, true, "pndm")]
    [InlineData(VaeEncoderForm.LatentSample, true, "euler-a")]
    public void StrengthZeroReturnsTheInputThroughTheVae(VaeEncoderForm form, bool fp16, string scheduler)
    {
        var pipeline = models.Get(new TestModelOptions { Encoder = form, Fp16 = fp16 });
        using var input = BlockImage(64, 64);
        var (result, runs) = GenerateCounting(pipeline, new ImagePrompt(Prompt, 3) { InitImage = input, Strength = 0 },
            new GenerationOptions { Steps = 10, Scheduler = scheduler });
        using var image = result.Image;
        Assert.Equal(0, runs);
        var expected = Rgb(input);
        var actual = Rgb(image);
        // The test VAE round trip is the 8×8 block average: exact on a block-constant image up to byte rounding
        // (fp16 keeps 11 bits of each latent, so a byte may move by 1).
        int tolerance = fp16 ? 1 : 0;
        for (int i = 0; i < expected.Length; i++)
            Assert.InRange(actual[i], expected[i] - tolerance, expected[i] + tolerance);
        // latent_parameters is sampled with σ = e^−10 (× s), so its latents move by up to ~1e-4.
        Assert.True(MaxAbsDiff(result.Latents, BlockLatents(64, 64)) < (fp16 ? 2e-3 : form == VaeEncoderForm.LatentParameters ? 1e-4 : 1e-5));
    }

    [Theory]
    [InlineData("pndm", VaeEncoderForm.LatentSample)]
    [InlineData("ddim", VaeEncoderForm.LatentParameters)]
    [InlineData("euler-a", VaeEncoderForm.LatentParameters)]   // stochastic: the noise stream must match too
    [InlineData("ddpm", VaeEncoderForm.LatentSample)]
    [InlineData("lcm", VaeEncoderForm.LatentParameters)]
    [InlineData("heun", VaeEncoderForm.LatentSample)]
    [InlineData("dpm++2m-karras", VaeEncoderForm.LatentParameters)]
    [InlineData("dpm++2m-sde", VaeEncoderForm.LatentSample)]    // stochastic
    [InlineData("unipc", VaeEncoderForm.LatentParameters)]
    [InlineData("deis", VaeEncoderForm.LatentSample)]
    [InlineData("dpm++2s", VaeEncoderForm.LatentParameters)]
    public void StrengthOneIsTextToImageWithTheSameSeed(string scheduler, VaeEncoderForm form)
    {
        // SD 1.5's own schedule (not ending at ᾱ = 1), so the seed's noise still shows in the result.
        var pipeline = models.Get(new TestModelOptions { Encoder = form });
        using var input = BlockImage(64, 64);
        var options = new GenerationOptions { Steps = 6, Scheduler = scheduler, GuidanceScale = 3 };
        var textToImage = pipeline.Generate([new ImagePrompt(Prompt, 42) { NegativePrompt = "blue dog" }], options)[0];
        var imageToImage = pipeline.Generate([new ImagePrompt(Prompt, 42) { NegativePrompt = "blue dog", InitImage = input, Strength = 1 }], options)[0];
        Assert.Equal(textToImage.Latents, imageToImage.Latents);
        Assert.Equal(textToImage.Image.Pixels.ToArray(), imageToImage.Image.Pixels.ToArray());
        textToImage.Image.Dispose();
        imageToImage.Image.Dispose();
    }

    [Fact]
    public void IntermediateStrengthsMoveFromTheInputTowardTheTargetMonotonically()
    {
        // Data N(target, 0.5²): a deterministic sampler keeps part of where it starts, less the more noise it starts from.
        const float s = 0.5f;
        var o = new TestModelOptions { DataStd = s, SchedulerConfigJson = ExactEndConfig };
        var pipeline = models.Get(o);
        // Colours opposite to the target's signs, so the input is far from the target.
        var target = GuidedTarget(Prompt, "", 1, o);
        (byte, byte, byte) Colour(int bx, int by) =>
            ((byte)(target[0] > 0 ? 20 + bx : 235 - bx), (byte)(target[1] > 0 ? 25 + by : 230 - by), (byte)(target[2] > 0 ? 30 : 225));
        using var input = BlockImage(64, 64, Colour);
        var x = BlockLatents(64, 64, Colour);
        var z = TestModelFactory.ExpandTarget(target, 8, 8);
        var options = new GenerationOptions { Steps = 50, Scheduler = "ddim", GuidanceScale = 1 };

        float[] strengths = [0, 0.1f, 0.3f, 0.5f, 0.7f, 0.9f, 1];
        var toInput = new List<double>();
        var inputWeight = new List<double>();
        foreach (var strength in strengths)
        {
            var result = pipeline.Generate([new ImagePrompt(Prompt, 5) { InitImage = input, Strength = strength }], options)[0];
            result.Image.Dispose();
            toInput.Add(Rms(result.Latents, x));
            // The share of (input − target) that is left: Σ(r − z)(x − z) / Σ(x − z)².
            double num = 0, den = 0;
            for (int i = 0; i < z.Length; i++) { num += (result.Latents[i] - z[i]) * (x[i] - z[i]); den += (x[i] - z[i]) * (x[i] - z[i]); }
            inputWeight.Add(num / den);

            if (strength is > 0 and < 1)
            {
                // On data N(z, s²) DDIM is linear in r = x − √ᾱ·z: each step from ᾱ to ᾱ' multiplies r by
                // (√(ᾱ'ᾱ)·s² + √((1 − ᾱ')(1 − ᾱ)))/(ᾱs² + 1 − ᾱ), and it starts from x_t = √ᾱ·x + √(1 − ᾱ)·ε at the first
                // kept timestep (ε: the seed's first draw) and ends at ᾱ = 1, where r = x₀ − z.
                var ddim = SchedulerFactory.Create("ddim", pipeline.SchedulerConfig);
                ddim.SetTimesteps(50);
                int first = ddim.FirstCallOfStep(StableDiffusionPipeline.SkippedSteps(50, strength));
                double a0 = ddim.AlphasCumprod[(int)ddim.Timesteps[first]], factor = 1;
                for (int c = first; c < ddim.CallCount; c++)
                {
                    double a = ddim.AlphasCumprod[(int)ddim.Timesteps[c]];
                    double ap = c + 1 < ddim.CallCount ? ddim.AlphasCumprod[(int)ddim.Timesteps[c + 1]] : 1;
                    factor *= (Math.Sqrt(ap * a) * s * s + Math.Sqrt((1 - ap) * (1 - a))) / (a * s * s + 1 - a);
                }
                var eps = new float[z.Length];
                new GaussianNoise(5).Fill(eps);
                var expected = new float[z.Length];
                for (int i = 0; i < z.Length; i++)
                    expected[i] = (float)(z[i] + factor * (Math.Sqrt(a0) * x[i] + Math.Sqrt(1 - a0) * eps[i] - Math.Sqrt(a0) * z[i]));
                Assert.True(MaxAbsDiff(result.Latents, expected) < 1e-3, $"strength {strength}: {MaxAbsDiff(result.Latents, expected)} from DDIM's closed form");
            }
        }
        Assert.Equal(0, toInput[0], 5);
        Assert.Equal(1, inputWeight[0], 5);
        for (int k = 1; k < strengths.Length; k++)
        {
            Assert.True(toInput[k] > toInput[k - 1], $"distance to the input does not grow from strength {strengths[k - 1]} to {strengths[k]}: {string.Join(", ", toInput)}");
            Assert.True(inputWeight[k] < inputWeight[k - 1], $"the input's share does not shrink from strength {strengths[k - 1]} to {strengths[k]}: {string.Join(", ", inputWeight)}");
        }
        Assert.InRange(inputWeight[^1], -0.1, 0.1);
    }

    [Theory]
    [InlineData("ddim", 10, 0.55f, 5)]
    [InlineData("euler", 10, 0.7f, 7)]          // 0.7f is read as 0.7: ⌊10 · 0.7⌋ = 7, not 6
    [InlineData("pndm", 10, 0.55f, 5)]          // the PLMS warm-up's extra call is skipped with its step
    [InlineData("pndm", 10, 1f, 11)]
    [InlineData("heun", 10, 0.5f, 9)]           // 5 kept steps, 2 calls each but the last
    [InlineData("kdpm2", 10, 0.3f, 5)]
    [InlineData("lcm", 4, 0.5f, 2)]
    [InlineData("dpm++2m", 20, 0.04f, 0)]       // ⌊0.8⌋ = 0: nothing to denoise
    public void UNetCallsAreTheKeptSteps(string scheduler, int steps, float strength, int expectedCalls)
    {
        var pipeline = models.Get();
        using var input = BlockImage(64, 64);
        var reports = new List<DiffusionProgress>();
        var progress = new SynchronousProgress<DiffusionProgress>(reports.Add);
        long before = pipeline.UNet.RunCount;
        pipeline.Generate([new ImagePrompt(Prompt, 1) { InitImage = input, Strength = strength }], new GenerationOptions { Steps = steps, Scheduler = scheduler }, progress)[0].Image.Dispose();
        Assert.Equal(expectedCalls, pipeline.UNet.RunCount - before);
        var denoising = reports.Where(r => r.Stage == DiffusionStage.Denoising).ToList();
        Assert.Equal(Enumerable.Range(1, expectedCalls), denoising.Select(r => r.Step));
        Assert.All(denoising, r => Assert.Equal(expectedCalls, r.Total));
    }

    [Fact]
    public void SkippedStepsFollowDiffusers()
    {
        // diffusers: init_timestep = min(int(steps · strength), steps); t_start = max(steps − init_timestep, 0).
        Assert.Equal(0, StableDiffusionPipeline.SkippedSteps(50, 1));
        Assert.Equal(50, StableDiffusionPipeline.SkippedSteps(50, 0));
        Assert.Equal(10, StableDiffusionPipeline.SkippedSteps(50, 0.8f));
        Assert.Equal(3, StableDiffusionPipeline.SkippedSteps(10, 0.7f));
        Assert.Equal(25, StableDiffusionPipeline.SkippedSteps(50, 0.5f));
        Assert.Equal(1, StableDiffusionPipeline.SkippedSteps(1, 0.99f));
        Assert.Throws<ArgumentOutOfRangeException>(() => StableDiffusionPipeline.SkippedSteps(10, float.NaN));
    }

    public static TheoryData<string> AllSchedulers()
    {
        var data = new TheoryData<string>();
        foreach (var name in SchedulerFactory.Names) data.Add(name);
        return data;
    }

    [Theory]
    [MemberData(nameof(AllSchedulers))]
    public void EverySchedulerRunsImageToImageAndLandsOnTheTarget(string scheduler)
    {
        var pipeline = models.Get(new TestModelOptions { SchedulerConfigJson = ExactEndConfig });
        using var input = BlockImage(64, 64);
        var options = new GenerationOptions { Steps = 25, Scheduler = scheduler, GuidanceScale = 2.5f };
        var (result, runs) = GenerateCounting(pipeline, new ImagePrompt(Prompt, 11) { NegativePrompt = "blue dog", InitImage = input, Strength = 0.6f }, options);
        result.Image.Dispose();
        var probe = SchedulerFactory.Create(scheduler, pipeline.SchedulerConfig);
        probe.SetTimesteps(25);
        Assert.Equal(probe.CallCount - probe.FirstCallOfStep(10), runs); // 15 of 25 steps kept
        // The point-mass oracle forgets any start that carries noise: every scheduler ends on the guided target.
        var expected = TestModelFactory.ExpandTarget(GuidedTarget(Prompt, "blue dog", 2.5f), 8, 8);
        double error = MaxAbsDiff(result.Latents, expected);
        // DEIS ends at σ_min, not 0 (log ρ has no value at 0): that much of the start's noise stays, |ε| < 5 here.
        double tolerance = 2e-2 + (probe is DeisMultistepScheduler deis ? 5 * deis.Sigmas[^1] : 0);
        Assert.True(error < tolerance, $"{scheduler}: max error {error}");
    }

    [Fact]
    public void InitImagesOfAnySizeAreStretchedToTheGenerationSize()
    {
        var pipeline = models.Get();
        // A constant colour stays constant under any resize, so the round trip is exact.
        using var input = BlockImage(20, 13, (_, _) => (200, 60, 120));
        var result = pipeline.Generate([new ImagePrompt(Prompt, 0) { InitImage = input, Strength = 0 }], new GenerationOptions { Width = 48, Height = 32 })[0];
        using var image = result.Image;
        Assert.Equal(48, image.Width);
        Assert.Equal(32, image.Height);
        var rgb = Rgb(image);
        for (int i = 0; i < rgb.Length; i += 3)
            Assert.Equal(new byte[] { 200, 60, 120 }, rgb[i..(i + 3)]);
    }

    [Fact]
    public void MixedStrengthsInOneCallEqualImagesGeneratedAlone()
    {
        var pipeline = models.Get();
        using var a = BlockImage(64, 64);
        using var b = BlockImage(64, 64, (x, y) => ((byte)(x * 30), (byte)(y * 30), 90));
        using var mask = MaskImage(64, 64, (x, y) => x >= 32);
        var options = new GenerationOptions { Steps = 8, Scheduler = "euler-a" };
        ImagePrompt[] requests =
        [
            new("red cat", 5),
            new("blue dog", 6) { InitImage = a, Strength = 0.5f },
            new("the horse", 7) { InitImage = b, Strength = 0.5f, GuidanceScale = 1 },
            new("red cat", 8) { InitImage = a, Mask = mask },
            new("blue dog", 9) { InitImage = b, Strength = 0 },
            new("the horse", 10) { InitImage = a, Strength = 0.25f },
        ];
        long before = pipeline.UNet.RunCount;
        var batch = pipeline.Generate(requests, options);
        // Five UNet batches: start step 0 (text-to-image and the mask at strength 1: 8 calls), 4 with guidance (4 calls),
        // 4 without (guidance 1 never shares a guided call: 4 calls), 8 (strength 0: none) and 6 (2 calls).
        Assert.Equal(8 + 4 + 4 + 0 + 2, pipeline.UNet.RunCount - before);
        for (int i = 0; i < requests.Length; i++)
        {
            var alone = pipeline.Generate([requests[i]], options)[0];
            Assert.True(MaxAbsDiff(batch[i].Latents, alone.Latents) < 1e-5, $"image {i} differs in a batch");
            alone.Image.Dispose();
            batch[i].Image.Dispose();
        }
    }

    [Theory]
    [InlineData(VaeEncoderForm.LatentSample)]
    [InlineData(VaeEncoderForm.LatentParameters)]
    public void EncodeImageGivesTheScaledLatentsInBothExportForms(VaeEncoderForm form)
    {
        var pipeline = models.Get(new TestModelOptions { Encoder = form, ScalingFactor = 0.13025f });
        Assert.Equal(form == VaeEncoderForm.LatentParameters, pipeline.VaeEncoder!.ReturnsDistribution);
        using var input = BlockImage(64, 64);
        var expected = BlockLatents(64, 64); // the test encoder divides by s, the engine multiplies by it
        var mean = pipeline.EncodeImage(input, 64, 64);
        Assert.True(MaxAbsDiff(mean, expected) < 1e-5);
        var sampled = pipeline.EncodeImage(input, 64, 64, new GaussianNoise(1));
        // latent_parameters: (mean + exp(½·logvar)·ε)·s with logvar −20 (σ = e^−10); latent_sample: the mean, no noise used.
        if (form == VaeEncoderForm.LatentParameters) Assert.InRange(MaxAbsDiff(sampled, mean), 1e-7, 1e-4);
        else Assert.Equal(mean, sampled);
    }

    private static double Rms(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += (a[i] - b[i]) * (a[i] - b[i]);
        return Math.Sqrt(sum / a.Length);
    }

    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}

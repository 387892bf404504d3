using MLNet.Diffusion.Tests.TestModels;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

namespace MLNet.Diffusion.Tests.Families;

/// <summary>
/// Stable Diffusion 3 and FLUX.1 through the engine, on the closed-form folders of <see cref="FlowTestModelFactory"/>: the
/// oracle transformer predicts the ideal flow-matching velocity of a point mass at μ(c), so every Euler schedule lands on
/// μ exactly, and μ depends on every position of <c>encoder_hidden_states</c>, on the pooled projections, on FLUX's image
/// positions and on FLUX-dev's guidance input. The final latents therefore show that each conditioning piece reached the
/// transformer with the values diffusers builds (the expected values come from the closed forms, not from the engine).
/// </summary>
public sealed class FlowFamilyTests
{
    private const string Prompt = "a red cube on a blue floor";

    /// <summary>The Euler steps land on μ up to float rounding (the oracle divides by σ).</summary>
    private const double Tolerance = 2e-3;

    /// <summary>The latent side of the test folders' default size (128 pixels).</summary>
    private const int Side = 16;

    private static GeneratedImage GenerateOne(StableDiffusionPipeline pipeline, GenerationOptions options, string prompt = Prompt, long seed = 3, string negative = "")
    {
        var result = pipeline.Generate([new ImagePrompt(prompt, seed) { NegativePrompt = negative }], options)[0];
        return result;
    }

    private static float[] Sd3Target(string prompt, int t5Length, bool withT5, FlowTestModelOptions o)
    {
        var (embeds, pooled) = FlowTestModelFactory.Sd3ConditioningForPrompt(prompt, t5Length, withT5, o);
        return FlowTestModelFactory.TargetLatents(embeds, pooled, 0, Side, Side, o);
    }

    private static float[] Guided(float[] conditional, float[] unconditional, float g)
    {
        var z = new float[conditional.Length];
        for (int i = 0; i < z.Length; i++) z[i] = unconditional[i] + g * (conditional[i] - unconditional[i]);
        return z;
    }

    public static TheoryData<FlowExportConvention, bool> Conventions => new()
    {
        { FlowExportConvention.Optimum, false },
        { FlowExportConvention.OnnxStack, false },
        { FlowExportConvention.Optimum, true },
    };

    [Theory]
    [MemberData(nameof(Conventions))]
    public void Sd3LandsOnTheGuidedTargetOfPaddedClipStatesAndT5(FlowExportConvention convention, bool fp16)
    {
        var o = new FlowTestModelOptions { Convention = convention, Fp16 = fp16 };
        using var folder = FlowTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.Equal(ModelFamily.StableDiffusion3, pipeline.Family);
        Assert.False(pipeline.UsesGuidanceEmbedding);
        using var result = GenerateOne(pipeline, new GenerationOptions { Steps = 6, GuidanceScale = 4.5f });
        // diffusers' SD3: the empty negative prompt is encoded (no zeros), and CFG mixes the two velocities.
        var expected = Guided(Sd3Target(Prompt, 256, true, o), Sd3Target("", 256, true, o), 4.5f);
        double tolerance = fp16 ? 3e-2 : Tolerance;
        Assert.True(MaxAbsDiff(result.Latents, expected) < tolerance, $"max error {MaxAbsDiff(result.Latents, expected)}");
        // Two rows per call (guided), and the T5 part mattered: the target without it is far from the result.
        Assert.Equal(2 * 6, pipeline.UNet.RowCount);
        var withoutT5 = Guided(Sd3Target(Prompt, 256, false, o), Sd3Target("", 256, false, o), 4.5f);
        Assert.True(MaxAbsDiff(withoutT5, expected) > 10 * tolerance, "the oracle must see T5's states");
    }

    [Fact]
    public void Sd3DecodesThroughTheShiftedVae()
    {
        var o = new FlowTestModelOptions();
        using var folder = FlowTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var result = GenerateOne(pipeline, new GenerationOptions { Steps = 3, GuidanceScale = 1 });
        // diffusers decodes z / scaling + shift; the test decoder maps that back to pixel values z[0..2] in [−1, 1].
        var decoded = FlowTestModelFactory.DecodedImage(result.Latents, Side, Side, o);
        var pixels = result.Image.GetBGRPixels;
        int w = Side * 8, plane = w * w;
        for (int y = 0; y < w; y += 37)
            for (int x = 0; x < w; x += 29)
                for (int c = 0; c < 3; c++)
                {
                    double value = Math.Clamp(decoded[c * plane + y * w + x] / 2 + 0.5, 0, 1) * 255;
                    int actual = pixels[(y * w + x) * 3 + (2 - c)];
                    Assert.True(Math.Abs(actual - value) <= 1.01, $"pixel ({x}, {y}) channel {c}: {actual} vs {value:F2}");
                }
    }

    [Fact]
    public void Sd3WithoutT5TakesZerosInT5sPlaceWhetherTheFolderLacksItOrTheOptionSkipsIt()
    {
        var o = new FlowTestModelOptions();
        var expected = Sd3Target(Prompt, 256, false, o);
        using (var folder = FlowTestModelFactory.CreateTemp(o))
        using (var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { WithoutT5 = true }))
        {
            Assert.Null(pipeline.PromptEncoder.T5);
            using var result = GenerateOne(pipeline, new GenerationOptions { Steps = 4, GuidanceScale = 1 });
            Assert.True(MaxAbsDiff(result.Latents, expected) < Tolerance, $"max error {MaxAbsDiff(result.Latents, expected)}");
        }
        var lacking = o with { IncludeT5 = false };
        using (var folder = FlowTestModelFactory.CreateTemp(lacking))
        using (var pipeline = StableDiffusionPipeline.Load(folder.Path))
        {
            using var result = GenerateOne(pipeline, new GenerationOptions { Steps = 4, GuidanceScale = 1 });
            Assert.True(MaxAbsDiff(result.Latents, expected) < Tolerance, $"max error {MaxAbsDiff(result.Latents, expected)}");
        }
    }

    [Fact]
    public void MaxSequenceLengthSetsT5sTokens()
    {
        var o = new FlowTestModelOptions();
        using var folder = FlowTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { MaxSequenceLength = 40 });
        Assert.Equal(77 + 40, pipeline.ConditioningLength);
        using var result = GenerateOne(pipeline, new GenerationOptions { Steps = 3, GuidanceScale = 1 });
        var expected = Sd3Target(Prompt, 40, true, o);
        Assert.True(MaxAbsDiff(result.Latents, expected) < Tolerance, $"max error {MaxAbsDiff(result.Latents, expected)}");
        Assert.True(MaxAbsDiff(Sd3Target(Prompt, 256, true, o), expected) > 10 * Tolerance, "the oracle must tell T = 40 from T = 256");
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { MaxSequenceLength = 513 }));
        Assert.Contains("MaxSequenceLength must be from 1 to 512", error.Message);
    }

    [Fact]
    public void AFixedTransformerSequenceAxisDecidesT5sLengthAndRefusesAnother()
    {
        var o = new FlowTestModelOptions { TransformerStaticSequenceLength = 77 + 64 };
        using var folder = FlowTestModelFactory.CreateTemp(o);
        using (var pipeline = StableDiffusionPipeline.Load(folder.Path))
        {
            Assert.Equal(64, pipeline.T5Length);
            using var result = GenerateOne(pipeline, new GenerationOptions { Steps = 2, GuidanceScale = 1 });
            var expected = Sd3Target(Prompt, 64, true, o);
            Assert.True(MaxAbsDiff(result.Latents, expected) < Tolerance, $"max error {MaxAbsDiff(result.Latents, expected)}");
        }
        var error = Assert.Throws<ArgumentException>(() => StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { MaxSequenceLength = 100 }));
        Assert.Contains("transformer", error.Message);
        Assert.Contains("64", error.Message);
    }

    public static TheoryData<FlowTestFamily, FlowExportConvention> FluxCases => new()
    {
        { FlowTestFamily.FluxSchnell, FlowExportConvention.Optimum },
        { FlowTestFamily.FluxSchnell, FlowExportConvention.OnnxStack },
        { FlowTestFamily.FluxDev, FlowExportConvention.Optimum },
        { FlowTestFamily.FluxDev, FlowExportConvention.OnnxStack },
    };

    [Theory]
    [MemberData(nameof(FluxCases))]
    public void FluxLandsOnTheTargetOfT5StatesPooledClipImagePositionsAndGuidance(FlowTestFamily family, FlowExportConvention convention)
    {
        var o = new FlowTestModelOptions { Family = family, Convention = convention };
        using var folder = FlowTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.Equal(ModelFamily.Flux, pipeline.Family);
        Assert.True(pipeline.UsesGuidanceEmbedding);
        // schnell: 256 T5 tokens, as its model card runs it; dev: 512 (diffusers' default).
        int t5Length = family == FlowTestFamily.FluxDev ? 512 : 256;
        Assert.Equal(t5Length, pipeline.T5Length);
        const float guidance = 3.5f;
        // A non-square size: the image positions and the packing order must agree with diffusers'.
        using var result = pipeline.Generate([new ImagePrompt(Prompt, 9) { Width = 128, Height = 96 }], new GenerationOptions { Steps = 4, GuidanceScale = guidance })[0];
        var (embeds, pooled) = FlowTestModelFactory.FluxConditioningForPrompt(Prompt, t5Length, o);
        var expected = FlowTestModelFactory.TargetLatents(embeds, pooled, guidance, 12, 16, o);
        Assert.True(MaxAbsDiff(result.Latents, expected) < Tolerance, $"max error {MaxAbsDiff(result.Latents, expected)}");
        // No classifier-free guidance: one transformer row per image and call.
        Assert.Equal(4, pipeline.UNet.RowCount);
        if (family == FlowTestFamily.FluxDev)
        {
            var other = FlowTestModelFactory.TargetLatents(embeds, pooled, 1.5f, 12, 16, o);
            Assert.True(MaxAbsDiff(other, expected) > 10 * Tolerance, "the oracle must see the guidance input");
        }
    }

    [Fact]
    public void FluxImageToImageStartsFromThePackedNoisedImageAndLandsOnTheTarget()
    {
        var o = new FlowTestModelOptions { Family = FlowTestFamily.FluxSchnell };
        using var folder = FlowTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var init = SolidImage(128, 128, 200, 40, 90);
        // FLUX.1's default size is 1024 (its transformer config has no sample_size): ask for the init image's.
        var request = new ImagePrompt(Prompt, 4) { InitImage = init, Strength = 0.5f, Width = 128, Height = 128 };
        using var result = pipeline.Generate([request], new GenerationOptions { Steps = 4 })[0];
        var (embeds, pooled) = FlowTestModelFactory.FluxConditioningForPrompt(Prompt, 256, o);
        var expected = FlowTestModelFactory.TargetLatents(embeds, pooled, 0, Side, Side, o);
        Assert.True(MaxAbsDiff(result.Latents, expected) < Tolerance, $"max error {MaxAbsDiff(result.Latents, expected)}");
        Assert.Equal(2, pipeline.UNet.RowCount); // strength 0.5 of 4 steps
    }

    [Fact]
    public void FluxCannotRunWithoutT5AndSaysWhy()
    {
        using var folder = FlowTestModelFactory.CreateTemp(new FlowTestModelOptions { Family = FlowTestFamily.FluxDev });
        var error = Assert.Throws<NotSupportedException>(() => StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { WithoutT5 = true }));
        Assert.Contains("FLUX.1 conditions on its T5 encoder", error.Message);
        Assert.Contains("--no-t5", error.Message);
    }

    [Fact]
    public void TransformerFamiliesRefuseMasksAndControlNetsByName()
    {
        using var folder = FlowTestModelFactory.CreateTemp(new FlowTestModelOptions());
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        using var init = SolidImage(128, 128, 10, 20, 30);
        using var mask = SolidImage(128, 128, 255, 255, 255);
        var masked = Assert.Throws<NotSupportedException>(() => pipeline.Generate([new ImagePrompt(Prompt, 1) { InitImage = init, Mask = mask }], new GenerationOptions { Steps = 2 }));
        Assert.Contains("inpainting", masked.Message);
        Assert.Contains("StableDiffusion3", masked.Message);
        var control = Assert.Throws<NotSupportedException>(() => pipeline.Generate(Prompt, 1,
            new GenerationOptions { Steps = 2, ControlNets = [new ControlNetInput(folder.Path) { Image = init }] }));
        Assert.Contains("ControlNets are supported with UNet models", control.Message);
    }

    [Fact]
    public void LowMemoryModeGivesTheSameLatentsAndReleasesTheEncodersIncludingT5()
    {
        var o = new FlowTestModelOptions();
        using var folder = FlowTestModelFactory.CreateTemp(o);
        float[] reference;
        using (var pipeline = StableDiffusionPipeline.Load(folder.Path))
        using (var result = GenerateOne(pipeline, new GenerationOptions { Steps = 3, GuidanceScale = 2 }))
            reference = result.Latents;
        using var lowMemory = StableDiffusionPipeline.Load(folder.Path, new DiffusionRuntimeOptions { LowMemory = true });
        using var again = GenerateOne(lowMemory, new GenerationOptions { Steps = 3, GuidanceScale = 2 });
        Assert.Equal(reference, again.Latents);
        Assert.False(lowMemory.Model.PromptEncoders.IsLoaded);
    }

    public static TheoryData<FlowTestFamily, string, string> BrokenFolders => new()
    {
        { FlowTestFamily.FluxSchnell, "text_encoder_2", "has no T5 encoder" },
        { FlowTestFamily.Sd3, "tokenizer_3/spiece.model", "has no T5 tokenizer" },
        { FlowTestFamily.Sd3, "transformer", "has no 'transformer" },
        { FlowTestFamily.Sd3, "text_encoder_2", "second text encoder" },
    };

    [Theory]
    [MemberData(nameof(BrokenFolders))]
    public void ABrokenFlowFolderIsRefusedAtLoadNamingWhatIsMissing(FlowTestFamily family, string removed, string expected)
    {
        using var dir = new Cli.TempDir();
        var path = FlowTestModelFactory.CreateWithout(dir["model"], removed, new FlowTestModelOptions { Family = family });
        var error = Assert.Throws<FileNotFoundException>(() => StableDiffusionPipeline.Load(path));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void ATransformerFolderThatDoesNotSayItsFamilyIsRefused()
    {
        using var dir = new Cli.TempDir();
        var path = FlowTestModelFactory.Create(dir["model"], new FlowTestModelOptions());
        File.Delete(Path.Combine(path, "model_index.json"));
        File.WriteAllText(Path.Combine(path, "transformer", "config.json"), "{\"_class_name\": \"SomeTransformer\"}");
        var error = Assert.Throws<InvalidDataException>(() => StableDiffusionPipeline.Load(path));
        Assert.Contains("neither model_index.json's _class_name", error.Message);
        // The transformer's own class is enough without model_index.json.
        File.WriteAllText(Path.Combine(path, "transformer", "config.json"), "{\"_class_name\": \"SD3Transformer2DModel\"}");
        using var pipeline = StableDiffusionPipeline.Load(path);
        Assert.Equal(ModelFamily.StableDiffusion3, pipeline.Family);
    }

    private static Microsoft.ML.Data.MLImage SolidImage(int width, int height, byte r, byte g, byte b)
    {
        var pixels = new byte[width * height * 4];
        for (int i = 0; i < pixels.Length; i += 4)
        {
            pixels[i] = r;
            pixels[i + 1] = g;
            pixels[i + 2] = b;
            pixels[i + 3] = 255;
        }
        return Microsoft.ML.Data.MLImage.CreateFromPixels(width, height, Microsoft.ML.Data.MLPixelFormat.Rgba32, pixels);
    }
}

#pragma warning disable MEAI001 // IImageGenerator is experimental in Microsoft.Extensions.AI; these tests call it.
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.ML.Data;
using MLNet.Diffusion.Hosting;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Hosting;

/// <summary>One tiny model folder and pipeline for the generator tests (xUnit runs a class's tests one at a time).</summary>
public sealed class GeneratorModelFixture : IDisposable
{
    private readonly TempModelFolder _folder = TestModelFactory.CreateTemp();

    public GeneratorModelFixture() => Pipeline = StableDiffusionPipeline.Load(_folder.Path);

    public StableDiffusionPipeline Pipeline { get; }

    public string Path => _folder.Path;

    public void Dispose()
    {
        Pipeline.Dispose();
        _folder.Dispose();
    }
}

public class StableDiffusionImageGeneratorTests(GeneratorModelFixture model) : IClassFixture<GeneratorModelFixture>
{
    private const string Prompt = "a photo of a red cat";

    /// <summary>Two DDIM steps: SD 1.5's DDIM ends at σ ≈ 0.029 here, so each seed's noise shows in the pixels.</summary>
    private static readonly GenerationOptions Fast = new() { Steps = 2, Scheduler = "ddim" };

    private StableDiffusionImageGenerator Generator(int maxBatchSize = 4) => new(model.Pipeline, Fast, maxBatchSize);

    private static ImageGenerationOptions WithSeed(long seed, int? count = null) =>
        new() { Count = count, AdditionalProperties = new() { [StableDiffusionImageGenerator.SeedProperty] = seed } };

    private static (DataContent Content, byte[] Rgba, int Width, int Height) Decode(AIContent content)
    {
        var data = Assert.IsType<DataContent>(content);
        Assert.Equal("image/png", data.MediaType);
        Assert.True(data.Data.Span.StartsWith(PngEncoder.Signature), "not a PNG signature");
        using var image = MLImage.CreateFromStream(new MemoryStream(data.Data.ToArray()));
        return (data, PngEncoderTests.ToRgba(image), image.Width, image.Height);
    }

    private byte[] PipelineRgba(ImagePrompt prompt, GenerationOptions options)
    {
        using var image = model.Pipeline.Generate([prompt], options)[0].Image;
        return PngEncoderTests.ToRgba(image);
    }

    [Fact]
    public async Task ReturnsPngDataContentOfTheRequestedSize()
    {
        IImageGenerator generator = Generator();
        var options = WithSeed(5);
        options.ImageSize = new System.Drawing.Size(48, 32);
        options.MediaType = "image/png";
        var response = await generator.GenerateAsync(new ImageGenerationRequest(Prompt), options);
        var (content, rgba, width, height) = Decode(Assert.Single(response.Contents));
        Assert.Equal((48, 32), (width, height));
        Assert.Equal("5.png", content.Name);
        Assert.Equal(5L, content.AdditionalProperties![StableDiffusionImageGenerator.SeedProperty]);
        Assert.Equal(PipelineRgba(new ImagePrompt(Prompt, 5), new GenerationOptions { Steps = 2, Scheduler = "ddim", Width = 48, Height = 32 }), rgba);
    }

    [Fact]
    public async Task WithoutASizeTheModelDefaultIsUsed()
    {
        var response = await Generator().GenerateImagesAsync(Prompt, WithSeed(1));
        var (_, _, width, height) = Decode(Assert.Single(response.Contents));
        Assert.Equal((model.Pipeline.DefaultSize, model.Pipeline.DefaultSize), (width, height));
    }

    [Theory]
    [InlineData(4)]   // one UNet batch
    [InlineData(2)]   // two batches: the split must not change any image
    public async Task CountThreeGivesThreeImagesWithSeedsBasePlusI(int maxBatchSize)
    {
        var response = await Generator(maxBatchSize).GenerateImagesAsync(Prompt, WithSeed(100, count: 3));
        Assert.Equal(3, response.Contents.Count);
        var images = response.Contents.Select(Decode).ToArray();
        Assert.Equal([100L, 101L, 102L], images.Select(i => (long)i.Content.AdditionalProperties![StableDiffusionImageGenerator.SeedProperty]!));
        Assert.NotEqual(images[0].Rgba, images[1].Rgba);
        Assert.NotEqual(images[1].Rgba, images[2].Rgba);
        Assert.NotEqual(images[0].Rgba, images[2].Rgba);
        for (int i = 0; i < 3; i++)
        {
            var alone = PipelineRgba(new ImagePrompt(Prompt, 100 + i), Fast);
            // Batched and single UNet runs agree to ~1e-5 in the latents, so a byte may round the other way.
            Assert.True(images[i].Rgba.Zip(alone).All(p => Math.Abs(p.First - p.Second) <= 1), $"image {i} is not seed {100 + i}'s image");
        }
    }

    [Fact]
    public async Task WithoutASeedARandomBaseIsDrawnAndReported()
    {
        var generator = Generator();
        var response = await generator.GenerateImagesAsync(Prompt, new ImageGenerationOptions { Count = 2 });
        var seeds = response.Contents.Select(c => (long)c.AdditionalProperties![StableDiffusionImageGenerator.SeedProperty]!).ToArray();
        Assert.Equal(seeds[0] + 1, seeds[1]);
        // The reported seed reproduces the image.
        var again = await generator.GenerateImagesAsync(Prompt, WithSeed(seeds[1]));
        Assert.Equal(Decode(response.Contents[1]).Rgba, Decode(Assert.Single(again.Contents)).Rgba);
    }

    [Fact]
    public async Task ModelSettingsComeFromAdditionalPropertiesInAnyReasonableForm()
    {
        // As they arrive from JSON (a web request's body): JsonElements, a numeric string.
        using var json = JsonDocument.Parse("""{ "seed": 7, "steps": "3", "guidance_scale": 1.5, "negative_prompt": "blue dog", "scheduler": "euler" }""");
        var options = new ImageGenerationOptions { AdditionalProperties = [] };
        foreach (var property in json.RootElement.EnumerateObject()) options.AdditionalProperties[property.Name] = property.Value.Clone();
        options.AdditionalProperties["unrelated_vendor_setting"] = true;   // other providers' extras are ignored
        var response = await Generator().GenerateImagesAsync(Prompt, options);
        var expected = PipelineRgba(new ImagePrompt(Prompt, 7) { NegativePrompt = "blue dog" }, new GenerationOptions { Steps = 3, GuidanceScale = 1.5f, Scheduler = "euler" });
        Assert.Equal(expected, Decode(Assert.Single(response.Contents)).Rgba);

        // The same as CLR values.
        var clr = new ImageGenerationOptions
        {
            AdditionalProperties = new() { ["seed"] = 7L, ["steps"] = 3, ["guidance_scale"] = 1.5f, ["negative_prompt"] = "blue dog", ["scheduler"] = "euler" },
        };
        Assert.Equal(expected, Decode(Assert.Single((await Generator().GenerateImagesAsync(Prompt, clr)).Contents)).Rgba);

        // DDIM's η is taken (η = 1 re-injects noise, so the image changes).
        var eta = new ImageGenerationOptions { AdditionalProperties = new() { ["seed"] = 7L, ["steps"] = 3, ["eta"] = 1.0 } };
        var withEta = Decode(Assert.Single((await Generator().GenerateImagesAsync(Prompt, eta)).Contents)).Rgba;
        Assert.Equal(PipelineRgba(new ImagePrompt(Prompt, 7), new GenerationOptions { Steps = 3, Scheduler = "ddim", Eta = 1 }), withEta);

        // So is the guidance rescale.
        var rescale = new ImageGenerationOptions { AdditionalProperties = new() { ["seed"] = 7L, ["steps"] = 3, ["guidance_rescale"] = "0.7" } };
        var withRescale = Decode(Assert.Single((await Generator().GenerateImagesAsync(Prompt, rescale)).Contents)).Rgba;
        Assert.Equal(PipelineRgba(new ImagePrompt(Prompt, 7), new GenerationOptions { Steps = 3, Scheduler = "ddim", GuidanceRescale = 0.7f }), withRescale);
    }

    [Theory]
    [InlineData(100, 100, "100×100")]
    [InlineData(64, 0, "64×0")]
    [InlineData(8192, 64, "8192×64")]
    public async Task SizeThatIsNotAMultipleOfEightIsRefused(int width, int height, string shown)
    {
        var options = new ImageGenerationOptions { ImageSize = new System.Drawing.Size(width, height) };
        var e = await Assert.ThrowsAsync<ArgumentException>(() => Generator().GenerateImagesAsync(Prompt, options));
        Assert.Contains("ImageSize", e.Message);
        Assert.Contains("a multiple of 8", e.Message);
        Assert.Contains(shown, e.Message);
    }

    [Theory]
    [InlineData("image/jpeg")]
    [InlineData("image/webp")]
    public async Task OnlyPngIsProduced(string mediaType)
    {
        var e = await Assert.ThrowsAsync<NotSupportedException>(() =>
            Generator().GenerateImagesAsync(Prompt, new ImageGenerationOptions { MediaType = mediaType }));
        Assert.Contains(mediaType, e.Message);
        Assert.Contains("image/png", e.Message);
    }

    [Fact]
    public async Task PngMayBeAskedForInAnyCase()
    {
        var response = await Generator().GenerateImagesAsync(Prompt, new ImageGenerationOptions { MediaType = "IMAGE/PNG", AdditionalProperties = new() { ["seed"] = 1 } });
        Decode(Assert.Single(response.Contents));
    }

    public static TheoryData<string, object, string> BadProperties => new()
    {
        { "steps", 0, "must be from 1 to 1000" },
        { "steps", "many", "must be a whole number" },
        { "steps", 2.5, "must be a whole number" },
        { "seed", "abc", "must be a whole number" },
        { "guidance_scale", "high", "must be a number" },
        { "guidance_scale", double.PositiveInfinity, "must be a finite number" },
        { "eta", 1.5, "must be from 0 to 1" },
        { "guidance_rescale", -0.1, "must be from 0 to 1" },
        { "negative_prompt", 42, "must be a string" },
        { "scheduler", 3, "must be a string" },
    };

    [Theory]
    [MemberData(nameof(BadProperties))]
    public async Task BadAdditionalPropertyIsNamed(string key, object value, string problem)
    {
        var options = new ImageGenerationOptions { AdditionalProperties = new() { [key] = value } };
        var e = await Assert.ThrowsAnyAsync<ArgumentException>(() => Generator().GenerateImagesAsync(Prompt, options));
        Assert.Contains($"AdditionalProperties[\"{key}\"]", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public async Task UnknownSchedulerFailsWithThePipelinesMessage()
    {
        var options = new ImageGenerationOptions { AdditionalProperties = new() { ["scheduler"] = "no-such-scheduler" } };
        var e = await Assert.ThrowsAsync<ArgumentException>(() => Generator().GenerateImagesAsync(Prompt, options));
        Assert.Contains("no-such-scheduler", e.Message);
    }

    [Fact]
    public async Task BadRequestsAreRefused()
    {
        var count = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Generator().GenerateImagesAsync(Prompt, new ImageGenerationOptions { Count = 0 }));
        Assert.Contains("Count", count.Message);
        await Assert.ThrowsAsync<ArgumentNullException>(() => Generator().GenerateAsync(null!));
        await Assert.ThrowsAsync<ArgumentException>(() => Generator().GenerateAsync(new ImageGenerationRequest()));
        var original = new DataContent(new byte[] { 1 }, "image/png");
        var edit = await Assert.ThrowsAsync<NotSupportedException>(() => Generator().GenerateAsync(new ImageGenerationRequest(Prompt, [original])));
        Assert.Contains("OriginalImages", edit.Message);
    }

    [Fact]
    public async Task CancelledTokenThrowsBeforeAnyWork()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        long calls = model.Pipeline.UNet.RunCount;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Generator().GenerateImagesAsync(Prompt, WithSeed(1), cts.Token));
        Assert.Equal(calls, model.Pipeline.UNet.RunCount);
    }

    [Fact]
    public async Task CancellationDuringDenoisingStopsTheRequestAndLeavesThePipelineUsable()
    {
        using var cts = new CancellationTokenSource();
        long before = model.Pipeline.UNet.RunCount;
        // Heun at 1000 steps is 1999 UNet calls on 192×192: seconds of work, so the watcher below sees the first
        // call long before the last even on a loaded machine. It watches from its own thread rather than timer
        // ticks, which a busy thread pool can delay past the whole run.
        var options = new ImageGenerationOptions
        {
            ImageSize = new System.Drawing.Size(192, 192),
            AdditionalProperties = new() { ["seed"] = 1, ["steps"] = 1000, ["scheduler"] = "heun" },
        };
        var generation = Generator().GenerateImagesAsync(Prompt, options, cts.Token);
        var watcher = new Thread(() =>
        {
            while (model.Pipeline.UNet.RunCount == before && !generation.IsCompleted) Thread.Yield();
            cts.Cancel();
        });
        watcher.Start();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => generation);
        watcher.Join();
        Assert.True(model.Pipeline.UNet.RunCount - before < 1999, "the request ran to the end");
        Decode(Assert.Single((await Generator().GenerateImagesAsync(Prompt, WithSeed(2))).Contents));
    }

    [Fact]
    public async Task AHugeCountRunsBatchByBatchUntilCancelled()
    {
        // Memory follows the batch size, not Count: nothing is sized by int.MaxValue up front.
        using var cts = new CancellationTokenSource();
        long before = model.Pipeline.UNet.RunCount;
        var generation = Generator(maxBatchSize: 2).GenerateImagesAsync(Prompt, WithSeed(1, count: int.MaxValue), cts.Token);
        var watcher = new Thread(() =>
        {
            while (model.Pipeline.UNet.RunCount - before < 4 && !generation.IsCompleted) Thread.Yield();   // two batches of two steps
            cts.Cancel();
        });
        watcher.Start();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => generation);
        watcher.Join();
    }

    [Fact]
    public async Task CancellationAtAnyMomentIsReportedAsCancellation()
    {
        // Cancel after a spread of delays, so the token fires in text encoding, the UNet loop, decoding or PNG
        // writing: each request either completes or throws OperationCanceledException, never ONNX Runtime's own
        // "terminate flag" error.
        var options = new ImageGenerationOptions { Count = 8, AdditionalProperties = new() { ["seed"] = 1, ["steps"] = 2 } };
        int cancelled = 0;
        for (int delay = 0; delay < 40; delay += 2)
        {
            using var cts = new CancellationTokenSource();
            var generation = Generator(maxBatchSize: 8).GenerateImagesAsync(Prompt, options, cts.Token);
            var watch = System.Diagnostics.Stopwatch.StartNew();
            while (watch.ElapsedMilliseconds < delay && !generation.IsCompleted) Thread.SpinWait(100);
            cts.Cancel();
            try
            {
                Assert.Equal(8, (await generation).Contents.Count);
            }
            catch (OperationCanceledException)
            {
                cancelled++;
            }
        }
        Assert.True(cancelled > 0, "no request was cancelled");
    }

    [Fact]
    public void GetServiceGivesMetadataThePipelineAndItself()
    {
        IImageGenerator generator = Generator();
        var metadata = generator.GetService<ImageGeneratorMetadata>();
        Assert.NotNull(metadata);
        Assert.Equal("MLNet.Diffusion", metadata.ProviderName);
        Assert.Equal(model.Path, metadata.DefaultModelId);
        Assert.True(metadata.ProviderUri!.IsFile);
        Assert.Equal(model.Path, metadata.ProviderUri.LocalPath);
        Assert.Same(model.Pipeline, generator.GetService<StableDiffusionPipeline>());
        Assert.Same(generator, generator.GetService<StableDiffusionImageGenerator>());
        Assert.Null(generator.GetService<ImageGeneratorMetadata>("some key"));
        Assert.Null(generator.GetService<string>());
    }

    [Fact]
    public void DisposingTheGeneratorLeavesTheSharedPipelineAlone()
    {
        Generator().Dispose();
        model.Pipeline.Generate(Prompt, 0, Fast).Image.Dispose();
    }
}

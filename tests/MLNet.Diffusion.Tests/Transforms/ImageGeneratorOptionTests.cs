#pragma warning disable MEAI001 // Microsoft.Extensions.AI's IImageGenerator is marked experimental.

using Microsoft.Extensions.AI;
using Microsoft.ML;
using static MLNet.Diffusion.Tests.Transforms.TransformTestKit;

namespace MLNet.Diffusion.Tests.Transforms;

/// <summary><c>GenerateImages</c> with <see cref="DiffusionOptions.ImageGenerator"/>: the batches go to the generator instead of the local pipeline.</summary>
public class ImageGeneratorOptionTests(TransformModelFixture model) : IClassFixture<TransformModelFixture>
{
    private static FullRow[] Rows(int count) =>
        [.. Enumerable.Range(0, count).Select(i => new FullRow
        {
            Prompt = Prompts[i % Prompts.Length], Negative = i % 3 == 0 ? "blue" : "", Seed = 500 + 11 * i, Guidance = i % 2 == 0 ? float.NaN : 1.5f, Steps = i % 4 == 1 ? 2 : 0,
        })];

    private DiffusionOptions Options(IImageGenerator? generator, int batchSize = 3)
    {
        var options = TransformTestKit.Options(model.Path, batchSize);
        options.NegativePromptColumnName = nameof(FullRow.Negative);
        options.SeedColumnName = nameof(FullRow.Seed);
        options.GuidanceScaleColumnName = nameof(FullRow.Guidance);
        options.StepsColumnName = nameof(FullRow.Steps);
        options.ImageGenerator = generator;
        return options;
    }

    private static List<byte[]> Generate(IEnumerable<FullRow> rows, DiffusionOptions options)
    {
        var ml = new MLContext();
        var table = ml.Data.LoadFromEnumerable(rows);
        using var transformer = ml.Transforms.GenerateImages(options).Fit(table);
        return ReadImages(transformer.Transform(table));
    }

    [Fact]
    public void ImagesFromAGeneratorOverTheSameModelEqualTheLocalOnesWithEveryPerRowSettingCarried()
    {
        var rows = Rows(7);
        using var pipeline = StableDiffusionPipeline.Load(model.Path, new DiffusionRuntimeOptions { IntraOpThreads = 1 });
        using var generator = new StableDiffusionImageGenerator(pipeline);

        var local = Generate(rows, Options(null));
        var remote = Generate(rows, Options(generator));

        Assert.Equal(local.Count, remote.Count);
        for (int i = 0; i < local.Count; i++) Assert.True(local[i].AsSpan().SequenceEqual(remote[i]), $"row {i}: the generator's pixels differ from the local pipeline's");
    }

    [Fact]
    public void EveryImageOfABatchIsInFlightTogetherAndEachRequestCarriesItsRowsSeedAndSettings()
    {
        var recorder = new RecordingGenerator();
        var rows = Rows(5);

        Generate(rows, Options(recorder, batchSize: 5));

        Assert.Equal(5, recorder.MaxInFlight);
        var seen = recorder.Requests.OrderBy(r => (long)r.Options.AdditionalProperties![StableDiffusionImageGenerator.SeedProperty]!).ToArray();
        for (int i = 0; i < rows.Length; i++)
        {
            var extra = seen[i].Options.AdditionalProperties!;
            Assert.Equal(rows[i].Prompt, seen[i].Prompt);
            Assert.Equal(rows[i].Seed, extra[StableDiffusionImageGenerator.SeedProperty]);
            Assert.Equal(rows[i].Steps == 0 ? 3 : rows[i].Steps, extra[StableDiffusionImageGenerator.StepsProperty]);
            Assert.Equal(float.IsNaN(rows[i].Guidance) ? 3f : rows[i].Guidance, extra[StableDiffusionImageGenerator.GuidanceScaleProperty]);
            Assert.Equal(rows[i].Negative.Length == 0 ? null : rows[i].Negative, extra.TryGetValue(StableDiffusionImageGenerator.NegativePromptProperty, out var n) ? n : null);
            Assert.Equal("ddim", extra[StableDiffusionImageGenerator.SchedulerProperty]);
            Assert.Equal(new System.Drawing.Size(64, 64), seen[i].Options.ImageSize);
        }
    }

    [Fact]
    public void AGeneratorThatFailsARowIsReportedNamingTheDataRowAndTheGeneratorsMessage()
    {
        var rows = Rows(5);
        var failing = new RecordingGenerator { FailPrompt = rows[3].Prompt };

        var error = Assert.Throws<InvalidOperationException>(() => Generate(rows, Options(failing)));

        Assert.Contains("Data row 4", error.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("no capacity for this prompt", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OutputsAndInputsAGeneratorCannotServeAreRefusedNamingTheColumn()
    {
        var generator = new RecordingGenerator();
        var latents = Options(generator);
        latents.LatentsColumnName = "L";
        var init = Options(generator);
        init.InitImageColumnName = "Init";
        var ml = new MLContext();

        Assert.Contains("'L'", Assert.Throws<ArgumentException>(() => ml.Transforms.GenerateImages(latents)).Message, StringComparison.Ordinal);
        Assert.Contains("'Init'", Assert.Throws<ArgumentException>(() => ml.Transforms.GenerateImages(init)).Message, StringComparison.Ordinal);
        Assert.Contains("ImageGenerator", Assert.Throws<ArgumentException>(() => ml.Transforms.DecodeLatents(Options(generator))).Message, StringComparison.Ordinal);
    }

    /// <summary>Answers every request with a 64×64 PNG after a short wait, recording the requests and how many were in flight at once.</summary>
    private sealed class RecordingGenerator : IImageGenerator
    {
        private int _inFlight;
        private readonly object _gate = new();

        public List<(string Prompt, ImageGenerationOptions Options)> Requests { get; } = [];
        public int MaxInFlight { get; private set; }
        public string? FailPrompt { get; init; }

        public async Task<ImageGenerationResponse> GenerateAsync(ImageGenerationRequest request, ImageGenerationOptions? options = null, CancellationToken cancellationToken = default)
        {
            lock (_gate)
            {
                Requests.Add((request.Prompt!, options!));
                MaxInFlight = Math.Max(MaxInFlight, ++_inFlight);
            }
            try
            {
                await Task.Delay(200, cancellationToken);
                if (request.Prompt == FailPrompt) throw new InvalidOperationException("no capacity for this prompt");
                using var image = Microsoft.ML.Data.MLImage.CreateFromPixels(64, 64, Microsoft.ML.Data.MLPixelFormat.Rgba32, new byte[64 * 64 * 4]);
                return new ImageGenerationResponse([new DataContent(MLNet.Diffusion.Hosting.PngEncoder.Encode(image), "image/png")]);
            }
            finally
            {
                lock (_gate) _inFlight--;
            }
        }

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose() { }
    }
}

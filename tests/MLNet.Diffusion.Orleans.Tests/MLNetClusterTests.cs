#pragma warning disable MEAI001 // Microsoft.Extensions.AI's IImageGenerator is marked experimental.

using Microsoft.ML;
using Microsoft.ML.Data;
using Orleans.TestingHost;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary>A two-silo cluster of demo-model workers, shared by <see cref="MLNetClusterTests"/>.</summary>
public sealed class TwoSiloCluster : IAsyncLifetime
{
    public TestCluster Cluster { get; private set; } = null!;

    public async Task InitializeAsync() => Cluster = await DiffusionCluster.StartAsync(2);

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary><c>GenerateImages</c> over an <c>IDataView</c> with <see cref="DiffusionOptions.ImageGenerator"/> set to a <see cref="ClusterImageGenerator"/>.</summary>
public sealed class MLNetClusterTests(TwoSiloCluster fixture) : IClassFixture<TwoSiloCluster>
{
    private sealed class Request
    {
        public string Prompt { get; set; } = "";
        public long Seed { get; set; }
        public float Guidance { get; set; } = float.NaN;
    }

    private static Request[] Requests(int count) =>
        [.. DemoRows.Make(count).Select(r => new Request { Prompt = r.Prompt, Seed = r.Seed * 7 + 3 })];

    private static DiffusionOptions Options(Microsoft.Extensions.AI.IImageGenerator? generator) => new()
    {
        ModelPath = DemoRows.Model, Steps = DemoRows.Steps, BatchSize = 8, SeedColumnName = nameof(Request.Seed),
        GuidanceScaleColumnName = nameof(Request.Guidance), ImageGenerator = generator,
    };

    private ClusterImageGenerator Generator() => new(fixture.Cluster.Client, DemoRows.Model) { BatchSize = 3, PollInterval = TimeSpan.FromMilliseconds(200) };

    /// <summary>The image column's pixels (format, then bytes) and PNG encoding, row by row.</summary>
    private static List<(MLPixelFormat Format, byte[] Pixels, byte[] Png)> Images(MLContext ml, IEnumerable<Request> rows, DiffusionOptions options)
    {
        var input = ml.Data.LoadFromEnumerable(rows);
        using var model = ml.Transforms.GenerateImages("Image", nameof(Request.Prompt), options).Fit(input);
        var view = model.Transform(input);
        var column = view.Schema["Image"];
        using var cursor = view.GetRowCursor([column]);
        var getter = cursor.GetGetter<MLImage>(column);
        var images = new List<(MLPixelFormat, byte[], byte[])>();
        MLImage image = null!;
        while (cursor.MoveNext())
        {
            getter(ref image);
            images.Add((image.PixelFormat, image.Pixels.ToArray(), PngBytes.Of(image)));
        }
        return images;
    }

    [Fact]
    public async Task GenerateImages_over_20_rows_on_a_two_silo_cluster_gives_the_in_process_pixels_and_png_bytes()
    {
        var ml = new MLContext(seed: 0);
        var rows = Requests(20);
        rows[3].Guidance = 3f; // a per-row setting travels with its row
        using var generator = Generator();

        var local = Images(ml, rows, Options(null));
        var clustered = await Task.Run(() => Images(ml, rows, Options(generator)));

        Assert.Equal(20, clustered.Count);
        for (int i = 0; i < rows.Length; i++)
        {
            Assert.Equal(local[i].Format, clustered[i].Format);
            Assert.True(local[i].Pixels.AsSpan().SequenceEqual(clustered[i].Pixels), $"row {i}: the cluster's pixels differ from the in-process run's");
            Assert.True(local[i].Png.AsSpan().SequenceEqual(clustered[i].Png), $"row {i}: the cluster's PNG differs from the in-process run's");
        }
        var withoutOwnGuidance = Options(null);
        withoutOwnGuidance.GuidanceScaleColumnName = null;
        Assert.False(local[3].Pixels.AsSpan().SequenceEqual(Images(ml, [rows[3]], withoutOwnGuidance)[0].Pixels),
            "row 3's own guidance scale made no difference: the test would not see it lost on the way");
    }

    [Fact]
    public void A_latents_or_embedding_column_is_refused_naming_the_column_when_an_image_generator_is_set()
    {
        var ml = new MLContext(seed: 0);
        using var generator = Generator();
        var latents = Options(generator);
        latents.LatentsColumnName = "MyLatents";
        var embeddings = Options(generator);
        embeddings.PromptEmbeddingColumnName = "MyEmbeddings";

        var latentsError = Assert.Throws<ArgumentException>(() => ml.Transforms.GenerateImages("Image", nameof(Request.Prompt), latents));
        var embeddingsError = Assert.Throws<ArgumentException>(() => ml.Transforms.GenerateImages("Image", nameof(Request.Prompt), embeddings));
        var stageError = Assert.Throws<ArgumentException>(() => ml.Transforms.EncodePrompts("PromptEmbedding", nameof(Request.Prompt), options: Options(generator)));

        Assert.Contains("'MyLatents'", latentsError.Message, StringComparison.Ordinal);
        Assert.Contains("ImageGenerator", latentsError.Message, StringComparison.Ordinal);
        Assert.Contains("'MyEmbeddings'", embeddingsError.Message, StringComparison.Ordinal);
        Assert.Contains("ImageGenerator", stageError.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_row_the_cluster_fails_is_reported_naming_its_data_row()
    {
        var ml = new MLContext(seed: 0);
        var rows = Requests(6);
        rows[4].Guidance = float.MaxValue; // finite, so accepted here; the worker's latents overflow and it fails the row
        using var generator = Generator();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => Task.Run(() => Images(ml, rows, Options(generator))));

        Assert.Contains("data row 5", error.Message, StringComparison.Ordinal);
        Assert.Contains("Non-finite", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cancelling_every_request_of_a_job_cancels_the_job_on_the_cluster()
    {
        using var generator = Generator();
        using var cancel = new CancellationTokenSource();
        var options = new Microsoft.Extensions.AI.ImageGenerationOptions
        {
            Count = 200,
            AdditionalProperties = new() { [StableDiffusionImageGenerator.SeedProperty] = 1L, [StableDiffusionImageGenerator.StepsProperty] = DemoRows.Steps },
        };
        var registry = fixture.Cluster.Client.GetGrain<IJobRegistryGrain>(0);
        var before = (await registry.GetActive()).ToHashSet(); // another test's finished job may still be leaving the list

        var request = generator.GenerateAsync(new Microsoft.Extensions.AI.ImageGenerationRequest("a red circle"), options, cancel.Token);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string[] started;
        while ((started = [.. (await registry.GetActive()).Where(id => !before.Contains(id))]).Length == 0) // the job has started
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "the job never started");
            await Task.Delay(10);
        }
        var job = fixture.Cluster.Client.GetGrain<IGenerationJobGrain>(Assert.Single(started));
        cancel.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        JobProgress progress;
        while ((progress = await job.GetProgress()).Status == JobStatus.Running)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(40), $"the job was not cancelled: {progress}");
            await Task.Delay(20);
        }
        Assert.Equal(JobStatus.Cancelled, progress.Status);
        Assert.True(progress.CommittedRows < 200, progress.ToString());
    }
}

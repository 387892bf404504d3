#pragma warning disable MEAI001 // Microsoft.Extensions.AI's IImageGenerator is marked experimental.

using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.AI;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Orleans.Tests;

/// <summary><see cref="ClusterImageGenerator"/> on its own: failures of the cluster, connecting, and what it refuses.</summary>
public sealed class ClusterImageGeneratorTests(ITestOutputHelper output)
{
    private static ImageGenerationOptions OptionsOf(long seed, int count) => new()
    {
        Count = count,
        AdditionalProperties = new() { [StableDiffusionImageGenerator.SeedProperty] = seed, [StableDiffusionImageGenerator.StepsProperty] = DemoRows.Steps },
    };

    [Fact]
    public async Task A_silo_killed_while_it_holds_a_job_loses_no_image_and_the_images_equal_the_single_process_ones()
    {
        await using var cluster = await DiffusionCluster.StartAsync(3);
        using var generator = new ClusterImageGenerator(cluster.Client, DemoRows.Model) { BatchSize = 2, PollInterval = TimeSpan.FromMilliseconds(100), LeaseTimeout = TimeSpan.FromSeconds(10) };
        var rows = new List<GenerationRow>();
        var requests = new List<(int FirstRow, Task<ImageGenerationResponse> Response)>();
        var registry = cluster.Client.GetGrain<IJobRegistryGrain>(0);
        var secondaries = cluster.SecondarySilos.ToDictionary(s => s.SiloAddress.ToString());
        var clock = Stopwatch.StartNew();
        global::Orleans.TestingHost.SiloHandle? victim = null;
        // Waves of 8 requests of 3 images (one job each, placed on some silo) until a job runs on a silo that can be killed
        // (never the primary, which holds localhost membership): that silo is killed while the job is under way.
        for (int wave = 0; victim is null; wave++)
        {
            Assert.True(wave < 10, "no job was placed on a secondary silo in 10 waves");
            var known = (await registry.GetActive()).ToHashSet();
            var waveRequests = new List<Task<ImageGenerationResponse>>();
            for (int r = 0; r < 8; r++)
            {
                int first = rows.Count;
                var prompt = DemoRows.Make(first + 1)[first].Prompt;
                for (int k = 0; k < 3; k++) rows.Add(new GenerationRow { Row = first + k, Prompt = prompt, Seed = 5000 + first + k });
                var response = generator.GenerateAsync(new ImageGenerationRequest(prompt), OptionsOf(5000 + first, 3));
                requests.Add((first, response));
                waveRequests.Add(response);
            }
            var waveDone = Task.WhenAll(waveRequests);
            while (victim is null && !waveDone.IsCompleted)
            {
                foreach (var id in (await registry.GetActive()).Where(id => !known.Contains(id)))
                {
                    var progress = await cluster.Client.GetGrain<IGenerationJobGrain>(id).GetProgress();
                    if (progress.Status == JobStatus.Running && secondaries.TryGetValue(progress.Host, out var silo))
                    {
                        victim = silo;
                        output.WriteLine($"wave {wave}: killing {progress.Host}, holding job {id} at {progress}");
                    }
                }
                await Task.Delay(10);
            }
            if (victim is null) await waveDone.WaitAsync(TimeSpan.FromSeconds(60));
        }
        await cluster.KillSiloAsync(victim);

        var reference = DemoRows.Reference(rows, batchSize: 5);
        Assert.Equal(Enumerable.Range(0, rows.Count), rows.Select(r => r.Row));
        foreach (var (first, response) in requests)
        {
            var images = (await response.WaitAsync(TimeSpan.FromSeconds(120))).Contents.Cast<DataContent>().ToArray();
            Assert.Equal(3, images.Length);
            for (int k = 0; k < 3; k++)
            {
                Assert.Equal(rows[first + k].Seed, images[k].AdditionalProperties![StableDiffusionImageGenerator.SeedProperty]);
                Assert.True(reference[first + k].AsSpan().SequenceEqual(images[k].Data.Span), $"row {first + k}'s image differs from the single-process one");
            }
        }
        output.WriteLine($"all {rows.Count} images in {clock.Elapsed.TotalSeconds:F1} s after the search began");
    }

    [Fact]
    public async Task ConnectAsync_reaches_a_localhost_worker_and_an_unreachable_cluster_is_reported_within_the_timeout()
    {
        int siloPort = FreePort(), gatewayPort = FreePort();
        using var worker = WorkerHost.Create(new WorkerHostOptions { SiloPort = siloPort, GatewayPort = gatewayPort });
        await worker.StartAsync();
        try
        {
            using (var generator = await ClusterImageGenerator.ConnectAsync(ClusterConnection.Parse($"localhost:{gatewayPort.ToString(CultureInfo.InvariantCulture)}"), DemoRows.Model))
            {
                var response = await generator.GenerateAsync(new ImageGenerationRequest(DemoRows.Make(1)[0].Prompt), OptionsOf(DemoRows.Make(1)[0].Seed, 1)).WaitAsync(TimeSpan.FromSeconds(60));
                var image = Assert.IsType<DataContent>(Assert.Single(response.Contents));
                Assert.True(DemoRows.Reference(DemoRows.Make(1), 1)[0].AsSpan().SequenceEqual(image.Data.Span));
            }
        }
        finally
        {
            await worker.StopAsync();
        }

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<ClusterUnreachableException>(() =>
            ClusterImageGenerator.ConnectAsync(ClusterConnection.Parse($"localhost:{FreePort().ToString(CultureInfo.InvariantCulture)}"), DemoRows.Model, TimeSpan.FromSeconds(3)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");
        Assert.Contains("localhost:", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Settings_a_cluster_job_does_not_carry_are_refused_naming_the_property()
    {
        await using var cluster = await DiffusionCluster.StartAsync(1, workers: false);
        using var generator = new ClusterImageGenerator(cluster.Client, DemoRows.Model);
        var noise = new ImageGenerationOptions { AdditionalProperties = new() { [StableDiffusionImageGenerator.NoiseProperty] = "torch" } };
        var steps = new ImageGenerationOptions { AdditionalProperties = new() { [StableDiffusionImageGenerator.StepsProperty] = "many" } };

        var refused = await Assert.ThrowsAsync<NotSupportedException>(() => generator.GenerateAsync(new ImageGenerationRequest("a"), noise));
        var wrong = await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync(new ImageGenerationRequest("a"), steps));

        Assert.Contains("\"noise\"", refused.Message, StringComparison.Ordinal);
        Assert.Contains("\"steps\"", wrong.Message, StringComparison.Ordinal);
        Assert.Contains("many", wrong.Message, StringComparison.Ordinal);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

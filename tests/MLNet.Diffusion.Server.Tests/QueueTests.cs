using System.Diagnostics.Metrics;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using MLNet.Diffusion.Server.Queue;

namespace MLNet.Diffusion.Server.Tests;

/// <summary>The bounded queue: 429 beyond the backlog, cancellation when the client goes away, progress, interrupt, metrics.</summary>
public sealed class QueueTests
{
    /// <summary>A request that runs for many seconds even on a quiet, fast machine (8 batches of 8 images of 900 demo steps;
    /// one batch of 8 took under a second there, so the tests raced it), so that the tests can see it running; each test
    /// interrupts or cancels it long before it ends.</summary>
    private static string Long(string taskId) => $$"""{"prompt": "a long one", "steps": 900, "batch_size": 8, "n_iter": 8, "seed": 1, "force_task_id": "{{taskId}}"}""";

    /// <summary>The images <see cref="Long"/> asks for.</summary>
    private const int LongImages = 64;

    [Fact]
    public async Task Beyond_the_running_slot_and_the_backlog_a_request_is_a_429_with_Retry_After()
    {
        await using var host = await ServerHost.StartAsync(o => { o.MaxConcurrency = 1; o.MaxQueueLength = 1; o.MaxSteps = 1000; o.MaxImagesPerRequest = LongImages; o.RetryAfterSeconds = 7; });
        var running = host.PostJsonAsync("/sdapi/v1/txt2img", Long("first"));
        await ServerHost.WaitUntilAsync(() => host.Queue.Counts.Running == 1, TimeSpan.FromSeconds(30), "the first request to run");
        var waiting = host.PostJsonAsync("/sdapi/v1/txt2img", """{"prompt": "second", "steps": 1, "width": 256, "height": 256}""");
        await ServerHost.WaitUntilAsync(() => host.Queue.Counts.Waiting == 1, TimeSpan.FromSeconds(10), "the second request to wait");

        var refused = await host.PostJsonAsync("/v1/images/generations", """{"prompt": "third", "steps": 1}""");
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(7), refused.Headers.RetryAfter?.Delta);
        var error = (await ServerHost.JsonAsync(refused)).GetProperty("error");
        Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());

        // The progress of the running job, then A1111's interrupt: it answers with the images of the batches it finished
        // (not all of them), and the waiting request runs.
        var progress = await ServerHost.JsonAsync(await host.Client.GetAsync("/sdapi/v1/progress?id_task=first"));
        Assert.Equal("first", progress.GetProperty("state").GetProperty("job").GetString());
        Assert.Equal(2, progress.GetProperty("state").GetProperty("job_count").GetInt32());
        await host.Client.PostAsync("/sdapi/v1/interrupt", null);
        var first = await ServerHost.JsonAsync(await running);
        Assert.InRange(first.GetProperty("images").GetArrayLength(), 0, LongImages - 1);
        Assert.True(JsonDocument.Parse(first.GetProperty("info").GetString()!).RootElement.GetProperty("interrupted").GetBoolean());
        var second = await waiting;
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        // The slot is given back as the response ends, which the client may see first.
        await ServerHost.WaitUntilAsync(() => host.Queue.Counts == (0, 0), TimeSpan.FromSeconds(10), "the queue to empty");
    }

    [Fact]
    public async Task A_client_that_goes_away_cancels_its_generation_at_the_next_UNet_call_and_frees_the_slot()
    {
        await using var host = await ServerHost.StartAsync(o => { o.MaxSteps = 1000; o.MaxImagesPerRequest = LongImages; });
        using var listener = new CountingListener(host, "mlnet_diffusion.server.cancelled");
        using var abort = new CancellationTokenSource();
        var request = host.PostJsonAsync("/sdapi/v1/txt2img", Long("abandoned"), abort.Token);
        await ServerHost.WaitUntilAsync(() => host.Queue.Jobs.FirstOrDefault()?.Sampling.Step > 2, TimeSpan.FromSeconds(30), "denoising to start");
        var job = host.Queue.Jobs.Single();

        abort.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        await ServerHost.WaitUntilAsync(() => host.Queue.Counts == (0, 0), TimeSpan.FromSeconds(10), "the job to leave the queue");

        Assert.True(job.Batch < job.Batches - 1 || job.Sampling.Step < 900, $"the job ran to step {job.Sampling.Step} of 900 of its last batch");
        Assert.Equal(1, listener.Total);
        // The slot is free: the next request runs at once.
        var next = await host.PostJsonAsync("/sdapi/v1/txt2img", """{"prompt": "next", "steps": 1, "width": 256, "height": 256}""");
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }

    [Fact]
    public async Task Metrics_count_images_and_time_every_UNet_call()
    {
        await using var host = await ServerHost.StartAsync();
        using var images = new CountingListener(host, "mlnet_diffusion.server.images");
        using var steps = new CountingListener(host, "mlnet_diffusion.server.step.duration");
        var response = await host.PostJsonAsync("/sdapi/v1/txt2img", """{"prompt": "x", "steps": 3, "batch_size": 2, "sampler_name": "Euler"}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, images.Total);
        Assert.Equal(3, steps.Measurements);
    }

    /// <summary>Listens to one instrument of <paramref name="host"/>'s meter (not those of servers other tests run at the same time).</summary>
    private sealed class CountingListener : IDisposable
    {
        private readonly MeterListener _listener = new();
        private double _total;
        private int _measurements;

        public CountingListener(ServerHost host, string instrument)
        {
            var factory = host.Services.GetRequiredService<IMeterFactory>();
            _listener.InstrumentPublished = (i, l) =>
            {
                if (i.Meter.Name == ServerMetrics.MeterName && i.Meter.Scope == factory && i.Name == instrument) l.EnableMeasurementEvents(i);
            };
            _listener.SetMeasurementEventCallback<long>((_, v, _, _) => { Interlocked.Increment(ref _measurements); Add(v); });
            _listener.SetMeasurementEventCallback<double>((_, v, _, _) => { Interlocked.Increment(ref _measurements); Add(v); });
            _listener.Start();
        }

        public double Total => Volatile.Read(ref _total);

        public int Measurements => Volatile.Read(ref _measurements);

        private void Add(double value)
        {
            double seen, sum;
            do { seen = _total; sum = seen + value; } while (Interlocked.CompareExchange(ref _total, sum, seen) != seen);
        }

        public void Dispose() => _listener.Dispose();
    }
}

using System.Diagnostics.Metrics;

namespace MLNet.Diffusion.Server.Queue;

/// <summary>
/// The server's instruments on the <see cref="System.Diagnostics.Metrics.Meter"/> named <see cref="MeterName"/>, which
/// OpenTelemetry (<c>AddMeter("MLNet.Diffusion.Server")</c>), <c>dotnet-counters</c> or a <see cref="MeterListener"/> can
/// subscribe to. Images per second is the rate of <c>mlnet_diffusion.server.images</c>.
/// </summary>
internal sealed class ServerMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "MLNet.Diffusion.Server";

    private readonly Counter<long> _images;
    private readonly Counter<long> _rejected;
    private readonly Counter<long> _cancelled;
    private readonly Histogram<double> _stepTime;
    private readonly Histogram<double> _requestTime;

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/>; the gauges read <paramref name="queue"/>.</summary>
    public ServerMetrics(IMeterFactory meterFactory, Func<(int Running, int Waiting)> queue)
    {
        var meter = meterFactory.Create(MeterName);
        _images = meter.CreateCounter<long>("mlnet_diffusion.server.images", "{image}", "Images generated and sent.");
        _rejected = meter.CreateCounter<long>("mlnet_diffusion.server.rejected", "{request}", "Requests refused with 429 because the queue was full.");
        _cancelled = meter.CreateCounter<long>("mlnet_diffusion.server.cancelled", "{request}", "Generations stopped by a client that went away or by /sdapi/v1/interrupt.");
        _stepTime = meter.CreateHistogram<double>("mlnet_diffusion.server.step.duration", "s", "Time of one denoising model call (a UNet call and its scheduler step; some schedulers call the UNet more than once per step).");
        _requestTime = meter.CreateHistogram<double>("mlnet_diffusion.server.generation.duration", "s", "Time from a request's admission to its last image, waiting included.");
        meter.CreateObservableGauge("mlnet_diffusion.server.queue.length", () => queue().Waiting, "{request}", "Requests waiting for a free generation slot.");
        meter.CreateObservableGauge("mlnet_diffusion.server.queue.running", () => queue().Running, "{request}", "Generations running.");
    }

    /// <summary>Counts <paramref name="count"/> images generated with <paramref name="model"/>.</summary>
    public void ImagesGenerated(int count, string model) => _images.Add(count, new KeyValuePair<string, object?>("model", model));

    /// <summary>Counts one request refused because the queue was full.</summary>
    public void Rejected() => _rejected.Add(1);

    /// <summary>Counts one generation stopped before its end.</summary>
    public void Cancelled() => _cancelled.Add(1);

    /// <summary>Records one denoising step's time.</summary>
    public void Step(TimeSpan elapsed) => _stepTime.Record(elapsed.TotalSeconds);

    /// <summary>Records a finished request's time.</summary>
    public void Request(TimeSpan elapsed) => _requestTime.Record(elapsed.TotalSeconds);
}

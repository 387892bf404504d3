using System.Diagnostics;

namespace MLNet.Diffusion.Server.Queue;

/// <summary>
/// One request's place in the queue and its progress, which <c>/sdapi/v1/progress</c> reports: the batches of its images
/// (A1111's <c>job_no</c> of <c>job_count</c>) and the denoising step within the current batch. The engine reports
/// through <see cref="IProgress{T}.Report"/> on the thread that runs it; the fields are read from other threads, so each
/// is written once per report as a whole value.
/// </summary>
internal sealed class GenerationJob : IProgress<DiffusionProgress>
{
    private readonly ServerMetrics _metrics;
    private readonly CancellationTokenSource _interrupt = new();
    private long _lastStepTicks;
    private volatile int _batch, _step, _steps;
    private volatile bool _started;

    /// <summary>A job for <paramref name="batches"/> engine calls, named <paramref name="id"/>.</summary>
    public GenerationJob(string id, int batches, ServerMetrics metrics)
    {
        Id = id;
        Batches = batches;
        _metrics = metrics;
    }

    /// <summary>The job's id: A1111's <c>force_task_id</c> when the request gave one, else a new one.</summary>
    public string Id { get; }

    /// <summary>When the job was admitted (A1111's <c>job_timestamp</c>).</summary>
    public DateTime AdmittedUtc { get; } = DateTime.UtcNow;

    /// <summary>How many engine calls (batches) the job makes.</summary>
    public int Batches { get; }

    /// <summary>The clock since admission.</summary>
    public Stopwatch Clock { get; } = Stopwatch.StartNew();

    /// <summary>The images finished so far, PNG bytes and seed (written by the worker running the job).</summary>
    public List<(byte[] Png, long Seed)> Finished { get; } = [];

    /// <summary>Whether the job holds a generation slot (else it waits).</summary>
    public bool Started => _started;

    /// <summary>The batch being generated, from 0.</summary>
    public int Batch => _batch;

    /// <summary>The denoising step reached in the current batch, and the batch's step count (0 before the first).</summary>
    public (int Step, int Steps) Sampling => (_step, _steps);

    /// <summary>Whether <c>/sdapi/v1/interrupt</c> stopped the job.</summary>
    public bool Interrupted => _interrupt.IsCancellationRequested;

    /// <summary>Cancelled by <see cref="Interrupt"/>.</summary>
    public CancellationToken InterruptToken => _interrupt.Token;

    /// <summary>The fraction done, 0 to 1: finished batches plus the current one's steps.</summary>
    public double Fraction
    {
        get
        {
            var (step, steps) = Sampling;
            double inBatch = steps > 0 ? (double)step / steps : 0;
            return Math.Clamp((_batch + inBatch) / Batches, 0, 1);
        }
    }

    /// <summary>Marks the job as holding a slot.</summary>
    public void Start()
    {
        _started = true;
        _lastStepTicks = Stopwatch.GetTimestamp();
    }

    /// <summary>Moves to batch <paramref name="batch"/> (from 0).</summary>
    public void BeginBatch(int batch)
    {
        _steps = 0;
        _step = 0;
        _batch = batch;
    }

    /// <summary>Asks the job to stop at its next UNet call (A1111's interrupt).</summary>
    public void Interrupt() => _interrupt.Cancel();

    /// <summary>Takes the engine's report: each denoising step is timed from the one before (or from the stage before it).</summary>
    public void Report(DiffusionProgress value)
    {
        long now = Stopwatch.GetTimestamp();
        if (value.Stage == DiffusionStage.Denoising)
        {
            _metrics.Step(Stopwatch.GetElapsedTime(_lastStepTicks, now));
            _steps = value.Total;
            _step = value.Step;
        }
        _lastStepTicks = now;
    }
}

using MLNet.Diffusion.Server.Errors;

namespace MLNet.Diffusion.Server.Queue;

/// <summary>
/// The bounded queue in front of the engine: at most <see cref="DiffusionServerOptions.MaxConcurrency"/> generations run
/// at once and at most <see cref="DiffusionServerOptions.MaxQueueLength"/> wait; a request beyond both is refused at
/// once (429 with <c>Retry-After</c>) instead of piling up memory and latency. A waiting request whose client goes away
/// leaves the queue; jobs are listed for <c>/sdapi/v1/progress</c> and <c>/sdapi/v1/interrupt</c>.
/// </summary>
internal sealed class GenerationQueue : IDisposable
{
    private readonly SemaphoreSlim _slots;
    private readonly int _capacity;
    private readonly int _retryAfter;
    private readonly List<GenerationJob> _jobs = [];
    private readonly Lock _gate = new();
    private int _admitted;

    /// <summary>A queue with <paramref name="options"/>' concurrency, backlog and retry hint.</summary>
    public GenerationQueue(DiffusionServerOptions options)
    {
        _slots = new SemaphoreSlim(options.MaxConcurrency, options.MaxConcurrency);
        _capacity = options.MaxConcurrency + options.MaxQueueLength;
        _retryAfter = options.RetryAfterSeconds;
    }

    /// <summary>Generations running and requests waiting now.</summary>
    public (int Running, int Waiting) Counts
    {
        get
        {
            lock (_gate)
            {
                int running = _jobs.Count(j => j.Started);
                return (running, _jobs.Count - running);
            }
        }
    }

    /// <summary>The jobs admitted, oldest first.</summary>
    public GenerationJob[] Jobs
    {
        get { lock (_gate) return [.. _jobs]; }
    }

    /// <summary>
    /// Admits <paramref name="job"/> and waits for a slot; the returned lease frees it. Throws a 429
    /// <see cref="RequestException"/> when the backlog is full, and <see cref="OperationCanceledException"/> when
    /// <paramref name="cancellationToken"/> is cancelled while waiting (the job then leaves the queue).
    /// </summary>
    public async Task<IDisposable> EnterAsync(GenerationJob job, ServerMetrics metrics, CancellationToken cancellationToken)
    {
        if (Interlocked.Increment(ref _admitted) > _capacity)
        {
            Interlocked.Decrement(ref _admitted);
            metrics.Rejected();
            throw new RequestException(StatusCodes.Status429TooManyRequests,
                $"The server is busy: {_capacity} requests are running or waiting, its limit. Retry after {_retryAfter} s.", null, "rate_limit_exceeded")
            { RetryAfterSeconds = _retryAfter };
        }
        lock (_gate) _jobs.Add(job);
        try
        {
            await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Leave(job);
            throw;
        }
        job.Start();
        return new Lease(this, job);
    }

    /// <summary>Interrupts every running job; returns how many.</summary>
    public int InterruptRunning()
    {
        int count = 0;
        foreach (var job in Jobs)
            if (job.Started) { job.Interrupt(); count++; }
        return count;
    }

    private void Leave(GenerationJob job)
    {
        lock (_gate) _jobs.Remove(job);
        Interlocked.Decrement(ref _admitted);
    }

    /// <summary>Releases the slots' semaphore.</summary>
    public void Dispose() => _slots.Dispose();

    private sealed class Lease(GenerationQueue queue, GenerationJob job) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) != 0) return;
            queue._slots.Release();
            queue.Leave(job);
        }
    }
}

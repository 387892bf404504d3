using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using MLNet.Diffusion.ModelBuilder.Synthetic;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// One scheduler <c>Step</c> on the guided latent of one image, 4×64×64 (SD 1.5) and
/// 4×128×128 (SDXL-sized), averaged over a whole 50-step schedule (so warm-up and multistep steps are weighted as
/// in a generation). Compare with <see cref="MemoryStreamBenchmarks"/>.
/// </summary>
[MicroJob]
[MemoryDiagnoser]
public class SchedulerStepBenchmarks
{
    private DiffusionScheduler _scheduler = null!;
    private float[] _sample = [], _start = [], _model = [], _scaled = [];
    private readonly GaussianNoise _noise = new(1);

    /// <summary>The scheduler.</summary>
    [Params("euler", "dpm++2m", "pndm", "ddim", "unipc", "deis", "dpm++2s", "euler-a", "dpm++2m-sde")]
    public string Scheduler { get; set; } = "euler";

    /// <summary>The latent side h = w.</summary>
    [Params(64, 128)]
    public int Size { get; set; }

    /// <summary>Builds the scheduler and buffers.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _scheduler = SchedulerFactory.Create(Scheduler, SchedulerConfig.Parse(SyntheticModelFolder.Sd15SchedulerConfig, "sd15"));
        _scheduler.SetTimesteps(50);
        int n = 4 * Size * Size;
        _sample = new float[n];
        _model = new float[n];
        _scaled = new float[n];
        _noise.Fill(_sample);
        _start = (float[])_sample.Clone();
        _noise.Fill(_model);
        TensorPrimitives.Multiply(_model, 0.01f, _model);
    }

    /// <summary>
    /// Step; when the schedule ends it restarts (without allocating) from the same starting latent. Without that
    /// restore the latent drifted over thousands of schedules to NaN (DPM-Solver++) or ±∞ (PNDM), which a fixed model
    /// output does not keep in range; a real generation never sees such values. The restore (one copy per 50 steps,
    /// ≈ 0.2 µs per step at 128²) is included in the figure.
    /// </summary>
    [Benchmark]
    public void Step()
    {
        if (_scheduler.StepIndex >= _scheduler.CallCount)
        {
            _scheduler.SetBeginIndex(0);
            _start.AsSpan().CopyTo(_sample);
        }
        _scheduler.Step(_model, _sample, _noise);
    }

    /// <summary>ScaleModelInput (a copy, or x/√(σ² + 1) for the σ schedulers) into the UNet input buffer.</summary>
    [Benchmark]
    public void ScaleModelInput()
    {
        if (_scheduler.StepIndex >= _scheduler.CallCount) _scheduler.SetBeginIndex(0);
        _scheduler.ScaleModelInput(_sample, _scaled);
    }
}

/// <summary>
/// The memory-streaming limit of a scheduler step: a vectorised copy of as many bytes as the step must read and
/// write, counted in latent-sized (4·h·w float) buffers: Euler and DDIM read ε and x and write x (3); DPM-Solver++ 2M
/// also reads m1 and writes m0 (5); PLMS reads ε, x and three ε̂ and writes ε̂ and x (7). A copy of B/2 buffers
/// reads B/2 and writes B/2.
/// </summary>
[MicroJob]
[MemoryDiagnoser]
public class MemoryStreamBenchmarks
{
    private float[] _source = [], _destination = [];

    /// <summary>The latent side h = w.</summary>
    [Params(64, 128)]
    public int Size { get; set; }

    /// <summary>Latent-sized buffers read plus written.</summary>
    [Params(3, 5, 7)]
    public int Buffers { get; set; }

    /// <summary>Buffers.</summary>
    [GlobalSetup]
    public void Setup()
    {
        int n = Buffers * 4 * Size * Size / 2;
        _source = new float[n];
        _destination = new float[n];
        new GaussianNoise(2).Fill(_source);
    }

    /// <summary>A vectorised copy of the bytes one step must read and write.</summary>
    [Benchmark(Baseline = true)]
    public void CopySameBytes() => _source.AsSpan().CopyTo(_destination);
}

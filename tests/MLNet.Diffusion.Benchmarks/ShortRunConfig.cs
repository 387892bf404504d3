using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// Short runs for a small machine: the whole suite stays within about five minutes on 2 cores. Each class picks
/// its job: <see cref="MicroJobAttribute"/> (scheduler steps, automatic invocation count) or
/// <see cref="ModelJobAttribute"/> (one invocation per iteration). Allocations are reported. Everything runs in
/// process: no per-benchmark project to generate and build (minutes on 2 cores).
/// </summary>
public sealed class ShortRunConfig : ManualConfig
{
    /// <summary>The configuration.</summary>
    public ShortRunConfig()
    {
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumnProvider(DefaultColumnProviders.Instance);
        AddLogger(BenchmarkDotNet.Loggers.ConsoleLogger.Default);
        AddExporter(BenchmarkDotNet.Exporters.MarkdownExporter.GitHub);
        WithOptions(ConfigOptions.JoinSummary);
    }
}

/// <summary>A micro-benchmark: two warm-ups, five measured iterations of many invocations each.</summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class MicroJobAttribute : Attribute, IConfigSource
{
    /// <summary>The job.</summary>
    public MicroJobAttribute()
    {
        Config = ManualConfig.CreateEmpty().AddJob(Job.ShortRun.WithWarmupCount(2).WithIterationCount(5).WithLaunchCount(1)
            .WithToolchain(InProcessEmitToolchain.Instance).WithId("Micro"));
    }

    /// <inheritdoc />
    public IConfig Config { get; }
}

/// <summary>A model-sized benchmark: one invocation per iteration, one warm-up, three measured iterations.</summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class ModelJobAttribute : Attribute, IConfigSource
{
    /// <summary>The job.</summary>
    public ModelJobAttribute(int iterations = 3)
    {
        Config = ManualConfig.CreateEmpty().AddJob(Job.ShortRun.WithWarmupCount(1).WithIterationCount(iterations).WithLaunchCount(1)
            .WithInvocationCount(1).WithUnrollFactor(1).WithToolchain(InProcessEmitToolchain.Instance).WithId("Model"));
    }

    /// <inheritdoc />
    public IConfig Config { get; }
}

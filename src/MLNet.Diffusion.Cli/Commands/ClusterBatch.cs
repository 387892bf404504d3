using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MLNet.Diffusion.Batch;
using MLNet.Diffusion.Cli.Csv;
using MLNet.Diffusion.Orleans;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Pipeline;
using Spectre.Console;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// <c>batch TABLE --cluster CONN</c>: the table's rows go to a generation job on an Orleans cluster of
/// <c>mlnet-diffusion worker</c> silos instead of the local device. The job's id is its output folder, so the same command
/// run again (after the client stopped, or the job's silo died) reattaches to the job, or resumes it from the folder's
/// manifest. Images, <c>manifest.csv</c> (the local batch's format) and <c>failures.csv</c> are written by the job's silo:
/// the output folder and the model folder must be the same paths on every machine (shared storage).
/// </summary>
internal static class ClusterBatch
{
    /// <summary>Runs the batch on the cluster; returns the exit code.</summary>
    public static int Run(BatchCommand.Settings settings, CliEnvironment environment)
    {
        var console = environment.Console;
        var connection = ClusterArguments.Resolve(settings.Cluster!, settings.ConnectionString, settings.ClusterId, environment);
        var timeout = ClusterArguments.Timeout(settings.ConnectTimeout);
        RefuseLocalOnlyOptions(settings);
        var tablePath = Path.GetFullPath(settings.Table);
        var table = PromptTable.Open(tablePath, settings.PromptColumn, settings.NegativeColumn, settings.SeedColumn, settings.Negative ?? "", settings.Seed);
        var rows = table.Rows().Select(r => new GenerationRow { Row = r.Row, Prompt = r.Prompt, NegativePrompt = r.NegativePrompt, Seed = r.Seed }).ToArray();
        var outDir = Path.GetFullPath(settings.Out ?? Path.GetFileNameWithoutExtension(tablePath) + "-images");
        var options = settings.ToGenerationOptions();
        var spec = new JobSpec
        {
            Rows = rows,
            BatchSize = settings.BatchSize,
            OutputDirectory = outDir,
            Settings = new JobSettings
            {
                ModelDirectory = ModelLocator.Resolve(settings.Model, environment),
                Steps = options.Steps,
                GuidanceScale = options.GuidanceScale,
                GuidanceRescale = options.GuidanceRescale,
                Eta = options.Eta,
                Scheduler = options.Scheduler,
                Width = options.Width,
                Height = options.Height,
            },
        };

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(environment.Verbose ? LogLevel.Information : LogLevel.Warning);
        builder.UseOrleansClient(connection.Configure);
        using var host = builder.Build();
        if (ClusterArguments.StartOrReport(() => connection.StartAsync(host, timeout, environment.CancellationToken), environment) is int unreachable)
            return unreachable;
        var grains = host.Services.GetRequiredService<IClusterClient>();
        string jobId = "batch:" + outDir;
        console.MarkupLineInterpolated($"[grey]{rows.Length} rows of {Path.GetFileName(tablePath)} to cluster {settings.Cluster} as job {jobId} (batches of {settings.BatchSize}).[/]");
        JobProgress end = null!;
        ProgressDisplay.Create(console).Start(ctx =>
        {
            var task = ctx.AddTask("rows", maxValue: Math.Max(1, rows.Length));
            var progress = new Progress(p => task.Value = p.CommittedRows + p.FailedRows);
            end = GenerationJobClient.RunAsync(grains, jobId, spec, progress, cancellationToken: environment.CancellationToken).GetAwaiter().GetResult();
        });
        host.StopAsync().GetAwaiter().GetResult();
        if (end.Status == JobStatus.Cancelled)
        {
            environment.Error.WriteLine($"Cancelled: {end.CommittedRows} of {end.TotalRows} rows are done. Run the same command again to continue.");
            return Program.Cancelled;
        }
        if (end.Status == JobStatus.Failed)
        {
            environment.Error.WriteLine("error: " + CliEnvironment.OneLine(end.SinkError ?? "the job failed"));
            return Program.IoError;
        }
        if (end.FailedRows > 0)
        {
            environment.Error.WriteLine($"error: {end.FailedRows} row(s) failed; each is in {Path.Combine(outDir, "failures.csv")} with its message. The other {end.CommittedRows} rows are done.");
            return Program.Failure;
        }
        console.MarkupLineInterpolated($"[green]All {end.TotalRows} rows done[/] ({end.ReissuedItems} item(s) re-issued). Manifest: {Path.Combine(outDir, "manifest.csv")}");
        return Program.Success;
    }

    /// <summary>Refuses the options a cluster job does not carry yet, naming them, rather than ignoring them.</summary>
    private static void RefuseLocalOnlyOptions(BatchCommand.Settings settings)
    {
        var defaults = new GenerationOptions();
        var options = settings.ToGenerationOptions();
        (string Option, bool Set)[] checks =
        [
            ("--original-size", options.OriginalWidth is not null), ("--target-size", options.TargetWidth is not null),
            ("--crop", options.CropTop != 0 || options.CropLeft != 0), ("--aesthetic-score", options.AestheticScore != defaults.AestheticScore),
            ("--negative-aesthetic-score", options.NegativeAestheticScore != defaults.NegativeAestheticScore), ("--vae-tiling", options.VaeTiling != defaults.VaeTiling),
            ("--noise", options.Noise != defaults.Noise), ("--guidance-interval", options.GuidanceIntervalLow is not null || options.GuidanceIntervalHigh is not null),
            ("--guidance-end", options.GuidanceEnd is not null), ("--embedding", settings.Embeddings is { Length: > 0 }), ("--low-memory", settings.LowMemory),
            ("--device", settings.Device != "cpu"),
        ];
        foreach (var (option, set) in checks)
        {
            if (set)
                throw new UserException($"{option} is not carried to a cluster job yet; leave it out with --cluster (workers choose their devices with `mlnet-diffusion worker --device`).");
        }
    }

    private sealed class Progress(Action<JobProgress> report) : IProgress<JobProgress>
    {
        public void Report(JobProgress value) => report(value);
    }
}

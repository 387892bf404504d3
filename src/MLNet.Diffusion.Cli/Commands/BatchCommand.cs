using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using MLNet.Diffusion.Batch;
using MLNet.Diffusion.Cli.Csv;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Transforms;
using MLNet.Diffusion.Orleans;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// <c>batch table.csv</c>: an image per row of a CSV/TSV table, through the ML.NET pipeline, resumable. The table is
/// read with <see cref="PromptTable"/> (RFC 4180, streamed: memory does not grow with its length); rows already in the
/// manifest are left out; the rest go through <c>ml.Transforms.GenerateImages</c> (UNet batches of --batch-size) and
/// each image is written atomically before its manifest line. See <see cref="Manifest"/> for what counts as done.
/// </summary>
internal sealed class BatchCommand(CliEnvironment environment) : Command<BatchCommand.Settings>
{
    internal sealed class Settings : GenerationSettings
    {
        [CommandArgument(0, "<TABLE>")]
        [Description("A .csv (comma) or .tsv (tab) file whose first line names the columns; quoted fields may hold separators, quotes (\"\") and line breaks.")]
        public string Table { get; init; } = "";

        [CommandOption("-p|--prompt-column <NAME>")]
        [Description("The column of prompts.")]
        [DefaultValue("prompt")]
        public string PromptColumn { get; init; } = "prompt";

        [CommandOption("--negative-column <NAME>")]
        [Description("A column of negative prompts (an empty cell takes --negative).")]
        public string? NegativeColumn { get; init; }

        [CommandOption("--seed-column <NAME>")]
        [Description("A column of seeds (an empty cell takes --seed + row).")]
        public string? SeedColumn { get; init; }

        [CommandOption("-s|--seed <N>")]
        [Description("Base seed: row r (0-based, header excluded) without a seed column value uses seed + r, so reruns give the same images.")]
        [DefaultValue(0L)]
        public long Seed { get; init; }

        [CommandOption("-o|--out <DIR>")]
        [Description("Output folder for the images and manifest.csv. Default: <table name>-images in the current folder.")]
        public string? Out { get; init; }

        [CommandOption("--cluster <CONN>")]
        [Description("Send the rows to a cluster of `mlnet-diffusion worker` silos: localhost, localhost:PORT,PORT (gateway ports), redis://HOST:PORT or adonet:Npgsql / adonet:Microsoft.Data.SqlClient (with --connection-string). The same command again reattaches or resumes.")]
        public string? Cluster { get; init; }

        [CommandOption("--connection-string <TEXT>")]
        [Description("With --cluster adonet:…: the membership database's connection string. Default: the MLND_CLUSTER_CONNECTION_STRING variable.")]
        public string? ConnectionString { get; init; }

        [CommandOption("--cluster-id <ID>")]
        [Description("With --cluster: the cluster's id, the same on every worker and client of one cluster.")]
        [DefaultValue(ClusterConnection.DefaultClusterId)]
        public string ClusterId { get; init; } = ClusterConnection.DefaultClusterId;

        [CommandOption("--connect-timeout <SECONDS>")]
        [Description("With --cluster: give up (exit 69) when the cluster cannot be reached within this many seconds.")]
        [DefaultValue(30.0)]
        public double ConnectTimeout { get; init; } = 30;

        /// <summary>The cluster options mean nothing without <c>--cluster</c>: given alone, they are refused rather than ignored.</summary>
        public override ValidationResult Validate()
        {
            if (Cluster is null)
            {
                string? alone = ConnectionString is not null ? "--connection-string"
                    : ClusterId != ClusterConnection.DefaultClusterId ? "--cluster-id"
                    : ConnectTimeout != 30 ? "--connect-timeout"
                    : null;
                if (alone is not null)
                    return ValidationResult.Error($"{alone} applies to a cluster, and no --cluster was given: add --cluster (localhost, redis://HOST:PORT or adonet:…), or leave {alone} out to run the batch on this machine.");
            }
            return base.Validate();
        }
    }

    /// <summary>A pending row as the ML.NET pipeline sees it.</summary>
    internal sealed class BatchRow
    {
        public int Row { get; set; }
        public string Prompt { get; set; } = "";
        public string NegativePrompt { get; set; } = "";
        public long Seed { get; set; }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        if (settings.Cluster is not null) return ClusterBatch.Run(settings, environment);
        var token = environment.CancellationToken;
        var console = environment.Console;
        var ml = new MLContext(seed: 0);
        ml.Log += (_, e) =>
        {
            if (!e.Source.StartsWith("MLNet.Diffusion", StringComparison.Ordinal)) return;
            if (e.Kind is ChannelMessageKind.Warning or ChannelMessageKind.Error) environment.Warn(e.Message);
            else if (environment.Verbose && e.Kind == ChannelMessageKind.Info) environment.Error.WriteLine(CliEnvironment.OneLine(e.Message));
        };
        var tablePath = Path.GetFullPath(settings.Table);
        var table = PromptTable.Open(tablePath, settings.PromptColumn, settings.NegativeColumn, settings.SeedColumn, settings.Negative ?? "", settings.Seed);
        // A first pass reads every row before anything is written, so a bad cell stops the run with nothing changed. The
        // table is streamed here and below (one row in memory at a time), whatever its length.
        int rowCount = 0;
        foreach (var _ in table.Rows(WarnAboutComments)) rowCount++;
        var outDir = Path.GetFullPath(settings.Out ?? Path.GetFileNameWithoutExtension(tablePath) + "-images");

        // The lock comes first: a run refused here has changed nothing, and the clean-up below (temporary files, cut-off
        // manifest lines) only ever runs in the one run that owns the folder.
        using var folder = OutputFolderLock.Acquire(outDir);
        using var manifest = Manifest.Open(folder, rowCount);
        int strays = AtomicImageFile.RemoveStrayTemporaryFiles(folder) + manifest.RemovedTemporaryFiles;
        if (strays > 0) console.MarkupLineInterpolated($"[grey]Removed {strays} temporary file(s) left by an interrupted run.[/]");
        if (manifest.Dropped > 0) console.MarkupLineInterpolated($"[grey]Dropped {manifest.Dropped} manifest line(s) that were cut off, duplicated or whose image is missing; those rows run again.[/]");
        int done = manifest.DoneCount;
        int pendingCount = rowCount - done;
        if (pendingCount == 0)
        {
            console.MarkupLineInterpolated($"All {rowCount} rows of {Path.GetFileName(tablePath)} are done ({manifest.Path}).");
            return 0;
        }
        // The rows to do are those not done when the run starts (rows finished during the run are behind both cursors
        // that read the table, but the set is fixed so that no cursor depends on that).
        var doneAtStart = manifest.DoneRows();

        // Only the rows still to do go into the pipeline; each carries its own row number and seed, so the images do not
        // depend on which rows were done before.
        var modelDir = ModelLocator.Resolve(settings.Model, environment);
        var (device, deviceId) = settings.ParsedDevice;
        var options = settings.ToGenerationOptions();
        IProgress<DiffusionProgress>? stepsDisplay = null; // set once the progress display starts
        var estimator = ml.Transforms.GenerateImages("Image", nameof(BatchRow.Prompt), new DiffusionOptions
        {
            ModelPath = modelDir,
            Steps = options.Steps,
            GuidanceScale = options.GuidanceScale,
            GuidanceRescale = options.GuidanceRescale,
            Scheduler = options.Scheduler,
            Eta = options.Eta,
            Width = options.Width,
            Height = options.Height,
            BatchSize = settings.BatchSize,
            NegativePromptColumnName = nameof(BatchRow.NegativePrompt),
            SeedColumnName = nameof(BatchRow.Seed),
            GpuDeviceId = device == ExecutionDevice.Cuda ? deviceId : null,
            FallbackToCpu = true,
            // Ctrl+C stops the batch being generated at its next UNet call; the rows already written stay done.
            CancellationToken = token,
            Progress = new BatchSteps(() => stepsDisplay),
        });
        var input = ml.Data.LoadFromEnumerable(table.Rows()
            .Where(r => r.Row < rowCount && !doneAtStart[r.Row]) // rows added to the table during the run wait for the next run
            .Select(r => new BatchRow { Row = r.Row, Prompt = r.Prompt, NegativePrompt = r.NegativePrompt, Seed = r.Seed }));
        using var transformer = estimator.Fit(input);
        var images = transformer.Transform(input);
        var imageType = (ImageDataViewType)images.Schema["Image"].Type;
        var settingsText = SettingsText(modelDir, options.Scheduler ?? SchedulerConfig.Load(DiffusionModelFolder.Open(modelDir).SchedulerConfigPath).ClassName,
            imageType.Width, imageType.Height, options);
        int changed = done == 0 ? 0 : table.Rows().Count(r => manifest.IsDone(r.Row) && !manifest.Matches(r.Row, r.Prompt, r.Seed, settingsText));
        if (changed > 0)
            environment.Warn($"{changed} finished row(s) in {manifest.Path} were made with other settings, prompts or seeds than now; they are kept (delete their lines or images to make them again).");
        console.MarkupLineInterpolated($"[grey]{rowCount} rows, {done} already done; {pendingCount} to go into {outDir} ({settingsText}, batches of {settings.BatchSize}).[/]");

        int digits = Math.Max(5, rowCount.ToString(CultureInfo.InvariantCulture).Length);
        int generated = 0;
        var clock = Stopwatch.StartNew();
        try
        {
            ProgressDisplay.Create(console).Start(ctx =>
            {
                var task = ctx.AddTask("images", maxValue: pendingCount);
                stepsDisplay = ProgressDisplay.StepsInto(ctx.AddTask("denoising"));
                using var cursor = images.GetRowCursor(images.Schema);
                var getImage = cursor.GetGetter<MLImage>(images.Schema["Image"]);
                var getRow = cursor.GetGetter<int>(images.Schema[nameof(BatchRow.Row)]);
                var getPrompt = cursor.GetGetter<ReadOnlyMemory<char>>(images.Schema[nameof(BatchRow.Prompt)]);
                var getNegative = cursor.GetGetter<ReadOnlyMemory<char>>(images.Schema[nameof(BatchRow.NegativePrompt)]);
                var getSeed = cursor.GetGetter<long>(images.Schema[nameof(BatchRow.Seed)]);
                int row = 0;
                long seed = 0;
                ReadOnlyMemory<char> prompt = default, negative = default;
                double seconds = 0;
                for (int i = 0; cursor.MoveNext(); i++)
                {
                    MLImage? image = null;
                    string file;
                    try
                    {
                        if (i % settings.BatchSize == 0)
                        {
                            // A new UNet batch is generated when its first image is read: Ctrl+C stops it at its next
                            // UNet call (through DiffusionOptions.CancellationToken). The rest of a batch that was
                            // generated is already in memory, so it is always written out.
                            token.ThrowIfCancellationRequested();
                            var batchClock = Stopwatch.StartNew();
                            getImage(ref image!);
                            seconds = batchClock.Elapsed.TotalSeconds / Math.Min(settings.BatchSize, pendingCount - i);
                        }
                        else
                        {
                            getImage(ref image!);
                        }
                        getRow(ref row);
                        getPrompt(ref prompt);
                        getNegative(ref negative);
                        getSeed(ref seed);
                        var promptText = prompt.ToString();
                        file = $"{row.ToString("D" + digits, CultureInfo.InvariantCulture)}-{FileNames.Slug(promptText)}.png";
                        AtomicImageFile.Save(image, Path.Combine(outDir, file));
                        manifest.Append(new ManifestEntry(row, promptText, negative.ToString(), seed, settingsText, file, seconds));
                    }
                    finally
                    {
                        image?.Dispose();
                    }
                    generated++;
                    task.Increment(1);
                    environment.ImageWritten?.Invoke(Path.Combine(outDir, file));
                }
            });
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            environment.Error.WriteLine($"Cancelled after {generated} new image(s); {done + generated} of {rowCount} rows are done. Run the same command again to continue.");
            return Program.Cancelled;
        }
        double rate = generated / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
        console.MarkupLineInterpolated($"[green]{generated} image(s) in {clock.Elapsed.TotalSeconds:F1} s ({rate:F2} img/s); all {rowCount} rows done.[/] Manifest: {manifest.Path}");
        return 0;

        void WarnAboutComments(int lines, int first)
        {
            if (lines > 0)
                environment.Warn($"{Path.GetFileName(tablePath)}: {lines} line(s) starting with // (the first is line {first}) are comments, not rows, as ML.NET's text loader reads them; quote the cell (\"//…\") to make it a prompt.");
        }
    }

    /// <summary>The settings column of the manifest: what, besides prompt and seed, decides an image.</summary>
    internal static string SettingsText(string modelDirectory, string? scheduler, int width, int height, GenerationOptions options)
    {
        var text = string.Create(CultureInfo.InvariantCulture,
            $"model={Path.GetFileName(modelDirectory.TrimEnd(Path.DirectorySeparatorChar))} size={width}x{height} steps={options.Steps} guidance={options.GuidanceScale} scheduler={scheduler ?? "?"}");
        if (options.Eta != 0) text += string.Create(CultureInfo.InvariantCulture, $" eta={options.Eta}");
        if (options.GuidanceRescale != 0) text += string.Create(CultureInfo.InvariantCulture, $" rescale={options.GuidanceRescale}");
        if (options.Noise != NoiseKind.Default) text += $" noise={MLNet.Diffusion.Noise.NoiseKindNames.Name(options.Noise)}";
        return text;
    }

    /// <summary>Forwards each batch's engine reports to the display's "denoising" bar, once the display exists.</summary>
    private sealed class BatchSteps(Func<IProgress<DiffusionProgress>?> display) : IProgress<DiffusionBatchProgress>
    {
        public void Report(DiffusionBatchProgress value) => display()?.Report(value.Stage);
    }
}

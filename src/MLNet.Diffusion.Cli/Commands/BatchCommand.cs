using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using MLNet.Diffusion.Cli.Csv;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Transforms;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// <c>batch table.csv</c>: an image per row of a CSV/TSV table, through the ML.NET pipeline, resumable. The table is
/// loaded with <c>ml.Data.LoadFromTextFile</c>; rows already in the manifest are left out; the rest go through
/// <c>ml.Transforms.GenerateImages</c> (UNet batches of --batch-size) and each image is written atomically before its
/// manifest line. See <see cref="Manifest"/> for what counts as done.
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
        var token = environment.CancellationToken;
        var console = environment.Console;
        var ml = new MLContext(seed: 0);
        ml.Log += (_, e) =>
        {
            if (!e.Source.StartsWith("MLNet.Diffusion", StringComparison.Ordinal)) return;
            if (e.Kind is ChannelMessageKind.Warning or ChannelMessageKind.Error) environment.Warn(e.Message);
            else if (environment.Verbose && e.Kind == ChannelMessageKind.Info) environment.Error.WriteLine(CliEnvironment.OneLine(e.Message));
        };
        var table = Path.GetFullPath(settings.Table);
        var rows = PromptTable.Read(ml, table, settings.PromptColumn, settings.NegativeColumn, settings.SeedColumn, settings.Negative ?? "", settings.Seed, environment.Warn);
        var outDir = Path.GetFullPath(settings.Out ?? Path.GetFileNameWithoutExtension(table) + "-images");

        // The lock comes first: a run refused here has changed nothing, and the clean-up below (temporary files, cut-off
        // manifest lines) only ever runs in the one run that owns the folder.
        using var folder = OutputFolderLock.Acquire(outDir);
        using var manifest = Manifest.Open(folder);
        int strays = AtomicImageFile.RemoveStrayTemporaryFiles(folder) + manifest.RemovedTemporaryFiles;
        if (strays > 0) console.MarkupLineInterpolated($"[grey]Removed {strays} temporary file(s) left by an interrupted run.[/]");
        if (manifest.Dropped > 0) console.MarkupLineInterpolated($"[grey]Dropped {manifest.Dropped} manifest line(s) that were cut off, duplicated or whose image is missing; those rows run again.[/]");
        var pending = rows.Where(r => !manifest.Done.ContainsKey(r.Row)).ToList();
        int done = rows.Count - pending.Count;
        if (pending.Count == 0)
        {
            console.MarkupLineInterpolated($"All {rows.Count} rows of {Path.GetFileName(table)} are done ({manifest.Path}).");
            return 0;
        }

        // Only the rows still to do go into the pipeline; each carries its own row number and seed, so the images do not
        // depend on which rows were done before.
        var modelDir = ModelLocator.Resolve(settings.Model, environment);
        var (device, deviceId) = settings.ParsedDevice;
        var options = settings.ToGenerationOptions();
        IProgress<DiffusionProgress>? stepsDisplay = null; // set once the progress display starts
        var estimator = ml.Transforms.GenerateImages(new DiffusionOptions
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
        }, promptColumn: nameof(BatchRow.Prompt), outputColumn: "Image");
        var input = ml.Data.LoadFromEnumerable(pending.Select(r => new BatchRow { Row = r.Row, Prompt = r.Prompt, NegativePrompt = r.NegativePrompt, Seed = r.Seed }));
        using var transformer = estimator.Fit(input);
        var images = transformer.Transform(input);
        var imageType = (ImageDataViewType)images.Schema["Image"].Type;
        var settingsText = SettingsText(modelDir, options.Scheduler ?? SchedulerConfig.Load(DiffusionModelFolder.Open(modelDir).SchedulerConfigPath).ClassName,
            imageType.Width, imageType.Height, options);
        int changed = rows.Count(r => manifest.Done.TryGetValue(r.Row, out var e) && (e.Settings != settingsText || e.Prompt != r.Prompt || e.Seed != r.Seed));
        if (changed > 0)
            environment.Warn($"{changed} finished row(s) in {manifest.Path} were made with other settings, prompts or seeds than now; they are kept (delete their lines or images to make them again).");
        console.MarkupLineInterpolated($"[grey]{rows.Count} rows, {done} already done; {pending.Count} to go into {outDir} ({settingsText}, batches of {settings.BatchSize}).[/]");

        int digits = Math.Max(5, rows.Count.ToString(CultureInfo.InvariantCulture).Length);
        int generated = 0;
        var clock = Stopwatch.StartNew();
        try
        {
            ProgressDisplay.Create(console).Start(ctx =>
            {
                var task = ctx.AddTask("images", maxValue: pending.Count);
                stepsDisplay = ProgressDisplay.StepsInto(ctx.AddTask("denoising"));
                using var cursor = images.GetRowCursor(images.Schema);
                var getImage = cursor.GetGetter<MLImage>(images.Schema["Image"]);
                double seconds = 0;
                for (int i = 0; cursor.MoveNext(); i++)
                {
                    var row = pending[i];
                    MLImage? image = null;
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
                            seconds = batchClock.Elapsed.TotalSeconds / Math.Min(settings.BatchSize, pending.Count - i);
                        }
                        else
                        {
                            getImage(ref image!);
                        }
                        var file = $"{row.Row.ToString("D" + digits, CultureInfo.InvariantCulture)}-{FileNames.Slug(row.Prompt)}.png";
                        AtomicImageFile.Save(image, Path.Combine(outDir, file));
                        manifest.Append(new ManifestEntry(row.Row, row.Prompt, row.NegativePrompt, row.Seed, settingsText, file, seconds));
                    }
                    finally
                    {
                        image?.Dispose();
                    }
                    generated++;
                    task.Increment(1);
                    environment.ImageWritten?.Invoke(Path.Combine(outDir, manifest.Done[row.Row].File));
                }
            });
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            environment.Error.WriteLine($"Cancelled after {generated} new image(s); {done + generated} of {rows.Count} rows are done. Run the same command again to continue.");
            return Program.Cancelled;
        }
        double rate = generated / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
        console.MarkupLineInterpolated($"[green]{generated} image(s) in {clock.Elapsed.TotalSeconds:F1} s ({rate:F2} img/s); all {rows.Count} rows done.[/] Manifest: {manifest.Path}");
        return 0;
    }

    /// <summary>The settings column of the manifest: what, besides prompt and seed, decides an image.</summary>
    internal static string SettingsText(string modelDirectory, string? scheduler, int width, int height, GenerationOptions options)
    {
        var text = string.Create(CultureInfo.InvariantCulture,
            $"model={Path.GetFileName(modelDirectory.TrimEnd(Path.DirectorySeparatorChar))} size={width}x{height} steps={options.Steps} guidance={options.GuidanceScale} scheduler={scheduler ?? "?"}");
        if (options.Eta != 0) text += string.Create(CultureInfo.InvariantCulture, $" eta={options.Eta}");
        if (options.GuidanceRescale != 0) text += string.Create(CultureInfo.InvariantCulture, $" rescale={options.GuidanceRescale}");
        return text;
    }

    /// <summary>Forwards each batch's engine reports to the display's "denoising" bar, once the display exists.</summary>
    private sealed class BatchSteps(Func<IProgress<DiffusionProgress>?> display) : IProgress<DiffusionBatchProgress>
    {
        public void Report(DiffusionBatchProgress value) => display()?.Report(value.Stage);
    }
}

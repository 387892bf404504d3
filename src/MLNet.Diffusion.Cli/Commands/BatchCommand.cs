using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using MLNet.Diffusion.Cli.Csv;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Pipeline;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// <c>batch table.csv</c>: an image per row of a CSV/TSV table, resumable. See <see cref="Manifest"/> for what counts as
/// done; rows are generated in UNet batches of --batch-size, each image written atomically before its manifest line.
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

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var token = environment.CancellationToken;
        var console = environment.Console;
        var table = Path.GetFullPath(settings.Table);
        var rows = PromptTable.Read(table, settings.PromptColumn, settings.NegativeColumn, settings.SeedColumn, settings.Negative ?? "", settings.Seed);
        var outDir = Path.GetFullPath(settings.Out ?? Path.GetFileNameWithoutExtension(table) + "-images");
        Directory.CreateDirectory(outDir);

        int strays = AtomicImageFile.RemoveStrayTemporaryFiles(outDir) + Manifest.RemoveStrayTemporaryFiles(outDir);
        using var manifest = Manifest.Open(outDir);
        if (strays > 0) console.MarkupLineInterpolated($"[grey]Removed {strays} temporary file(s) left by an interrupted run.[/]");
        if (manifest.Dropped > 0) console.MarkupLineInterpolated($"[grey]Dropped {manifest.Dropped} manifest line(s) that were cut off, duplicated or whose image is missing; those rows run again.[/]");
        var pending = rows.Where(r => !manifest.Done.ContainsKey(r.Row)).ToList();
        int done = rows.Count - pending.Count;
        if (pending.Count == 0)
        {
            console.MarkupLineInterpolated($"All {rows.Count} rows of {Path.GetFileName(table)} are done ({manifest.Path}).");
            return 0;
        }

        using var pipeline = ModelLocator.Load(settings, environment);
        var options = settings.ToGenerationOptions();
        var settingsText = SettingsText(pipeline, options);
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
                var images = ctx.AddTask("images", maxValue: pending.Count);
                var steps = ctx.AddTask("batch");
                foreach (var batch in pending.Chunk(settings.BatchSize))
                {
                    token.ThrowIfCancellationRequested();
                    steps.Value = 0;
                    var batchClock = Stopwatch.StartNew();
                    var requests = batch.Select(r => new ImagePrompt(r.Prompt, r.Seed) { NegativePrompt = r.NegativePrompt }).ToArray();
                    var results = pipeline.Generate(requests, options, ProgressDisplay.StepsInto(steps), token);
                    double seconds = batchClock.Elapsed.TotalSeconds / batch.Length;
                    // The batch is generated: write all of it (quick) even if Ctrl+C comes now, so no work is lost.
                    for (int i = 0; i < batch.Length; i++)
                    {
                        using var image = results[i].Image;
                        var row = batch[i];
                        var file = $"{row.Row.ToString("D" + digits, CultureInfo.InvariantCulture)}-{FileNames.Slug(row.Prompt)}.png";
                        AtomicImageFile.Save(image, Path.Combine(outDir, file));
                        manifest.Append(new ManifestEntry(row.Row, row.Prompt, row.NegativePrompt, row.Seed, settingsText, file, seconds));
                        generated++;
                        images.Increment(1);
                        environment.ImageWritten?.Invoke(Path.Combine(outDir, file));
                    }
                }
                steps.StopTask();
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
    internal static string SettingsText(StableDiffusionPipeline pipeline, GenerationOptions options)
    {
        int w = options.Width ?? pipeline.DefaultSize, h = options.Height ?? pipeline.DefaultSize;
        var scheduler = options.Scheduler ?? pipeline.SchedulerConfig.ClassName ?? "?";
        var text = string.Create(CultureInfo.InvariantCulture,
            $"model={Path.GetFileName(pipeline.Folder.Directory.TrimEnd(Path.DirectorySeparatorChar))} size={w}x{h} steps={options.Steps} guidance={options.GuidanceScale} scheduler={scheduler}");
        return options.Eta != 0 ? text + string.Create(CultureInfo.InvariantCulture, $" eta={options.Eta}") : text;
    }
}

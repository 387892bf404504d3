using System.ComponentModel;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML.Data;
using MLNet.Diffusion.Cli.Grid;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Pipeline;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary><c>grid "prompt" …</c>: a contact sheet of prompts × seeds in one PNG, with labels, a console legend and grid.json.</summary>
internal sealed class GridCommand(CliEnvironment environment) : Command<GridCommand.Settings>
{
    internal sealed class Settings : GenerationSettings
    {
        [CommandArgument(0, "<PROMPTS>")]
        [Description("One or more prompts: one row of the sheet each.")]
        public string[] Prompts { get; init; } = [];

        [CommandOption("--seeds <N|LIST>")]
        [Description("Columns: a count N (seeds --seed … --seed + N − 1, at most 64) or a list such as 1,2,3.")]
        [DefaultValue("4")]
        public string Seeds { get; init; } = "4";

        [CommandOption("-s|--seed <N>")]
        [Description("First seed when --seeds is a count.")]
        [DefaultValue(0L)]
        public long Seed { get; init; }

        [CommandOption("-o|--out <DIR>")]
        [Description("Output folder for NAME.png and NAME.json.")]
        [DefaultValue(".")]
        public string Out { get; init; } = ".";

        [CommandOption("--name <NAME>")]
        [Description("File name (without extension) of the sheet and its legend: no folder, no < > : \" / \\ | ? *, "
            + "not starting with '.', not a Windows device name.")]
        [DefaultValue("grid")]
        public string Name { get; init; } = "grid";

        public override ValidationResult Validate()
        {
            try
            {
                _ = OptionParsing.ParseSeeds(Seeds, Seed);
                if (Prompts.Length == 0) throw new UserException("grid needs at least one prompt.");
                if (Prompts.Length > 64) throw new UserException($"grid takes at most 64 prompts; got {Prompts.Length}.");
                // The sheet and its legend follow the rule of every file the tool writes (the same as batch's images).
                if ((FileNames.WhyNotPlain(Name + ".json") ?? FileNames.WhyNotPlain(Name + ".png")) is { } problem)
                    throw new UserException(
                        $"--name must be a plain file name, without extension, that every system can store ({problem}); got '{CliEnvironment.OneLine(Name)}'.");
            }
            catch (UserException e)
            {
                return ValidationResult.Error(e.Message);
            }
            return base.Validate();
        }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var token = environment.CancellationToken;
        var seeds = OptionParsing.ParseSeeds(settings.Seeds, settings.Seed);
        var prompts = settings.Prompts;
        using var pipeline = ModelLocator.Load(settings, environment);
        var options = settings.ToGenerationOptions();
        int width = options.Width ?? pipeline.DefaultSize, height = options.Height ?? pipeline.DefaultSize;
        var outDir = Path.GetFullPath(settings.Out);
        try
        {
            Directory.CreateDirectory(outDir);
        }
        catch (Exception e) when (OutputException.IsFileSystemFailure(e))
        {
            throw OutputException.Writing(outDir, e);
        }

        var requests = (from p in Enumerable.Range(0, prompts.Length)
                        from s in Enumerable.Range(0, seeds.Length)
                        select new ImagePrompt(prompts[p], seeds[s]) { NegativePrompt = settings.Negative ?? "" }).ToArray();
        var cells = new MLImage[requests.Length];
        var clock = Stopwatch.StartNew();
        try
        {
            ProgressDisplay.Create(environment.Console).Start(ctx =>
            {
                var images = ctx.AddTask("images", maxValue: requests.Length);
                var steps = ctx.AddTask("batch");
                int next = 0;
                foreach (var batch in requests.Chunk(settings.BatchSize))
                {
                    token.ThrowIfCancellationRequested();
                    steps.Value = 0;
                    foreach (var result in pipeline.Generate(batch, options, ProgressDisplay.StepsInto(steps), token))
                    {
                        cells[next++] = result.Image;
                        images.Increment(1);
                    }
                }
                steps.StopTask();
            });

            var sheet = new ContactSheet(prompts.Length, seeds.Length, width, height);
            var rowLabels = prompts.Select((p, i) => $"{i + 1}. {p}").ToArray();
            var columnLabels = seeds.Select(s => $"SEED {s}").ToArray();
            var png = Path.Combine(outDir, settings.Name + ".png");
            using (var image = sheet.Compose((r, c) => cells[r * seeds.Length + c], rowLabels, columnLabels))
                AtomicImageFile.Save(image, png);
            var json = Path.Combine(outDir, settings.Name + ".json");
            WriteLegend(json, png, sheet, prompts, seeds, BatchCommand.SettingsText(pipeline.Folder.Directory, options.Scheduler ?? pipeline.SchedulerConfig.ClassName, width, height, options), settings.Negative ?? "");

            var legend = new Table().AddColumn("row").AddColumn("prompt");
            for (int i = 0; i < prompts.Length; i++) legend.AddRow((i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), Markup.Escape(prompts[i]));
            environment.Console.Write(legend);
            environment.Console.MarkupLineInterpolated($"Columns (left to right): seeds {string.Join(", ", seeds)}.");
            environment.Console.MarkupLineInterpolated($"[green]{sheet.Width}x{sheet.Height} sheet of {requests.Length} images in {clock.Elapsed.TotalSeconds:F1} s.[/]");
            environment.Out.WriteLine(png);
            environment.Out.WriteLine(json);
            return 0;
        }
        finally
        {
            foreach (var cell in cells) cell?.Dispose();
        }
    }

    private static void WriteLegend(string path, string png, ContactSheet sheet, string[] prompts, long[] seeds, string settingsText, string negative)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("image", Path.GetFileName(png));
            w.WriteNumber("width", sheet.Width);
            w.WriteNumber("height", sheet.Height);
            w.WriteString("settings", settingsText);
            w.WriteString("negative_prompt", negative);
            w.WriteStartArray("prompts");
            foreach (var p in prompts) w.WriteStringValue(p);
            w.WriteEndArray();
            w.WriteStartArray("seeds");
            foreach (var s in seeds) w.WriteNumberValue(s);
            w.WriteEndArray();
            w.WriteStartArray("cells");
            for (int r = 0; r < prompts.Length; r++)
                for (int c = 0; c < seeds.Length; c++)
                {
                    w.WriteStartObject();
                    w.WriteNumber("row", r);
                    w.WriteNumber("column", c);
                    w.WriteString("prompt", prompts[r]);
                    w.WriteNumber("seed", seeds[c]);
                    w.WriteNumber("x", sheet.CellX(c));
                    w.WriteNumber("y", sheet.CellY(r));
                    w.WriteNumber("width", sheet.CellWidth);
                    w.WriteNumber("height", sheet.CellHeight);
                    w.WriteEndObject();
                }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        var temporary = path + ".tmp";
        try
        {
            File.WriteAllBytes(temporary, stream.ToArray());
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (OutputException.IsFileSystemFailure(e))
        {
            throw OutputException.Writing(path, e);
        }
    }
}

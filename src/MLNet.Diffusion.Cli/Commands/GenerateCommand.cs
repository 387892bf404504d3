using System.ComponentModel;
using System.Diagnostics;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Pipeline;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary><c>generate "prompt"</c>: one or more images from one prompt.</summary>
internal sealed class GenerateCommand(CliEnvironment environment) : Command<GenerateCommand.Settings>
{
    internal sealed class Settings : GenerationSettings
    {
        [CommandArgument(0, "<PROMPT>")]
        [Description("What the image should show.")]
        public string Prompt { get; init; } = "";

        [CommandOption("-s|--seed <N>")]
        [Description("Seed of the first image (image i uses seed + i). Default: a random seed, printed. The same seed and settings give the same bytes.")]
        public long? Seed { get; init; }

        [CommandOption("-c|--count <N>")]
        [Description("How many images (seeds seed, seed + 1, …), 1 to 10000.")]
        [DefaultValue(1)]
        public int Count { get; init; } = 1;

        [CommandOption("-o|--out <DIR>")]
        [Description("Output folder (created if needed); files are named <prompt>-<seed>.png, never overwriting.")]
        [DefaultValue(".")]
        public string Out { get; init; } = ".";

        public override ValidationResult Validate()
        {
            try
            {
                OptionParsing.CheckRange("--count", Count, 1, 10000);
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
        long first = settings.Seed ?? Random.Shared.NextInt64(0, 1L << 32);
        var requests = Enumerable.Range(0, settings.Count)
            .Select(i => new ImagePrompt(settings.Prompt, unchecked(first + i)) { NegativePrompt = settings.Negative ?? "" })
            .ToArray();
        using var pipeline = ModelLocator.Load(settings, environment);
        var options = settings.ToGenerationOptions();
        var outDir = Path.GetFullPath(settings.Out);
        Directory.CreateDirectory(outDir);
        int size = pipeline.DefaultSize;
        environment.Console.MarkupLineInterpolated(
            $"[grey]{pipeline.Folder.Directory} on {pipeline.Device}: {options.Width ?? size}x{options.Height ?? size}, {options.Steps} steps, guidance {options.GuidanceScale}, seed {first}{(settings.Count > 1 ? $"…{first + settings.Count - 1}" : "")}[/]");

        var clock = Stopwatch.StartNew();
        var written = new List<string>();
        ProgressDisplay.Create(environment.Console).Start(ctx =>
        {
            var images = ctx.AddTask("images", maxValue: requests.Length);
            var steps = ctx.AddTask("denoising");
            foreach (var batch in requests.Chunk(settings.BatchSize))
            {
                token.ThrowIfCancellationRequested();
                steps.Value = 0;
                var results = pipeline.Generate(batch, options, ProgressDisplay.StepsInto(steps), token);
                foreach (var result in results)
                {
                    using var image = result.Image;
                    var path = FileNames.Unique(outDir, $"{FileNames.Slug(result.Prompt.Prompt)}-{result.Prompt.Seed}");
                    AtomicImageFile.Save(image, path);
                    written.Add(path);
                    environment.ImageWritten?.Invoke(path);
                    images.Increment(1);
                }
            }
            steps.StopTask();
        });
        foreach (var path in written) environment.Out.WriteLine(path);
        environment.Console.MarkupLineInterpolated($"[green]{written.Count} image(s) in {clock.Elapsed.TotalSeconds:F1} s.[/]");
        return 0;
    }
}

using System.ComponentModel;
using System.Diagnostics;
using Microsoft.ML.Data;
using MLNet.Diffusion.Cli.Output;
using MLNet.Diffusion.Imaging;
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

        [CommandOption("-i|--init-image <PNG>")]
        [Description("Image-to-image: start from this image (PNG or JPEG, any size: stretched to --size). Needs a model with vae_encoder/.")]
        public string? InitImage { get; init; }

        [CommandOption("--strength <S>")]
        [Description("Image-to-image: how much of the schedule runs, 0 (keep the init image) to 1 (ignore it). Default 0.8, or 1 with --mask.")]
        public float? Strength { get; init; }

        [CommandOption("--mask <PNG>")]
        [Description("Inpainting: white is repainted, black kept; the init image's size. Needs --init-image.")]
        public string? Mask { get; init; }

        [CommandOption("--refiner <DIR>")]
        [Description("SDXL: a refiner model folder that finishes the schedule: the model runs the first --denoising-end of it, the refiner the rest (same steps and scheduler). Text-to-image only.")]
        public string? Refiner { get; init; }

        [CommandOption("--denoising-end <F>")]
        [Description("With --refiner: the fraction of the schedule the model runs before the refiner takes over, strictly between 0 and 1. Default 0.8.")]
        public float? DenoisingEnd { get; init; }

        [CommandOption("--controlnet <DIR>")]
        [Description("A ControlNet folder (model.onnx, OnnxStack's layout). Repeat for several ControlNets: their residuals are summed. Needs a model with a ControlNet-ready UNet and one --control-image per --controlnet, in order.")]
        public string[] ControlNets { get; init; } = [];

        [CommandOption("--control-image <PNG>")]
        [Description("The control image of the --controlnet at the same position (an edge, depth, pose or scribble map; any size: resized to --size).")]
        public string[] ControlImages { get; init; } = [];

        [CommandOption("--control-scale <S>")]
        [Description("ControlNet conditioning scale, default 1 (0 turns it off): once for every --controlnet, or once per --controlnet in order.")]
        public float[] ControlScales { get; init; } = [];

        [CommandOption("--control-start <F>")]
        [Description("The fraction of the schedule where a ControlNet starts to apply, default 0: once, or once per --controlnet.")]
        public float[] ControlStarts { get; init; } = [];

        [CommandOption("--control-end <F>")]
        [Description("The fraction of the schedule where a ControlNet stops applying, default 1: once, or once per --controlnet.")]
        public float[] ControlEnds { get; init; } = [];

        [CommandOption("--canny <LOW,HIGH>")]
        [Description("Turn the control image into Canny edges with these thresholds first, e.g. 100,200: once, or once per --controlnet.")]
        public string[] Canny { get; init; } = [];

        [CommandOption("--guess-mode")]
        [Description("ControlNet guess mode: the ControlNets see only the prompt's half of guidance and recognise the control image's content without a prompt.")]
        public bool GuessMode { get; init; }

        /// <summary>Where the base hands over to the refiner: --denoising-end, else 0.8 (diffusers' examples).</summary>
        public float ResolvedDenoisingEnd => DenoisingEnd ?? DefaultDenoisingEnd;

        /// <summary>The hand-off point when --refiner is given without --denoising-end.</summary>
        public const float DefaultDenoisingEnd = 0.8f;

        public override ValidationResult Validate()
        {
            try
            {
                OptionParsing.CheckRange("--count", Count, 1, 10000);
                if (DenoisingEnd is not null && Refiner is null)
                    throw new UserException("--denoising-end needs --refiner (the model that finishes the schedule).");
                if (Refiner is not null && string.IsNullOrWhiteSpace(Refiner))
                    throw new UserException("--refiner needs a model folder.");
                if (Refiner is not null && InitImage is not null)
                    throw new UserException("--refiner runs text-to-image: it cannot be used with --init-image.");
                OptionParsing.Check(SettingLimits.DenoisingFraction("--denoising-end", DenoisingEnd));
                if (InitImage is null && (Strength is not null || Mask is not null))
                    throw new UserException($"{(Mask is not null ? "--mask" : "--strength")} needs --init-image.");
                OptionParsing.Check(SettingLimits.Strength("--strength", Strength));
                ControlNetOptions.Validate(ControlNets, ControlImages, ControlScales, ControlStarts, ControlEnds, Canny, GuessMode);
                if (ControlNets.Length > 0 && Refiner is not null)
                    throw new UserException("--controlnet cannot be combined with --refiner (a refiner takes no ControlNet).");
                foreach (var (option, path) in new[] { ("--init-image", InitImage), ("--mask", Mask) })
                    if (path is not null && !File.Exists(path)) throw new UserException($"{option}: the file '{Path.GetFullPath(path)}' does not exist.");
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
        using var initImage = LoadImage("--init-image", settings.InitImage);
        using var mask = LoadImage("--mask", settings.Mask);
        var requests = Enumerable.Range(0, settings.Count)
            .Select(i => new ImagePrompt(settings.Prompt, unchecked(first + i))
            {
                NegativePrompt = settings.Negative ?? "",
                InitImage = initImage,
                Mask = mask,
                Strength = settings.Strength,
            })
            .ToArray();
        var controlNets = ControlNetOptions.Build(settings.ControlNets, settings.ControlImages, settings.ControlScales, settings.ControlStarts, settings.ControlEnds, settings.Canny, LoadImage!);
        using var controlImages = new DisposeAll(controlNets.Select(c => c.Image));
        using var pipeline = ModelLocator.Load(settings, environment);
        using var refiner = settings.Refiner is null ? null : ModelLocator.Load(settings.Refiner, "--refiner", settings, environment);
        var options = settings.ToGenerationOptions();
        options.ControlNets = controlNets;
        options.ControlGuessMode = settings.GuessMode;
        var outDir = Path.GetFullPath(settings.Out);
        Directory.CreateDirectory(outDir);
        int size = pipeline.DefaultSize;
        environment.Console.MarkupLineInterpolated(
            $"[grey]{pipeline.Folder.Directory} on {pipeline.Device}: {options.Width ?? size}x{options.Height ?? size}, {options.Steps} steps, guidance {options.GuidanceScale}, seed {first}{(settings.Count > 1 ? $"…{first + settings.Count - 1}" : "")}[/]");
        if (refiner is not null)
            environment.Console.MarkupLineInterpolated(
                $"[grey]refiner {refiner.Folder.Directory} from {settings.ResolvedDenoisingEnd} of the schedule[/]");

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
                var results = refiner is null
                    ? pipeline.Generate(batch, options, ProgressDisplay.StepsInto(steps), token)
                    : pipeline.Generate(batch, refiner, settings.ResolvedDenoisingEnd, options, null, ProgressDisplay.StepsInto(steps), token);
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

    /// <summary>Disposes the control images when the command ends.</summary>
    private sealed class DisposeAll(IEnumerable<IDisposable?> items) : IDisposable
    {
        private readonly IDisposable?[] _items = [.. items];

        public void Dispose()
        {
            foreach (var item in _items) item?.Dispose();
        }
    }

    private static MLImage? LoadImage(string option, string? path)
    {
        if (path is null) return null;
        try
        {
            // ImageLoader checks the header first: a decompression bomb or a truncated file is refused with the
            // reason, before anything proportional to its pixel count is allocated.
            return ImageLoader.Load(path);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new UserException($"{option}: '{Path.GetFullPath(path)}' could not be read as an image: {Program.MessageOf(e)}");
        }
    }
}

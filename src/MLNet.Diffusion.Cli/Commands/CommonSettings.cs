using System.ComponentModel;
using System.Globalization;
using System.Text.RegularExpressions;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>Options every command has.</summary>
internal class CliSettings : CommandSettings
{
    [CommandOption("--verbose")]
    [Description("Show stack traces with errors, and the engine's log.")]
    public bool Verbose { get; init; }
}

/// <summary>Options of commands that load a model.</summary>
internal class ModelSettings : CliSettings
{
    [CommandOption("-m|--model <DIR>")]
    [Description("A Stable Diffusion ONNX folder (diffusers/Optimum layout). Default: the built-in demo model, built on first use into $MLNET_DIFFUSION_CACHE/demo-model (else ~/.cache/mlnet-diffusion/demo-model, or %LOCALAPPDATA%\\mlnet-diffusion\\demo-model on Windows).")]
    public string? Model { get; init; }

    [CommandOption("--device <DEVICE>")]
    [Description("cpu, cuda or cuda:N (CUDA needs the Microsoft.ML.OnnxRuntime.Gpu runtime; without it the tool warns and runs on the CPU).")]
    [DefaultValue("cpu")]
    public string Device { get; init; } = "cpu";

    [CommandOption("--low-memory")]
    [Description("Load the text encoders and the VAE only for their stage and release them after it (only the UNet stays loaded), without ONNX Runtime's CPU memory arena: a lower peak, the same images, some load time per call.")]
    public bool LowMemory { get; init; }

    [CommandOption("--no-t5")]
    [Description("Stable Diffusion 3: run without the T5 encoder (text_encoder_3, about 9.5 GB in float16); zeros take its place and prompts condition through CLIP only. FLUX.1 needs T5 and refuses this.")]
    public bool NoT5 { get; init; }

    [CommandOption("--max-sequence-length <TOKENS>")]
    [Description("SD3 and FLUX.1: T5 tokens per prompt, 1 to 512; longer prompts are cut. Default: the transformer's fixed length, else 256 (SD3, FLUX.1-schnell) or 512 (FLUX.1-dev).")]
    public int? MaxSequenceLength { get; init; }

    [CommandOption("--embedding <FILE>")]
    [Description("A textual-inversion embedding to load with the model: FILE or FILE=TOKEN, a .safetensors file (A1111, SDXL clip_l/clip_g or diffusers layout; .pt pickles are refused) and the trigger word that inserts it in prompts (default: the file name without its extension). Repeat for several.")]
    public string[]? Embeddings { get; init; }

    /// <summary>The parsed --device.</summary>
    public (ExecutionDevice Device, int DeviceId) ParsedDevice => OptionParsing.ParseDevice(Device);

    /// <summary>
    /// The parsed --embedding values: path → trigger word (null for the file's own). A value that names an existing file
    /// is that file, even with '=' in its name; otherwise the text after its last '=' is the trigger word.
    /// </summary>
    /// <exception cref="UserException">A value has an empty path or trigger word, or names a file twice.</exception>
    public Dictionary<string, string?> ParsedEmbeddings
    {
        get
        {
            var result = new Dictionary<string, string?>(StringComparer.Ordinal);
            foreach (var value in Embeddings ?? [])
            {
                string path = value;
                string? token = null;
                int split = value.LastIndexOf('=');
                if (!File.Exists(value) && split >= 0)
                {
                    path = value[..split];
                    token = value[(split + 1)..];
                    if (token.Length == 0 || path.Length == 0)
                        throw new UserException($"--embedding '{value}': expected FILE or FILE=TOKEN, with a file and a trigger word on either side of '='.");
                }
                if (path.Trim().Length == 0)
                    throw new UserException("--embedding needs a file: FILE or FILE=TOKEN.");
                if (!result.TryAdd(Path.GetFullPath(path), token))
                    throw new UserException($"--embedding names '{path}' twice; give each file once.");
            }
            return result;
        }
    }

    public override ValidationResult Validate()
    {
        try
        {
            _ = ParsedDevice;
            _ = ParsedEmbeddings;
        }
        catch (UserException e)
        {
            return ValidationResult.Error(e.Message);
        }
        if (Pipeline.SettingLimits.MaxSequenceLength("--max-sequence-length", MaxSequenceLength) is { } problem) return ValidationResult.Error(problem);
        return base.Validate();
    }
}

/// <summary>Options of commands that generate images.</summary>
internal class GenerationSettings : ModelSettings
{
    [CommandOption("-n|--negative <TEXT>")]
    [Description("Negative prompt: what the images should not show.")]
    public string? Negative { get; init; }

    [CommandOption("--steps <N>")]
    [Description("Inference steps, 1 to 1000.")]
    [DefaultValue(25)]
    public int Steps { get; init; } = 25;

    [CommandOption("-g|--guidance <G>")]
    [Description("Classifier-free guidance scale; 1 or less turns guidance off.")]
    [DefaultValue(7.5f)]
    public float Guidance { get; init; } = 7.5f;

    [CommandOption("--guidance-rescale <PHI>")]
    [Description("Guidance rescale, 0 to 1 (0.7 for zero-terminal-SNR models that come out over-exposed; 0 is off).")]
    [DefaultValue(0f)]
    public float GuidanceRescale { get; init; }

    [CommandOption("--guidance-interval <LOW,HIGH>")]
    [Description("Guidance only where the noise level sigma is above LOW and at most HIGH (Kynkaanniemi et al. 2024), e.g. 0.28,5.42; other steps run one UNet row per image. Either end may be empty: ,5.42 or 0.28,")]
    public string? GuidanceInterval { get; init; }

    [CommandOption("--guidance-end <F>")]
    [Description("Guidance for the first fraction F of the model calls only (0 to 1), e.g. 0.6; the rest run one UNet row per image.")]
    public float? GuidanceEnd { get; init; }

    [CommandOption("--scheduler <NAME>")]
    [Description("Scheduler instead of the model's: a short name listed under SCHEDULERS below, or a diffusers class name.")]
    public string? Scheduler { get; init; }

    [CommandOption("--eta <ETA>")]
    [Description("DDIM's eta, 0 to 1 (other schedulers ignore it).")]
    [DefaultValue(0f)]
    public float Eta { get; init; }

    [CommandOption("--size <WxH>")]
    [Description("Image size in pixels, e.g. 512x512; both multiples of 8. Default: the model's size.")]
    public string? Size { get; init; }

    [CommandOption("--batch-size <N>")]
    [Description("Images per UNet batch, 1 to 256 (larger batches are faster on a GPU and use more memory).")]
    [DefaultValue(1)]
    public int BatchSize { get; init; } = 1;

    [CommandOption("--original-size <WxH>")]
    [Description("SDXL: the original size the model is told the picture had (time ids), e.g. 1024x1024; smaller asks for the look of an upscaled small image. Default: the image size.")]
    public string? OriginalSize { get; init; }

    [CommandOption("--crop <TOP,LEFT>")]
    [Description("SDXL: the crop's top-left corner the model is told was taken (time ids), in pixels, e.g. 0,0 (centred, uncropped: the default).")]
    public string? Crop { get; init; }

    [CommandOption("--target-size <WxH>")]
    [Description("SDXL base: the target size (time ids). Default: the image size.")]
    public string? TargetSize { get; init; }

    [CommandOption("--aesthetic-score <S>")]
    [Description("SDXL refiner: the aesthetic score the picture should have, 0 to 10 (time ids).")]
    [DefaultValue(6f)]
    public float AestheticScore { get; init; } = 6f;

    [CommandOption("--negative-aesthetic-score <S>")]
    [Description("SDXL refiner: the aesthetic score of the negative half of guidance, 0 to 10.")]
    [DefaultValue(2.5f)]
    public float NegativeAestheticScore { get; init; } = 2.5f;

    [CommandOption("--vae-tiling <MODE>")]
    [Description("Decode (and encode init images) in overlapping tiles so memory stays bounded: auto (above 1024x1024), on or off.")]
    [DefaultValue("auto")]
    public string VaeTilingMode { get; init; } = "auto";

    [CommandOption("--noise <KIND>")]
    [Description("The generator that turns seeds into noise: default (the library's own; used when --noise is absent), torch (diffusers' torch CPU generator: the same initial latents as diffusers for a seed), cuda (torch's CUDA generator, as AUTOMATIC1111's NV source) or numpy (numpy's legacy RandomState).")]
    public string NoiseName { get; init; } = "default";

    /// <summary>The parsed --size, or null for the model's default.</summary>
    public (int Width, int Height)? ParsedSize => Size is null ? null : OptionParsing.ParseSize(Size);

    /// <summary>The parsed --original-size, or null for the image size.</summary>
    public (int Width, int Height)? ParsedOriginalSize => OriginalSize is null ? null : OptionParsing.ParseConditioningSize("--original-size", OriginalSize);

    /// <summary>The parsed --target-size, or null for the image size.</summary>
    public (int Width, int Height)? ParsedTargetSize => TargetSize is null ? null : OptionParsing.ParseConditioningSize("--target-size", TargetSize);

    /// <summary>The parsed --crop, (0, 0) when absent.</summary>
    public (int Top, int Left) ParsedCrop => Crop is null ? (0, 0) : OptionParsing.ParseCrop(Crop);

    /// <summary>The parsed --guidance-interval: (low, high), each null when not given.</summary>
    public (float? Low, float? High) ParsedGuidanceInterval => GuidanceInterval is null ? (null, null) : OptionParsing.ParseGuidanceInterval(GuidanceInterval);

    /// <summary>The parsed --vae-tiling.</summary>
    public VaeTiling ParsedVaeTiling => OptionParsing.ParseVaeTiling(VaeTilingMode);

    /// <summary>The parsed --noise.</summary>
    public NoiseKind ParsedNoise => MLNet.Diffusion.Noise.NoiseKindNames.Parse(NoiseName) ?? throw new UserException(SettingLimits.NoiseName("--noise", NoiseName)!);

    /// <summary>The generation settings (size resolved by the engine when --size is absent).</summary>
    public GenerationOptions ToGenerationOptions() => new()
    {
        Steps = Steps,
        GuidanceScale = Guidance,
        GuidanceRescale = GuidanceRescale,
        Scheduler = Scheduler,
        Eta = Eta,
        Width = ParsedSize?.Width,
        Height = ParsedSize?.Height,
        OriginalWidth = ParsedOriginalSize?.Width,
        OriginalHeight = ParsedOriginalSize?.Height,
        CropTop = ParsedCrop.Top,
        CropLeft = ParsedCrop.Left,
        TargetWidth = ParsedTargetSize?.Width,
        TargetHeight = ParsedTargetSize?.Height,
        AestheticScore = AestheticScore,
        NegativeAestheticScore = NegativeAestheticScore,
        VaeTiling = ParsedVaeTiling,
        Noise = ParsedNoise,
        GuidanceIntervalLow = ParsedGuidanceInterval.Low,
        GuidanceIntervalHigh = ParsedGuidanceInterval.High,
        GuidanceEnd = GuidanceEnd,
    };

    public override ValidationResult Validate()
    {
        try
        {
            _ = ParsedSize;
            OptionParsing.Check(SettingLimits.Steps("--steps", Steps));
            OptionParsing.Check(SettingLimits.Count("--batch-size", BatchSize, 1, SettingLimits.MaxBatchSize));
            OptionParsing.Check(SettingLimits.GuidanceScale("--guidance", Guidance));
            OptionParsing.Check(SettingLimits.Eta("--eta", Eta));
            OptionParsing.Check(SettingLimits.GuidanceRescale("--guidance-rescale", GuidanceRescale));
            OptionParsing.Check(SettingLimits.Scheduler("--scheduler", Scheduler));
            _ = ParsedOriginalSize;
            _ = ParsedTargetSize;
            _ = ParsedCrop;
            _ = ParsedVaeTiling;
            _ = ParsedNoise;
            _ = ParsedGuidanceInterval;
            OptionParsing.Check(SettingLimits.GuidanceEnd("--guidance-end", GuidanceEnd));
            OptionParsing.Check(SettingLimits.AestheticScore("--aesthetic-score", AestheticScore));
            OptionParsing.Check(SettingLimits.AestheticScore("--negative-aesthetic-score", NegativeAestheticScore));
        }
        catch (UserException e)
        {
            return ValidationResult.Error(e.Message);
        }
        return base.Validate();
    }
}

/// <summary>Parsing of option values whose syntax the type alone does not give.</summary>
internal static partial class OptionParsing
{
    [GeneratedRegex(@"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")]
    private static partial Regex SizePattern();

    [GeneratedRegex(@"^\s*(cpu|cuda)(?::(\d{1,3}))?\s*$", RegexOptions.IgnoreCase)]
    private static partial Regex DevicePattern();

    /// <summary>A problem from <see cref="SettingLimits"/> (the limits every entry point shares) as a usage error.</summary>
    public static void Check(string? problem)
    {
        if (problem is not null) throw new UserException(problem);
    }

    /// <summary>"WxH" → (W, H), both within <see cref="SettingLimits"/>' size limits.</summary>
    public static (int Width, int Height) ParseSize(string text)
    {
        var m = SizePattern().Match(text);
        if (!m.Success) throw new UserException($"--size must be WIDTHxHEIGHT in pixels, e.g. 512x512; got '{text}'.");
        int w = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), h = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        Check(SettingLimits.Size("--size width", w));
        Check(SettingLimits.Size("--size height", h));
        return (w, h);
    }

    [GeneratedRegex(@"^\s*(\d{1,6})\s*,\s*(\d{1,6})\s*$")]
    private static partial Regex CropPattern();

    /// <summary>An SDXL micro-conditioning size "WxH" → (W, H), each within <see cref="SettingLimits.ConditioningSize"/>.</summary>
    public static (int Width, int Height) ParseConditioningSize(string option, string text)
    {
        var m = SizePattern().Match(text);
        if (!m.Success) throw new UserException($"{option} must be WIDTHxHEIGHT in pixels, e.g. 1024x1024; got '{text}'.");
        int w = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), h = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        Check(SettingLimits.ConditioningSize($"{option} width", w));
        Check(SettingLimits.ConditioningSize($"{option} height", h));
        return (w, h);
    }

    /// <summary>"TOP,LEFT" → (top, left), each within <see cref="SettingLimits.Crop"/>.</summary>
    public static (int Top, int Left) ParseCrop(string text)
    {
        var m = CropPattern().Match(text);
        if (!m.Success) throw new UserException($"--crop must be TOP,LEFT in pixels, e.g. 0,0; got '{text}'.");
        int top = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), left = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        Check(SettingLimits.Crop("--crop top", top));
        Check(SettingLimits.Crop("--crop left", left));
        return (top, left);
    }

    /// <summary>"LOW,HIGH" (either may be empty) → the guidance interval, checked by <see cref="SettingLimits.GuidanceInterval"/>.</summary>
    public static (float? Low, float? High) ParseGuidanceInterval(string text)
    {
        var parts = text.Split(',');
        if (parts.Length != 2) throw new UserException($"--guidance-interval must be LOW,HIGH noise levels, e.g. 0.28,5.42 (either may be empty); got '{text}'.");
        float? Parse(string part, string end)
        {
            if (string.IsNullOrWhiteSpace(part)) return null;
            if (!float.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out float v))
                throw new UserException($"--guidance-interval: the {end} end '{part.Trim()}' is not a number (e.g. 0.28,5.42).");
            return v;
        }
        var (low, high) = (Parse(parts[0], "low"), Parse(parts[1], "high"));
        Check(SettingLimits.GuidanceInterval("--guidance-interval low", "--guidance-interval high", low, high));
        return (low, high);
    }

    /// <summary>"auto", "on" or "off" (any case) → the <see cref="VaeTiling"/> value.</summary>
    public static VaeTiling ParseVaeTiling(string text) => text?.Trim().ToLowerInvariant() switch
    {
        "auto" => MLNet.Diffusion.VaeTiling.Auto,
        "on" => MLNet.Diffusion.VaeTiling.On,
        "off" => MLNet.Diffusion.VaeTiling.Off,
        _ => throw new UserException($"--vae-tiling must be auto, on or off; got '{text}'."),
    };

    /// <summary>"cpu", "cuda" or "cuda:N".</summary>
    public static (ExecutionDevice Device, int DeviceId) ParseDevice(string text)
    {
        var m = DevicePattern().Match(text ?? "");
        if (!m.Success) throw new UserException($"--device must be cpu, cuda or cuda:N; got '{text}'.");
        bool cuda = m.Groups[1].Value.Equals("cuda", StringComparison.OrdinalIgnoreCase);
        if (!cuda && m.Groups[2].Success) throw new UserException($"--device: the CPU takes no device number; got '{text}'.");
        return (cuda ? ExecutionDevice.Cuda : ExecutionDevice.Cpu, m.Groups[2].Success ? int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) : 0);
    }

    /// <summary>Throws a <see cref="UserException"/> naming <paramref name="option"/> when <paramref name="value"/> is outside [min, max].</summary>
    public static void CheckRange(string option, long value, long min, long max)
    {
        if (value < min || value > max) throw new UserException($"{option} must be from {min} to {max}; got {value}.");
    }

    /// <summary>"4" → the 4 seeds baseSeed … baseSeed + 3; "1,2,3" → those seeds.</summary>
    public static long[] ParseSeeds(string text, long baseSeed)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length == 1)
        {
            if (!int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count < 1 || count > 64)
                throw new UserException($"--seeds must be a count from 1 to 64 or a comma-separated list of seeds, e.g. 1,2,3; got '{text}'.");
            return Enumerable.Range(0, count).Select(i => unchecked(baseSeed + i)).ToArray();
        }
        var seeds = new long[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!long.TryParse(parts[i], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out seeds[i]))
                throw new UserException($"--seeds: '{parts[i]}' is not a whole number (in '{text}').");
        if (seeds.Length > 64) throw new UserException($"--seeds: at most 64 seeds; got {seeds.Length}.");
        return seeds;
    }
}

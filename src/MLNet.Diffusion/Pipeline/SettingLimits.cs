using System.Globalization;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// The one home of the settings' limits and of their messages. The engine, the ML.NET options, the dependency-injection
/// validator, the <c>IImageGenerator</c> and the command line all check a setting here, so one bad value is refused
/// everywhere with the same words: the setting's name as the caller knows it, the allowed range, and the value given.
/// </summary>
internal static class SettingLimits
{
    /// <summary>Width and height: multiples of <see cref="SizeMultiple"/> from <see cref="MinSize"/> to <see cref="MaxSize"/>
    /// pixels (the VAE works on 8×8 blocks).</summary>
    public const int MinSize = 8, MaxSize = 4096, SizeMultiple = 8;

    /// <summary>Inference steps.</summary>
    public const int MinSteps = 1, MaxSteps = 1000;

    /// <summary>Images per prompt in the ML.NET transforms.</summary>
    public const int MaxImagesPerPrompt = 64;

    /// <summary>Images per UNet batch in the ML.NET transforms.</summary>
    public const int MaxBatchSize = 256;

    /// <summary>A width or height: null (the model's default) or a multiple of 8 from 8 to 4096.</summary>
    public static string? Size(string name, int? value) =>
        value is int v && (v < MinSize || v > MaxSize || v % SizeMultiple != 0)
            ? $"{name} must be a multiple of {SizeMultiple} from {MinSize} to {MaxSize} pixels (or null for the model's default size); got {v}."
            : null;

    /// <summary>Inference steps, 1 to 1000.</summary>
    public static string? Steps(string name, int value) =>
        value is < MinSteps or > MaxSteps ? $"{name} must be from {MinSteps} to {MaxSteps}; got {value}." : null;

    /// <summary>A guidance scale: any finite number (at 1 or below guidance is off).</summary>
    public static string? GuidanceScale(string name, float value) =>
        float.IsFinite(value) ? null : $"{name} must be a finite number; got {Format(value)}.";

    /// <summary>DDIM's η, 0 to 1.</summary>
    public static string? Eta(string name, float value) => UnitInterval(name, value);

    /// <summary>Guidance rescale φ, 0 to 1.</summary>
    public static string? GuidanceRescale(string name, float value) => UnitInterval(name, value);

    /// <summary>Image-to-image strength: null (the engine's default) or 0 to 1.</summary>
    public static string? Strength(string name, float? value) =>
        value is float v && !(v >= 0 && v <= 1) ? $"{name} must be from 0 to 1 (or null for the default); got {Format(v)}." : null;

    /// <summary>A scheduler name: null (the folder's own) or one <see cref="SchedulerFactory"/> knows.</summary>
    public static string? Scheduler(string name, string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        try
        {
            SchedulerFactory.Create(value, SchedulerConfig.Empty);
            return null;
        }
        catch (ArgumentException e)
        {
            return $"{name}: {e.Message.Split(" (Parameter", 2)[0]}";
        }
    }

    /// <summary>The guidance interval (σ_lo, σ_hi]: each end null or a finite σ of 0 or more, and σ_lo below σ_hi.</summary>
    public static string? GuidanceInterval(string lowName, string highName, float? low, float? high)
    {
        if (low is float l && !(l >= 0 && float.IsFinite(l))) return $"{lowName} must be a finite noise level σ of 0 or more (or null); got {Format(l)}.";
        if (high is float h && !(h > 0 && float.IsFinite(h))) return $"{highName} must be a finite noise level σ above 0 (or null); got {Format(h)}.";
        if (low is float lo && high is float hi && !(lo < hi)) return $"{lowName} ({Format(lo)}) must be below {highName} ({Format(hi)}): guidance applies for σ in (low, high].";
        return null;
    }

    /// <summary>The fraction of the calls that are guided: null, or 0 to 1.</summary>
    public static string? GuidanceEnd(string name, float? value) =>
        value is float v && !(v >= 0 && v <= 1) ? $"{name} must be from 0 to 1 (the fraction of the model calls that are guided), or null; got {Format(v)}." : null;

    /// <summary>A VAE tiling choice: one of the enum's named values.</summary>
    public static string? Tiling(string name, VaeTiling value) =>
        Enum.IsDefined(value) ? null : $"{name} must be Auto, On or Off; got {(int)value}.";

    /// <summary>A noise generator choice: one of the enum's named values.</summary>
    public static string? Noise(string name, NoiseKind value) =>
        Enum.IsDefined(value) ? null : $"{name} must be one of {string.Join(", ", Enum.GetNames<NoiseKind>())}; got {(int)value}.";

    /// <summary>A noise generator given by name (<c>default</c>, <c>torch</c>, <c>numpy</c> or <c>cuda</c>).</summary>
    public static string? NoiseName(string name, string? value) =>
        MLNet.Diffusion.Noise.NoiseKindNames.Parse(value) is null ? $"{name} must be {MLNet.Diffusion.Noise.NoiseKindNames.Choices}; got '{value}'." : null;

    /// <summary>The base → refiner split: null, or a fraction strictly between 0 and 1.</summary>
    public static string? DenoisingFraction(string name, float? value) =>
        value is float v && !(v > 0 && v < 1) ? $"{name} must be strictly between 0 and 1 (0.8 hands the last 20 % of the schedule to the refiner), or null; got {Format(v)}." : null;

    /// <summary>SDXL's micro-conditioning sizes (original and target sizes, crops) may describe pictures larger than the ones
    /// generated, up to this many pixels.</summary>
    public const int MaxConditioningSize = 16384;

    /// <summary>An SDXL original or target size: null (the image's) or 1 to <see cref="MaxConditioningSize"/> pixels.</summary>
    public static string? ConditioningSize(string name, int? value) =>
        value is int v && (v < 1 || v > MaxConditioningSize)
            ? $"{name} must be from 1 to {MaxConditioningSize} pixels (or null for the image's size); got {v}." : null;

    /// <summary>An SDXL crop coordinate: 0 to <see cref="MaxConditioningSize"/> pixels.</summary>
    public static string? Crop(string name, int? value) =>
        value is int v && (v < 0 || v > MaxConditioningSize) ? $"{name} must be from 0 to {MaxConditioningSize} pixels; got {v}." : null;

    /// <summary>An SDXL refiner aesthetic score, 0 to 10 (the range of the LAION aesthetic scores it was trained on).</summary>
    public static string? AestheticScore(string name, float value) =>
        !(value >= 0 && value <= 10) ? $"{name} must be from 0 to 10; got {Format(value)}." : null;

    /// <summary>A ControlNet conditioning scale: any finite number (0 turns the ControlNet off).</summary>
    public static string? ControlScale(string name, float? value) =>
        value is float v && !float.IsFinite(v) ? $"{name} must be a finite number (1 is the strength a ControlNet was trained at, 0 turns it off); got {Format(v)}." : null;

    /// <summary>A ControlNet's window: 0 ≤ start &lt; end ≤ 1 (diffusers' <c>control_guidance_start</c>/<c>_end</c> checks).</summary>
    public static string? ControlWindow(string startName, string endName, float start, float end)
    {
        if (!(start >= 0 && start <= 1)) return $"{startName} must be from 0 to 1 (the fraction of the schedule where the ControlNet starts); got {Format(start)}.";
        if (!(end >= 0 && end <= 1)) return $"{endName} must be from 0 to 1 (the fraction of the schedule where the ControlNet stops); got {Format(end)}.";
        return start < end ? null : $"{startName} ({Format(start)}) must be below {endName} ({Format(end)}).";
    }

    /// <summary>Canny thresholds: finite, 0 ≤ low ≤ high.</summary>
    public static string? CannyThresholds(string name, (float Low, float High)? value) =>
        value is var (low, high) && !(float.IsFinite(low) && float.IsFinite(high) && low >= 0 && low <= high)
            ? $"{name} must be two finite thresholds with 0 ≤ low ≤ high; got {Format(low)}, {Format(high)}." : null;

    /// <summary>Every problem of the ControlNet settings of <paramref name="options"/>, each named <c>{prefix}.ControlNets[i].{Setting}</c>.</summary>
    public static IEnumerable<string> ControlProblems(GenerationOptions options, string prefix)
    {
        if (options.ControlNets is null) yield break;
        for (int i = 0; i < options.ControlNets.Count; i++)
        {
            string name = $"{prefix}.{nameof(options.ControlNets)}[{i}]";
            if (options.ControlNets[i] is not { } c)
            {
                yield return $"{name} is null.";
                continue;
            }
            if (string.IsNullOrWhiteSpace(c.ModelDirectory)) yield return $"{name}.{nameof(c.ModelDirectory)} is empty: give the ControlNet's folder.";
            if (ControlScale($"{name}.{nameof(c.Scale)}", c.Scale) is { } scale) yield return scale;
            if (ControlWindow($"{name}.{nameof(c.Start)}", $"{name}.{nameof(c.End)}", c.Start, c.End) is { } window) yield return window;
            if (CannyThresholds($"{name}.{nameof(c.CannyThresholds)}", c.CannyThresholds) is { } canny) yield return canny;
        }
    }

    /// <summary>The most T5 tokens per prompt (diffusers' SD3 and FLUX pipelines refuse a <c>max_sequence_length</c> above 512).</summary>
    public const int MaxT5Tokens = 512;

    /// <summary>T5's tokens per prompt (SD3, FLUX.1): null (the model's default) or 1 to <see cref="MaxT5Tokens"/>.</summary>
    public static string? MaxSequenceLength(string name, int? value) =>
        value is < 1 or > MaxT5Tokens ? $"{name} must be from 1 to {MaxT5Tokens} T5 tokens (diffusers' max_sequence_length), or unset for the model's default; got {value}." : null;

    /// <summary>A count from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public static string? Count(string name, int value, int min, int max) =>
        value < min || value > max ? $"{name} must be from {min} to {max}; got {value}." : null;

    /// <summary>A CUDA device ordinal: 0 or more.</summary>
    public static string? DeviceId(string name, int value) =>
        value < 0 ? $"{name} must be 0 or more; got {value}." : null;

    /// <summary>A thread count: 0 (ONNX Runtime chooses) or more.</summary>
    public static string? Threads(string name, int value) =>
        value < 0 ? $"{name} must be 0 (ONNX Runtime chooses) or more; got {value}." : null;

    /// <summary>Every numeric problem of <paramref name="options"/>, each named <c>{prefix}.{Setting}</c> (the scheduler name is
    /// checked by <see cref="Scheduler"/>, or where the scheduler is created).</summary>
    public static IEnumerable<string> Problems(GenerationOptions options, string prefix)
    {
        string?[] problems =
        [
            Size($"{prefix}.{nameof(options.Width)}", options.Width),
            Size($"{prefix}.{nameof(options.Height)}", options.Height),
            Steps($"{prefix}.{nameof(options.Steps)}", options.Steps),
            GuidanceScale($"{prefix}.{nameof(options.GuidanceScale)}", options.GuidanceScale),
            Eta($"{prefix}.{nameof(options.Eta)}", options.Eta),
            GuidanceRescale($"{prefix}.{nameof(options.GuidanceRescale)}", options.GuidanceRescale),
            Tiling($"{prefix}.{nameof(options.VaeTiling)}", options.VaeTiling),
            Noise($"{prefix}.{nameof(options.Noise)}", options.Noise),
            GuidanceInterval($"{prefix}.{nameof(options.GuidanceIntervalLow)}", $"{prefix}.{nameof(options.GuidanceIntervalHigh)}", options.GuidanceIntervalLow, options.GuidanceIntervalHigh),
            GuidanceEnd($"{prefix}.{nameof(options.GuidanceEnd)}", options.GuidanceEnd),
            DenoisingFraction($"{prefix}.{nameof(options.DenoisingEnd)}", options.DenoisingEnd),
            DenoisingFraction($"{prefix}.{nameof(options.DenoisingStart)}", options.DenoisingStart),
            ConditioningSize($"{prefix}.{nameof(options.OriginalWidth)}", options.OriginalWidth),
            ConditioningSize($"{prefix}.{nameof(options.OriginalHeight)}", options.OriginalHeight),
            Crop($"{prefix}.{nameof(options.CropTop)}", options.CropTop),
            Crop($"{prefix}.{nameof(options.CropLeft)}", options.CropLeft),
            ConditioningSize($"{prefix}.{nameof(options.TargetWidth)}", options.TargetWidth),
            ConditioningSize($"{prefix}.{nameof(options.TargetHeight)}", options.TargetHeight),
            ConditioningSize($"{prefix}.{nameof(options.NegativeOriginalWidth)}", options.NegativeOriginalWidth),
            ConditioningSize($"{prefix}.{nameof(options.NegativeOriginalHeight)}", options.NegativeOriginalHeight),
            Crop($"{prefix}.{nameof(options.NegativeCropTop)}", options.NegativeCropTop),
            Crop($"{prefix}.{nameof(options.NegativeCropLeft)}", options.NegativeCropLeft),
            ConditioningSize($"{prefix}.{nameof(options.NegativeTargetWidth)}", options.NegativeTargetWidth),
            ConditioningSize($"{prefix}.{nameof(options.NegativeTargetHeight)}", options.NegativeTargetHeight),
            AestheticScore($"{prefix}.{nameof(options.AestheticScore)}", options.AestheticScore),
            AestheticScore($"{prefix}.{nameof(options.NegativeAestheticScore)}", options.NegativeAestheticScore),
        ];
        return problems.OfType<string>().Concat(ControlProblems(options, prefix));
    }

    /// <summary>Every problem of one image request's own settings (those it leaves null are the call's), each named
    /// <c>{prefix}: {Setting}</c>.</summary>
    public static IEnumerable<string> Problems(ImagePrompt request, string prefix)
    {
        string?[] problems =
        [
            request.Steps is int steps ? Steps($"{prefix}: {nameof(request.Steps)}", steps) : null,
            Size($"{prefix}: {nameof(request.Width)}", request.Width),
            Size($"{prefix}: {nameof(request.Height)}", request.Height),
            request.GuidanceScale is float guidance ? GuidanceScale($"{prefix}: {nameof(request.GuidanceScale)}", guidance) : null,
            Strength($"{prefix}: {nameof(request.Strength)}", request.Strength),
            ControlScale($"{prefix}: {nameof(request.ControlScale)}", request.ControlScale),
        ];
        return problems.OfType<string>();
    }

    /// <summary>Every problem of <paramref name="options"/>, each named <c>{prefix}.{Setting}</c>.</summary>
    public static IEnumerable<string> Problems(DiffusionRuntimeOptions options, string prefix)
    {
        if (!Enum.IsDefined(options.Device))
            yield return $"{prefix}.{nameof(options.Device)} {(int)options.Device} is not one of {string.Join(", ", Enum.GetNames<ExecutionDevice>())}.";
        if (DeviceId($"{prefix}.{nameof(options.DeviceId)}", options.DeviceId) is { } deviceId) yield return deviceId;
        if (Threads($"{prefix}.{nameof(options.IntraOpThreads)}", options.IntraOpThreads) is { } intra) yield return intra;
        if (Threads($"{prefix}.{nameof(options.InterOpThreads)}", options.InterOpThreads) is { } inter) yield return inter;
        if (MaxSequenceLength($"{prefix}.{nameof(options.MaxSequenceLength)}", options.MaxSequenceLength) is { } t5) yield return t5;
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> with the first problem, if there is one.</summary>
    public static void ThrowIfAny(IEnumerable<string> problems, string parameterName)
    {
        foreach (var problem in problems) throw new ArgumentOutOfRangeException(parameterName, problem);
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> for <paramref name="problem"/> unless it is null.</summary>
    public static void ThrowIf(string? problem, string parameterName)
    {
        if (problem is not null) throw new ArgumentOutOfRangeException(parameterName, problem);
    }

    private static string? UnitInterval(string name, float value) =>
        value >= 0 && value <= 1 ? null : $"{name} must be from 0 to 1; got {Format(value)}.";

    private static string Format(float value) => value.ToString(CultureInfo.InvariantCulture);
}

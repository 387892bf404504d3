using System.Globalization;
using Microsoft.ML.Data;
using MLNet.Diffusion.Pipeline;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// The command line's ControlNet options: <c>--controlnet DIR --control-image PNG</c>, repeatable and paired in order, with
/// <c>--control-scale</c>, <c>--control-start</c>, <c>--control-end</c> and <c>--canny LOW,HIGH</c> given once (for every
/// ControlNet) or once per <c>--controlnet</c>, in the same order. Checked against <see cref="SettingLimits"/> as the engine
/// checks them.
/// </summary>
internal static class ControlNetOptions
{
    /// <summary>Checks the options' counts, files and values; throws a <see cref="UserException"/> naming the option.</summary>
    public static void Validate(string[] controlNets, string[] images, float[] scales, float[] starts, float[] ends, string[] canny, bool guessMode)
    {
        if (controlNets.Length == 0)
        {
            foreach (var (option, count) in new[] { ("--control-image", images.Length), ("--control-scale", scales.Length), ("--control-start", starts.Length), ("--control-end", ends.Length), ("--canny", canny.Length) })
                if (count > 0) throw new UserException($"{option} needs --controlnet (the ControlNet folder it applies to).");
            if (guessMode) throw new UserException("--guess-mode needs --controlnet.");
            return;
        }
        if (images.Length != controlNets.Length)
            throw new UserException($"Each --controlnet needs its --control-image, in the same order: {controlNets.Length} --controlnet and {images.Length} --control-image given.");
        CheckCount("--control-scale", scales.Length, controlNets.Length);
        CheckCount("--control-start", starts.Length, controlNets.Length);
        CheckCount("--control-end", ends.Length, controlNets.Length);
        CheckCount("--canny", canny.Length, controlNets.Length);
        foreach (var path in images)
            if (!File.Exists(path)) throw new UserException($"--control-image: the file '{Path.GetFullPath(path)}' does not exist.");
        foreach (var dir in controlNets)
            if (!Directory.Exists(dir) && !File.Exists(dir)) throw new UserException($"--controlnet: the folder '{Path.GetFullPath(dir)}' does not exist.");
        for (int i = 0; i < controlNets.Length; i++)
        {
            OptionParsing.Check(SettingLimits.ControlScale("--control-scale", Pick(scales, i, 1f)));
            OptionParsing.Check(SettingLimits.ControlWindow("--control-start", "--control-end", Pick(starts, i, 0f), Pick(ends, i, 1f)));
            if (canny.Length > 0) OptionParsing.Check(SettingLimits.CannyThresholds("--canny", ParseCanny(Pick(canny, i, ""))));
        }
    }

    /// <summary>The ControlNets for <see cref="GenerationOptions.ControlNets"/>, with their control images loaded (the caller disposes them).</summary>
    public static List<ControlNetInput> Build(string[] controlNets, string[] images, float[] scales, float[] starts, float[] ends, string[] canny, Func<string, string, MLImage> load)
    {
        var inputs = new List<ControlNetInput>(controlNets.Length);
        try
        {
            for (int i = 0; i < controlNets.Length; i++)
            {
                inputs.Add(new ControlNetInput(Path.GetFullPath(controlNets[i]), load("--control-image", images[i]))
                {
                    Scale = Pick(scales, i, 1f),
                    Start = Pick(starts, i, 0f),
                    End = Pick(ends, i, 1f),
                    CannyThresholds = canny.Length == 0 ? null : ParseCanny(Pick(canny, i, "")),
                });
            }
        }
        catch
        {
            foreach (var input in inputs) input.Image?.Dispose();
            throw;
        }
        return inputs;
    }

    /// <summary>"LOW,HIGH" → the Canny thresholds.</summary>
    public static (float Low, float High) ParseCanny(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 2
            || !float.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out float low)
            || !float.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out float high))
            throw new UserException($"--canny must be LOW,HIGH thresholds, e.g. 100,200; got '{text}'.");
        return (low, high);
    }

    private static void CheckCount(string option, int count, int controlNets)
    {
        if (count > 1 && count != controlNets)
            throw new UserException($"{option} is given {count} times for {controlNets} --controlnet: give it once (for every ControlNet) or once per --controlnet, in the same order.");
    }

    private static T Pick<T>(T[] values, int i, T fallback) => values.Length == 0 ? fallback : values.Length == 1 ? values[0] : values[i];
}

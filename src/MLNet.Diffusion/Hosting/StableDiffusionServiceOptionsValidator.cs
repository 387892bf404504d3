using Microsoft.Extensions.Options;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Hosting;

/// <summary>
/// Checks a <see cref="StableDiffusionServiceOptions"/> when the options system first builds it (on first resolution
/// of the pipeline), so a bad setting fails with the option's name rather than deep inside model loading.
/// </summary>
internal sealed class StableDiffusionServiceOptionsValidator : IValidateOptions<StableDiffusionServiceOptions>
{
    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, StableDiffusionServiceOptions options)
    {
        var problems = Problems(options);
        if (problems.Count == 0) return ValidateOptionsResult.Success;
        string registration = string.IsNullOrEmpty(name) ? "Stable Diffusion registration" : $"Stable Diffusion registration '{name}'";
        return ValidateOptionsResult.Fail(problems.Select(p => $"{registration}: {p}"));
    }

    /// <summary>Every problem with <paramref name="o"/>, each naming its option.</summary>
    internal static List<string> Problems(StableDiffusionServiceOptions o)
    {
        var problems = new List<string>();
        const string type = nameof(StableDiffusionServiceOptions);
        if (string.IsNullOrWhiteSpace(o.ModelPath))
            problems.Add($"{type}.{nameof(o.ModelPath)} is required: set it to a Stable Diffusion ONNX export folder (the one holding model_index.json, unet/, vae_decoder/, ...).");
        else if (!Directory.Exists(o.ModelPath))
            problems.Add($"{type}.{nameof(o.ModelPath)} '{o.ModelPath}' does not exist (resolved to '{Path.GetFullPath(o.ModelPath)}').");
        if (!Enum.IsDefined(o.Device))
            problems.Add($"{type}.{nameof(o.Device)} {(int)o.Device} is not one of {string.Join(", ", Enum.GetNames<ExecutionDevice>())}.");
        if (o.DeviceId < 0)
            problems.Add($"{type}.{nameof(o.DeviceId)} must be 0 or more; got {o.DeviceId}.");
        if (o.IntraOpThreads < 0)
            problems.Add($"{type}.{nameof(o.IntraOpThreads)} must be 0 (ONNX Runtime chooses) or more; got {o.IntraOpThreads}.");
        if (o.InterOpThreads < 0)
            problems.Add($"{type}.{nameof(o.InterOpThreads)} must be 0 (ONNX Runtime chooses) or more; got {o.InterOpThreads}.");
        if (o.MaxBatchSize < 1)
            problems.Add($"{type}.{nameof(o.MaxBatchSize)} must be 1 or more; got {o.MaxBatchSize}.");

        const string generation = $"{type}.{nameof(StableDiffusionServiceOptions.DefaultGenerationOptions)}";
        var g = o.DefaultGenerationOptions;
        if (g is null)
        {
            problems.Add($"{generation} must not be null.");
            return problems;
        }
        foreach (var (value, option) in new[] { (g.Width, nameof(g.Width)), (g.Height, nameof(g.Height)) })
            if (value is int v && (v < 8 || v > 4096 || v % 8 != 0))
                problems.Add($"{generation}.{option} must be a multiple of 8 from 8 to 4096 (or null for the model's default); got {v}.");
        if (g.Steps < 1 || g.Steps > 1000)
            problems.Add($"{generation}.{nameof(g.Steps)} must be from 1 to 1000; got {g.Steps}.");
        if (!float.IsFinite(g.GuidanceScale))
            problems.Add($"{generation}.{nameof(g.GuidanceScale)} must be a finite number; got {g.GuidanceScale}.");
        if (!(g.Eta >= 0 && g.Eta <= 1))
            problems.Add($"{generation}.{nameof(g.Eta)} must be from 0 to 1; got {g.Eta}.");
        if (!string.IsNullOrWhiteSpace(g.Scheduler))
        {
            try
            {
                SchedulerFactory.Create(g.Scheduler, SchedulerConfig.Empty);
            }
            catch (ArgumentException e)
            {
                problems.Add($"{generation}.{nameof(g.Scheduler)}: {e.Message.Split(" (Parameter", 2)[0]}");
            }
        }
        return problems;
    }
}

using Microsoft.Extensions.Options;
using MLNet.Diffusion.Pipeline;

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
        if (o.Runtime is null)
            problems.Add($"{type}.{nameof(o.Runtime)} must not be null.");
        else
            problems.AddRange(SettingLimits.Problems(o.Runtime, $"{type}.{nameof(o.Runtime)}"));
        if (o.MaxBatchSize < 1)
            problems.Add($"{type}.{nameof(o.MaxBatchSize)} must be 1 or more; got {o.MaxBatchSize}.");
        if (o.DefaultGenerationOptions is null)
            problems.Add($"{type}.{nameof(o.DefaultGenerationOptions)} must not be null.");
        else
        {
            const string generation = $"{type}.{nameof(o.DefaultGenerationOptions)}";
            problems.AddRange(SettingLimits.Problems(o.DefaultGenerationOptions, generation));
            if (SettingLimits.Scheduler($"{generation}.{nameof(GenerationOptions.Scheduler)}", o.DefaultGenerationOptions.Scheduler) is { } scheduler)
                problems.Add(scheduler);
        }
        return problems;
    }
}

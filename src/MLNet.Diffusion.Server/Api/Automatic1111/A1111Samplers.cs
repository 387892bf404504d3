using MLNet.Diffusion.Server.Errors;

namespace MLNet.Diffusion.Server.Api.Automatic1111;

/// <summary>
/// AUTOMATIC1111's sampler names (its <c>modules/sd_samplers_kdiffusion.py</c> and <c>sd_samplers_timesteps.py</c>
/// tables, with their k-diffusion aliases) mapped to the engine's schedulers of the same method, for those the engine
/// has. A request may also name an engine scheduler directly (<c>euler-a</c>, <c>dpm++2m-karras</c>…).
/// </summary>
internal static class A1111Samplers
{
    /// <summary>A sampler: A1111's name, its aliases, and the engine's scheduler.</summary>
    public sealed record Sampler(string Name, string[] Aliases, string Scheduler);

    /// <summary>The samplers served, in A1111's order.</summary>
    public static IReadOnlyList<Sampler> All { get; } =
    [
        new("DPM++ 2M", ["k_dpmpp_2m"], "dpm++2m"),
        new("DPM++ 2M Karras", ["k_dpmpp_2m_ka"], "dpm++2m-karras"),
        new("DPM++ 2M SDE", ["k_dpmpp_2m_sde"], "dpm++2m-sde"),
        new("DPM++ 2M SDE Karras", ["k_dpmpp_2m_sde_ka"], "dpm++2m-sde-karras"),
        new("Euler a", ["k_euler_a", "k_euler_ancestral"], "euler-a"),
        new("Euler", ["k_euler"], "euler"),
        new("LMS", ["k_lms"], "lms"),
        new("LMS Karras", ["k_lms_ka"], "lms-karras"),
        new("Heun", ["k_heun"], "heun"),
        new("DPM2", ["k_dpm_2"], "kdpm2"),
        new("DPM2 Karras", ["k_dpm_2_ka"], "kdpm2-karras"),
        new("DDIM", ["ddim"], "ddim"),
        new("PLMS", ["plms"], "pndm"),
        new("UniPC", ["unipc"], "unipc"),
        new("LCM", ["k_lcm"], "lcm"),
    ];

    /// <summary>
    /// The engine scheduler for <paramref name="name"/> (A1111 name or alias, any case, or an engine scheduler name),
    /// with A1111's separate <c>scheduler</c> field's "Karras" applied; null when neither is given.
    /// </summary>
    public static string? Resolve(string? name, string? schedule, string param)
    {
        if (string.IsNullOrWhiteSpace(name)) return null;
        var sampler = All.FirstOrDefault(s => s.Name.Equals(name, StringComparison.OrdinalIgnoreCase)
                                              || s.Aliases.Any(a => a.Equals(name, StringComparison.OrdinalIgnoreCase)));
        string scheduler = sampler?.Scheduler ?? name;
        if (schedule is not null && schedule.Equals("Karras", StringComparison.OrdinalIgnoreCase) && !scheduler.EndsWith("-karras", StringComparison.Ordinal))
            scheduler += "-karras";
        if (MLNet.Diffusion.Pipeline.SettingLimits.Scheduler($"'{param}'", scheduler) is not null)
            throw RequestException.BadValue(param,
                $"'{param}' \"{name}\"{(schedule is null ? "" : $" with scheduler \"{schedule}\"")} is not a sampler this server has; it has: {string.Join(", ", All.Select(s => s.Name))} (GET /sdapi/v1/samplers).");
        return scheduler;
    }
}

using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// Which model calls of a guided batch apply classifier-free guidance; the others run the conditional half alone (one UNet
/// row per image instead of two). Two rules, each optional, both from the call's <see cref="GenerationOptions"/>:
/// <list type="bullet">
/// <item>the guidance interval (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval improves sample and
/// distribution quality in diffusion models", NeurIPS, eq. 4): guidance only where the call's noise level σ lies in
/// (<see cref="GenerationOptions.GuidanceIntervalLow"/>, <see cref="GenerationOptions.GuidanceIntervalHigh"/>], σ being
/// √((1 − ᾱ_t)/ᾱ_t) at the call's timestep t (interpolated for a fractional one, as the Euler-type schedulers map σ to t);
/// the paper finds guidance harmful at high noise (it narrows the distribution) and useless at low noise;</item>
/// <item>the guidance end (diffusers' documented practice of setting the guidance scale to 0 from a step on, through
/// <c>callback_on_step_end</c>): guidance for calls 0 … ⌊calls·f⌋ − 1 of the schedule only.</item>
/// </list>
/// Computed once per batch, so the loop reads one flag per call.
/// </summary>
internal static class GuidanceWindow
{
    /// <summary>One flag per call of <paramref name="scheduler"/>'s schedule (after <see cref="DiffusionScheduler.SetTimesteps"/>),
    /// or null when every call is guided (neither rule is set).</summary>
    public static bool[]? For(DiffusionScheduler scheduler, GenerationOptions options)
    {
        if (options.GuidanceIntervalLow is null && options.GuidanceIntervalHigh is null && options.GuidanceEnd is null) return null;
        double low = options.GuidanceIntervalLow ?? 0, high = options.GuidanceIntervalHigh ?? double.PositiveInfinity;
        int calls = scheduler.CallCount;
        int end = options.GuidanceEnd is float f ? (int)(calls * (double)f) : calls;
        var trainSigmas = SchedulerMath.Sigmas(scheduler.AlphasCumprod);
        var guided = new bool[calls];
        for (int i = 0; i < calls; i++)
        {
            double sigma = SchedulerMath.SigmaAtTimestep(scheduler.Timesteps[i], trainSigmas);
            guided[i] = i < end && sigma > low && sigma <= high;
        }
        return guided;
    }
}

using System.Globalization;

namespace MLNet.Diffusion.Schedulers;

/// <summary>
/// The base → refiner hand-off of Stable Diffusion XL ("ensemble of expert denoisers", Podell et al. 2023,
/// arXiv:2307.01952, § 2.5): the base model runs the high-noise part of a schedule and the refiner the rest, split at a
/// fraction f of the training timesteps, as diffusers' <c>denoising_end</c> (<c>StableDiffusionXLPipeline.__call__</c>,
/// "Apply denoising_end") and <c>denoising_start</c> (<c>StableDiffusionXLImg2ImgPipeline.get_timesteps</c>).
/// Both sides compute the same cutoff c = int(round(N − f·N)), N = <c>num_train_timesteps</c>; the base runs the calls
/// whose timestep is at least c, the refiner those below it, so with the same scheduler and step count every model call
/// of the schedule runs exactly once.
/// </summary>
/// <remarks>
/// For a second-order scheduler (<see cref="DiffusionScheduler.Order"/> 2: Heun, KDPM2) diffusers' refiner side adds one
/// call when the count below the cutoff is even, so that it begins with the first call of a step; the base side has no such
/// rule. With Heun the two sides then share one call: the base's last call (the first of its step) is the refiner's first.
/// Both are reproduced as diffusers has them.
/// </remarks>
internal static class DenoisingSplit
{
    /// <summary>
    /// The timestep cutoff c = int(round(N − f·N)) of both sides (Python's <c>round</c>: half to even), for
    /// 0 &lt; <paramref name="fraction"/> &lt; 1.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The fraction is not strictly between 0 and 1.</exception>
    public static int Cutoff(int numTrainTimesteps, double fraction)
    {
        if (!(fraction > 0 && fraction < 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction,
                string.Create(CultureInfo.InvariantCulture, $"The denoising split must be a fraction strictly between 0 and 1 (for example 0.8), found {fraction}."));
        return (int)Math.Round(numTrainTimesteps - fraction * numTrainTimesteps, MidpointRounding.ToEven);
    }

    /// <summary>
    /// diffusers' <c>denoising_end</c>: the number of model calls the base runs from the start of the schedule, the count
    /// of <see cref="DiffusionScheduler.Timesteps"/> at or above the cutoff. Call after
    /// <see cref="DiffusionScheduler.SetTimesteps"/>; run calls 0 … result − 1 and hand the latents over.
    /// </summary>
    /// <exception cref="InvalidOperationException"><see cref="DiffusionScheduler.SetTimesteps"/> was not called.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The fraction is not strictly between 0 and 1.</exception>
    public static int EndCallCount(DiffusionScheduler scheduler, double denoisingEnd)
    {
        var timesteps = TimestepsOf(scheduler);
        int cutoff = Cutoff(scheduler.NumTrainTimesteps, denoisingEnd);
        int count = 0;
        foreach (var t in timesteps)
            if (t >= cutoff) count++;
        return count;
    }

    /// <summary>
    /// diffusers' <c>denoising_start</c>: the index of the refiner's first model call, <see cref="DiffusionScheduler.CallCount"/>
    /// minus the count of timesteps below the cutoff (plus one when that count is even for a second-order scheduler). Pass it
    /// to <see cref="DiffusionScheduler.SetBeginIndex"/>; the latents come from the base as they are (no noise is added).
    /// </summary>
    /// <exception cref="InvalidOperationException"><see cref="DiffusionScheduler.SetTimesteps"/> was not called.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The fraction is not strictly between 0 and 1.</exception>
    public static int StartCallIndex(DiffusionScheduler scheduler, double denoisingStart)
    {
        var timesteps = TimestepsOf(scheduler);
        int cutoff = Cutoff(scheduler.NumTrainTimesteps, denoisingStart);
        int count = 0;
        foreach (var t in timesteps)
            if (t < cutoff) count++;
        if (scheduler.Order == 2 && count % 2 == 0) count++;
        return timesteps.Length - count;
    }

    private static ReadOnlySpan<float> TimestepsOf(DiffusionScheduler scheduler)
    {
        ArgumentNullException.ThrowIfNull(scheduler);
        if (scheduler.CallCount == 0)
            throw new InvalidOperationException($"{scheduler.Name}: call SetTimesteps before splitting the schedule between base and refiner.");
        return scheduler.Timesteps;
    }
}

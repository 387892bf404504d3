using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.Oracles;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>Managed allocation of a scheduler's steps, shared by the α-family and σ-family test kits.</summary>
internal static class SchedulerAllocation
{
    /// <summary>
    /// Bytes allocated on this thread by all calls after the first one of a generation driven by
    /// <paramref name="oracle"/>: the least over three generations, since the runtime itself may allocate once on a
    /// thread (tiered JIT, type loading) while a step that allocates does so in every generation.
    /// </summary>
    public static long AfterFirstCall(DiffusionScheduler scheduler, GaussianOracle oracle, INoiseSource noise, int steps, int length)
    {
        var sample = new float[length];
        var input = new float[length];
        var output = new float[length];
        long least = long.MaxValue;
        for (int run = 0; run < 3; run++)
        {
            scheduler.SetTimesteps(steps);
            noise.Fill(sample);
            long before = 0;
            while (scheduler.StepIndex < scheduler.CallCount)
            {
                if (scheduler.StepIndex == 1) before = GC.GetAllocatedBytesForCurrentThread();
                scheduler.ScaleModelInput(sample, input);
                oracle.Predict(input, scheduler.Timesteps[scheduler.StepIndex], output);
                scheduler.Step(output, sample, noise);
            }
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return least;
    }
}

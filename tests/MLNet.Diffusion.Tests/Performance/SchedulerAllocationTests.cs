using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Performance;

/// <summary>After its first steps at a size, a scheduler step allocates nothing (the denoising loop's budget is zero bytes per step).</summary>
[Collection(AllocationCollection.Name)]
public class SchedulerAllocationTests
{
    public static TheoryData<string> Names => ["pndm", "ddim", "ddpm", "lms", "euler", "euler-a", "dpm++2m", "dpm++2m-karras", "dpm++2m-sde", "heun", "kdpm2", "lcm", "unipc", "deis", "dpm++2s"];

    [Theory]
    [MemberData(nameof(Names))]
    public void StepsAllocateNothingAfterWarmUp(string name)
    {
        var config = SchedulerConfig.Parse(TestModelOptions.Sd15PndmSchedulerConfig, "sd15");
        var scheduler = SchedulerFactory.Create(name, config);
        if (scheduler is DdimScheduler ddim) ddim.Eta = 0.5; // the stochastic branch too
        var runs = new List<IReadOnlyList<(long, bool)>>();
        for (int run = 0; run < 3; run++) runs.Add(Run(scheduler, name));
        AllocationProbe.AssertZeroPerStep(runs, name);
    }

    /// <summary>One schedule with the same scheduler (its buffers are reused): the bytes of each step after the first four.</summary>
    private static List<(long, bool)> Run(DiffusionScheduler scheduler, string name)
    {
        scheduler.SetTimesteps(name == "lcm" ? 8 : 20);
        int n = 2 * 4 * 16 * 16;
        var sample = new float[n];
        var model = new float[n];
        var scaled = new float[n];
        var noise = new GaussianNoise(1);
        noise.Fill(sample);
        noise.Fill(model);
        void OneStep()
        {
            scheduler.ScaleModelInput(sample, scaled);
            scheduler.Step(model, sample, noise);
        }
        for (int i = 0; i < 4; i++) OneStep(); // warm-up: scratch buffers, multistep history, JIT
        var samples = new List<(long, bool)>();
        while (scheduler.StepIndex < scheduler.CallCount) samples.Add(AllocationProbe.Measure(OneStep));
        return samples;
    }
}

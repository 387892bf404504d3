using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>
/// SD-Turbo and SDXL-Turbo (Adversarial Diffusion Distillation, 1 to 4 steps) with their own scheduler configurations:
/// trailing spacing, so one step starts at timestep 999 from pure noise. Expected values: diffusers'
/// <c>EulerDiscreteScheduler</c> and <c>EulerAncestralDiscreteScheduler</c> <c>set_timesteps</c> run on the same files
/// (float32 σ; our σ are double, so they agree to about 1e-6 relative).
/// </summary>
public class TurboScheduleTests
{
    public static TheoryData<string, string, int, float[], double[]> Schedules()
    {
        var data = new TheoryData<string, string, int, float[], double[]>();
        foreach (var model in new[] { "sd-turbo", "sdxl-turbo" })
            foreach (var scheduler in new[] { "", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler" })
            {
                data.Add(model, scheduler, 1, [999], [14.614645004272461, 0]);
                data.Add(model, scheduler, 2, [999, 499], [14.614645004272461, 1.6128870248794556, 0]);
                data.Add(model, scheduler, 3, [999, 666, 332], [14.614645004272461, 2.9183082580566406, 0.9292147159576416, 0]);
                data.Add(model, scheduler, 4, [999, 749, 499, 249], [14.614645004272461, 4.081730842590332, 1.6128870248794556, 0.6932054162025452, 0]);
            }
        return data;
    }

    [Theory]
    [MemberData(nameof(Schedules))]
    public void FactoryWithTheReleasedConfigGivesDiffusersTimestepsSigmasAndInitialNoise(string model, string scheduler, int steps, float[] timesteps, double[] sigmas)
    {
        // "" takes the class the file names (_class_name), as loading the folder does.
        var s = SchedulerFactory.Create(scheduler, ReleasedSchedulerConfigs.Load(model));
        s.SetTimesteps(steps);

        Assert.Equal(timesteps, s.Timesteps.ToArray());
        Assert.Equal(steps, s.CallCount);
        var actual = s switch
        {
            EulerDiscreteScheduler e => e.Sigmas.ToArray(),
            EulerAncestralScheduler a => a.Sigmas.ToArray(),
            _ => throw new InvalidOperationException($"{s.Name} was not expected for {model}."),
        };
        Assert.Equal(sigmas.Length, actual.Length);
        for (int i = 0; i < sigmas.Length; i++)
            Assert.True(Math.Abs(actual[i] - sigmas[i]) <= 2e-6 * sigmas[i], $"σ[{i}] = {actual[i]:R}, diffusers {sigmas[i]:R}");
        // Trailing spacing: init_noise_sigma is σ_max itself (no √(σ² + 1)), the noise level of timestep 999.
        Assert.Equal(14.614645004272461, s.InitNoiseSigma, 1e-4);
    }

    [Theory]
    [InlineData("sd-turbo", "EulerDiscreteScheduler")]
    [InlineData("sdxl-turbo", "EulerAncestralDiscreteScheduler")]
    public void TheFolderNamesItsScheduler(string model, string expected)
    {
        Assert.Equal(expected, SchedulerFactory.Create(null, ReleasedSchedulerConfigs.Load(model)).Name);
    }

    [Fact]
    public void OneStepFromPureNoiseScalesTheInputToUnitVarianceAndLandsOnTheDenoisedEstimate()
    {
        // One Euler step from σ_max to 0 with the exact ε: x = σ·ε → the UNet sees x/√(σ² + 1), and x − σ·ε = 0.
        var s = SchedulerFactory.Create(null, ReleasedSchedulerConfigs.Load("sd-turbo"));
        s.SetTimesteps(1);
        float sigma = s.InitNoiseSigma;
        float[] eps = [1f, -0.5f, 2f, 0f];
        var x = Array.ConvertAll(eps, e => e * sigma);
        var scaled = new float[x.Length];
        s.ScaleModelInput(x, scaled);
        for (int i = 0; i < x.Length; i++)
            Assert.Equal(eps[i] * sigma / Math.Sqrt(sigma * (double)sigma + 1), scaled[i], 1e-5);
        s.Step(eps, x);
        Assert.All(x, v => Assert.Equal(0f, v, 1e-5f));
    }
}

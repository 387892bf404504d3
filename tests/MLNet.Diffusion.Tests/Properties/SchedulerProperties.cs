using System.Globalization;
using CsCheck;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Properties;

/// <summary>Properties every scheduler must keep for any valid configuration and step count.</summary>
public class SchedulerProperties
{
    private static readonly string[] Schedulers =
        ["pndm", "ddim", "ddpm", "lms", "euler", "euler-a", "dpm++2m", "dpm++2m-karras", "dpm++2m-sde", "heun", "kdpm2", "lcm", "unipc", "deis", "dpm++2s"];

    /// <summary>A random but valid scheduler_config.json.</summary>
    private static readonly Gen<string> Configs =
        Gen.Select(
            Picks.OneOf("linear", "scaled_linear", "squaredcos_cap_v2"),
            Gen.Double[0.00005, 0.002],
            Gen.Double[0.005, 0.03],
            Picks.OneOf("linspace", "leading", "trailing"),
            Gen.Int[0, 1],
            Picks.OneOf("epsilon", "v_prediction"),
            Gen.Bool,
            (schedule, start, end, spacing, offset, prediction, alphaToOne) => string.Create(CultureInfo.InvariantCulture,
                $$"""{"beta_schedule":"{{schedule}}","beta_start":{{start}},"beta_end":{{end}},"timestep_spacing":"{{spacing}}","steps_offset":{{offset}},"prediction_type":"{{prediction}}","set_alpha_to_one":{{(alphaToOne ? "true" : "false")}},"skip_prk_steps":true,"num_train_timesteps":1000}"""));

    [Fact]
    public void TimestepsDecreaseStepByStepAndStayInTheTrainingRange()
    {
        Gen.Select(Picks.OneOf(Schedulers), Configs, Gen.Int[1, 60]).Sample((name, json, steps) =>
        {
            var scheduler = SchedulerFactory.Create(name, SchedulerConfig.Parse(json));
            if (name == "lcm") steps = Math.Min(steps, 50); // LCM's schedule is a subset of its 50 original steps
            scheduler.SetTimesteps(steps);
            var t = scheduler.Timesteps.ToArray();
            Assert.True(t.Length >= steps, $"{name}: {t.Length} calls for {steps} steps");
            Assert.All(t, v => Assert.InRange(v, -1e-3f, scheduler.NumTrainTimesteps - 1 + 1e-3f));
            // Model calls never go back up in noise level; repeated values only for multi-call steps.
            for (int i = 1; i < t.Length; i++) Assert.True(t[i] <= t[i - 1], $"{name} {json}: t[{i}] = {t[i]} after {t[i - 1]}");
            // Distinct timesteps: as many as steps (a step never repeats an earlier level). Karras σ are
            // spaced by noise level, and at low σ several round to the same integer timestep (as in
            // diffusers), so only their non-increase is required.
            if (!name.EndsWith("-karras", StringComparison.Ordinal)) Assert.True(t.Distinct().Count() >= Math.Min(steps, t.Length) - 1, $"{name}: {t.Distinct().Count()} distinct for {steps} steps");
        }, iter: 300);
    }

    [Fact]
    public void FiniteInputsGiveFiniteOutputsAtEveryStep()
    {
        Gen.Select(Picks.OneOf(Schedulers), Configs, Gen.Int[1, 30], Gen.Float[-4, 4].Array[64]).Sample((name, json, steps, start) =>
        {
            var scheduler = SchedulerFactory.Create(name, SchedulerConfig.Parse(json));
            scheduler.SetTimesteps(Math.Min(steps, name == "lcm" ? 50 : steps));
            var sample = (float[])start.Clone();
            var input = new float[sample.Length];
            var output = new float[sample.Length];
            var noise = new GaussianNoise(1);
            while (scheduler.StepIndex < scheduler.CallCount)
            {
                scheduler.ScaleModelInput(sample, input);
                for (int i = 0; i < output.Length; i++) output[i] = MathF.Sin(input[i] * 3 + i); // any bounded model
                scheduler.Step(output, sample, noise);
                Assert.All(sample, v => Assert.True(float.IsFinite(v), $"{name} {json}: non-finite sample at call {scheduler.StepIndex}"));
            }
        }, iter: 200);
    }
}

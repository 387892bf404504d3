using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>
/// The full-loop figures of diffusers' own scheduler test suite (tests/schedulers/test_scheduler_*.py,
/// <c>test_full_loop_*</c>), reproduced: the deterministic sample arange(768)/768 (its layout does not matter, every
/// step being element-wise), the dummy model F(x, t) = x·t/(t + 1), 10 inference steps, and the loop as diffusers
/// writes it — for the σ schedulers the scaled input replaces the sample before the step (<c>sample =
/// scale_model_input(sample, t)</c>, a quirk of those tests kept here), DDIM/PNDM/DPM-Solver step the sample as is.
/// The result is Σ|x| (or its mean where diffusers asserts only the mean), compared with diffusers' figure to the
/// larger of diffusers' own tolerance (1e-2 on sums, 1e-3 on means) and 1e-5 relative (float32 sums of 768 values
/// carried through up to 19 calls: LMS with Karras σ lands 0.03 from 3812.99, 8e-6 relative).
/// </summary>
public class DiffusersReferenceLoopTests
{
    private const string Linear1100 = """{"num_train_timesteps":1100,"beta_start":0.0001,"beta_end":0.02,"beta_schedule":"linear"}""";
    private const string Linear1000 = """{"num_train_timesteps":1000,"beta_start":0.0001,"beta_end":0.02,"beta_schedule":"linear"}""";
    private const string Linear1000Start01 = """{"num_train_timesteps":1000,"beta_start":0.01,"beta_end":0.02,"beta_schedule":"linear"}""";
    // test_scheduler_dpm_multi.py's get_scheduler_config (its figures are for final_sigmas_type sigma_min).
    private const string DpmConfig = """{"num_train_timesteps":1000,"beta_start":0.0001,"beta_end":0.02,"beta_schedule":"linear","solver_order":2,"prediction_type":"epsilon","algorithm_type":"dpmsolver++","solver_type":"midpoint","lower_order_final":false,"euler_at_final":false,"final_sigmas_type":"sigma_min"}""";

    // test_scheduler_unipc.py's get_scheduler_config, before and after final_sigmas_type was added to it.
    private const string UniPcBh1Config = """{"num_train_timesteps":1000,"beta_start":0.0001,"beta_end":0.02,"beta_schedule":"linear","solver_order":2,"solver_type":"bh1","final_sigmas_type":"sigma_min"}""";
    private const string UniPcBh2Config = """{"num_train_timesteps":1000,"beta_start":0.0001,"beta_end":0.02,"beta_schedule":"linear","solver_order":2,"solver_type":"bh2","final_sigmas_type":"sigma_min"}""";

    // test_scheduler_deis.py's get_scheduler_config.
    private const string DeisConfig = """{"num_train_timesteps":1000,"beta_start":0.0001,"beta_end":0.02,"beta_schedule":"linear","solver_order":2}""";

    // test_scheduler_dpm_single.py's get_scheduler_config. Its figures predate final_sigmas_type and the [1, 1] ending of
    // the order list (10 steps were [1, 2] × 5, ending at σ_min); today's equivalent is lower_order_final false and
    // final_sigmas_type sigma_min, which this configuration sets.
    private const string SinglestepConfig = """{"num_train_timesteps":1000,"beta_start":0.0001,"beta_end":0.02,"beta_schedule":"linear","solver_order":2,"prediction_type":"epsilon","algorithm_type":"dpmsolver++","solver_type":"midpoint","lower_order_final":false,"final_sigmas_type":"sigma_min"}""";

    public static TheoryData<string, string, string, bool, double> Cases => new()
    {
        // scheduler, base configuration, overrides (JSON members), mean instead of sum, diffusers' figure
        { "EulerDiscreteScheduler", Linear1100, "", false, 10.0807 },
        { "EulerDiscreteScheduler", Linear1100, "\"use_karras_sigmas\":true", false, 124.52299499511719 },
        { "EulerDiscreteScheduler", Linear1100, "\"prediction_type\":\"v_prediction\"", false, 0.0002 },
        { "HeunDiscreteScheduler", Linear1100, "", false, 0.1233 },
        { "HeunDiscreteScheduler", Linear1100, "\"use_karras_sigmas\":true", false, 0.00015 },
        { "HeunDiscreteScheduler", Linear1100, "\"prediction_type\":\"v_prediction\"", false, 4.6934e-07 },
        { "LMSDiscreteScheduler", Linear1100, "", false, 1006.388 },
        { "LMSDiscreteScheduler", Linear1100, "\"use_karras_sigmas\":true", false, 3812.9927 },
        { "LMSDiscreteScheduler", Linear1100, "\"prediction_type\":\"v_prediction\"", false, 0.0017 },
        { "KDPM2DiscreteScheduler", Linear1100, "", false, 20.4125 },
        { "KDPM2DiscreteScheduler", Linear1100, "\"prediction_type\":\"v_prediction\"", false, 4.6934e-07 },
        { "DDIMScheduler", Linear1000, "\"clip_sample\":true", false, 172.0067 },
        { "DDIMScheduler", Linear1000, "\"clip_sample\":true,\"prediction_type\":\"v_prediction\"", false, 52.5302 },
        { "DDIMScheduler", Linear1000Start01, "\"clip_sample\":true,\"set_alpha_to_one\":true", false, 149.8295 },
        { "DDIMScheduler", Linear1000Start01, "\"clip_sample\":true,\"set_alpha_to_one\":false", false, 149.0784 },
        { "PNDMScheduler", Linear1000, "", false, 198.1318 },
        { "PNDMScheduler", Linear1000Start01, "\"set_alpha_to_one\":true", false, 230.0399 },
        { "PNDMScheduler", Linear1000Start01, "\"set_alpha_to_one\":false", false, 186.9482 },
        { "DPMSolverMultistepScheduler", DpmConfig, "", true, 0.3301 },
        { "DPMSolverMultistepScheduler", DpmConfig, "\"prediction_type\":\"v_prediction\"", true, 0.2251 },
        { "DPMSolverMultistepScheduler", DpmConfig, "\"prediction_type\":\"v_prediction\",\"use_karras_sigmas\":true", true, 0.2096 },
        // UniPC: the older suite (bh1; its figures predate final_sigmas_type, when the last step ended at σ_min) …
        { "UniPCMultistepScheduler", UniPcBh1Config, "", true, 0.2521 },
        { "UniPCMultistepScheduler", UniPcBh1Config, "\"prediction_type\":\"v_prediction\"", true, 0.1096 },
        // … and the current one (bh2, final_sigmas_type sigma_min in its configuration).
        { "UniPCMultistepScheduler", UniPcBh2Config, "", true, 0.2464 },
        { "UniPCMultistepScheduler", UniPcBh2Config, "\"use_karras_sigmas\":true", true, 0.2925 },
        { "UniPCMultistepScheduler", UniPcBh2Config, "\"prediction_type\":\"v_prediction\"", true, 0.1014 },
        { "UniPCMultistepScheduler", UniPcBh2Config, "\"prediction_type\":\"v_prediction\",\"use_karras_sigmas\":true", true, 0.1966 },
        { "DEISMultistepScheduler", DeisConfig, "", true, 0.23916 },
        { "DEISMultistepScheduler", DeisConfig, "\"prediction_type\":\"v_prediction\"", true, 0.091 },
        { "DPMSolverSinglestepScheduler", SinglestepConfig, "", true, 0.2791 },
        { "DPMSolverSinglestepScheduler", SinglestepConfig, "\"use_karras_sigmas\":true", true, 0.2248 },
        { "DPMSolverSinglestepScheduler", SinglestepConfig, "\"prediction_type\":\"v_prediction\"", true, 0.1453 },
        { "DPMSolverSinglestepScheduler", SinglestepConfig, "\"prediction_type\":\"v_prediction\",\"use_karras_sigmas\":true", true, 0.0649 },
    };

    public static TheoryData<string, string, int, double, double> NoisedStartCases => new()
    {
        // scheduler, configuration, first step (t_start), diffusers' Σ|x| and mean|x|
        { "DDIMScheduler", Linear1000[..^1] + ",\"clip_sample\":true}", 8, 354.5418, 0.4616 },
        { "KDPM2DiscreteScheduler", Linear1100, 8, 70408.4062, 91.6776 },
        { "DPMSolverMultistepScheduler", DpmConfig, 5, 318.4111, 0.4146 },
        { "UniPCMultistepScheduler", UniPcBh2Config, 8, 315.5757, 0.4109 },
        { "DEISMultistepScheduler", DeisConfig, 8, 315.3016, 0.41054 },
        { "DPMSolverSinglestepScheduler", SinglestepConfig, 5, 269.2187, 0.3505 },
    };

    /// <summary>
    /// diffusers' <c>test_full_loop_with_noise</c>, the image-to-image start: the deterministic noise is the sample
    /// reversed ((767 − i)/768, diffusers' <c>dummy_noise_deter</c>), added with <c>add_noise</c> at the call where the
    /// loop begins (t_start · order), and the loop runs from there.
    /// </summary>
    [Theory]
    [MemberData(nameof(NoisedStartCases))]
    public void NoisedStartMatchesDiffusersTestSuite(string scheduler, string config, int firstStep, double expectedSum, double expectedMean)
    {
        var s = SchedulerFactory.Create(scheduler, SchedulerConfig.Parse(config, "diffusers test configuration"));
        bool sigmaLoop = scheduler == "KDPM2DiscreteScheduler";
        s.SetTimesteps(10);
        const int n = 768;
        var original = new float[n];
        var noise = new float[n];
        for (int i = 0; i < n; i++)
        {
            original[i] = i / (float)n * (sigmaLoop ? s.InitNoiseSigma : 1f);
            noise[i] = (n - 1 - i) / (float)n;
        }
        int begin = s.FirstCallOfStep(firstStep);
        var sample = new float[n];
        s.AddNoise(original, noise, begin, sample);
        s.SetBeginIndex(begin);
        RunDummyModel(s, sample, sigmaLoop);
        double sum = sample.Sum(v => Math.Abs((double)v));
        Assert.True(Math.Abs(sum - expectedSum) <= Math.Max(1e-2, 1e-5 * expectedSum), $"{scheduler}: Σ|x| = {sum:G9}, diffusers {expectedSum}");
        Assert.True(Math.Abs(sum / n - expectedMean) <= Math.Max(1e-3, 1e-5 * expectedMean), $"{scheduler}: mean {sum / n:G9}, diffusers {expectedMean}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FullLoopMatchesDiffusersTestSuite(string scheduler, string config, string overrides, bool mean, double expected)
    {
        string json = overrides.Length == 0 ? config : config[..^1] + "," + overrides + "}";
        var s = SchedulerFactory.Create(scheduler, SchedulerConfig.Parse(json, "diffusers test configuration"));
        // diffusers' σ-scheduler tests scale the sample by init_noise_sigma and reassign the scaled input; the others do neither.
        bool sigmaLoop = scheduler is "EulerDiscreteScheduler" or "HeunDiscreteScheduler" or "LMSDiscreteScheduler" or "KDPM2DiscreteScheduler";
        s.SetTimesteps(10);
        const int n = 768;
        var sample = new float[n];
        for (int i = 0; i < n; i++) sample[i] = i / (float)n * (sigmaLoop ? s.InitNoiseSigma : 1f);
        RunDummyModel(s, sample, sigmaLoop);
        double result = sample.Sum(v => Math.Abs((double)v)) / (mean ? n : 1);
        double tolerance = Math.Max(mean ? 1e-3 : 1e-2, 1e-5 * Math.Abs(expected));
        Assert.True(Math.Abs(result - expected) <= tolerance, $"{scheduler} {overrides}: {result:G9}, diffusers {expected} (±{tolerance:G3})");
    }

    /// <summary>
    /// diffusers' loop from the scheduler's current call to the end with the dummy model F(x, t) = x·t/(t + 1); with
    /// <paramref name="sigmaLoop"/> the scaled input replaces the sample before each step, as those tests write it.
    /// </summary>
    private static void RunDummyModel(DiffusionScheduler s, float[] sample, bool sigmaLoop)
    {
        var scaled = new float[sample.Length];
        var model = new float[sample.Length];
        while (s.StepIndex < s.CallCount)
        {
            float t = s.Timesteps[s.StepIndex];
            if (sigmaLoop)
            {
                s.ScaleModelInput(sample, scaled);
                scaled.CopyTo(sample, 0);
            }
            for (int i = 0; i < sample.Length; i++) model[i] = sample[i] * t / (t + 1);
            s.Step(model, sample);
        }
    }
}

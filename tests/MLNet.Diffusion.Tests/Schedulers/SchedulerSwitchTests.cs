using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>
/// Choosing a scheduler by name keeps the folder's configuration, as diffusers' <c>from_config</c> does (its
/// <c>test_switch</c>): keys meant for another class (DPM-Solver's <c>algorithm_type</c> or <c>final_sigmas_type</c>,
/// UniPC's <c>solver_type: bh2</c>, PNDM's <c>skip_prk_steps</c>) must be mapped or ignored, never fail the run.
/// </summary>
public class SchedulerSwitchTests
{
    private const string Noise = """ "beta_start":0.00085,"beta_end":0.012,"beta_schedule":"scaled_linear","num_train_timesteps":1000 """;

    public static TheoryData<string, string> FolderConfigs()
    {
        string[] configs =
        [
            "{\"_class_name\":\"PNDMScheduler\"," + Noise + ",\"set_alpha_to_one\":false,\"skip_prk_steps\":true,\"steps_offset\":1,\"clip_sample\":false}",
            "{\"_class_name\":\"DPMSolverMultistepScheduler\"," + Noise + ",\"algorithm_type\":\"dpmsolver++\",\"solver_type\":\"midpoint\",\"final_sigmas_type\":\"zero\",\"use_karras_sigmas\":true}",
            "{\"_class_name\":\"UniPCMultistepScheduler\"," + Noise + ",\"solver_type\":\"bh2\",\"predict_x0\":true,\"disable_corrector\":[]}",
            "{\"_class_name\":\"DEISMultistepScheduler\"," + Noise + ",\"algorithm_type\":\"deis\",\"solver_type\":\"logrho\"}",
            "{\"_class_name\":\"EulerDiscreteScheduler\"," + Noise + ",\"timestep_spacing\":\"leading\",\"steps_offset\":1,\"interpolation_type\":\"linear\"}",
        ];
        var data = new TheoryData<string, string>();
        foreach (var config in configs)
            foreach (var name in SchedulerFactory.Names.Where(n => !n.EndsWith("Scheduler", StringComparison.Ordinal)))
                data.Add(config, name);
        return data;
    }

    [Theory]
    [MemberData(nameof(FolderConfigs))]
    public void EverySchedulerRunsOnEveryFoldersConfiguration(string folderConfig, string name)
    {
        var scheduler = SchedulerFactory.Create(name, SchedulerConfig.Parse(folderConfig, "folder"));
        double error = SigmaTestKit.FixedTargetError(scheduler, 10);
        // The start is noise of σ up to 14.6; any working sampler ends near a fixed target (σ_min-ending ones within
        // a few σ_min, PNDM within √(1 − ᾱ₀)).
        Assert.True(double.IsFinite(error) && error < 0.5, $"{name} on {folderConfig}: max error {error}");
    }
}

using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

public class SchedulerConfigTests
{
    [Fact]
    public void PythonInfinityLiteralsParseWhereAllowed()
    {
        // diffusers saves DPMSolverMultistepScheduler configs with Python's json, which writes -Infinity bare.
        var config = SchedulerConfig.Parse("""{"_class_name":"DPMSolverMultistepScheduler","lambda_min_clipped":-Infinity,"note":"NaN stays text","beta_start":0.00085}""", "cfg.json");
        Assert.Equal(double.NegativeInfinity, config.GetDouble("lambda_min_clipped", 0, allowInfinite: true));
        Assert.Equal("NaN stays text", config.GetString("note", ""));
        var e = Assert.Throws<InvalidDataException>(() => config.GetDouble("lambda_min_clipped", 0));
        Assert.Contains("lambda_min_clipped", e.Message);
        Assert.Contains("cfg.json", e.Message);
        var dpm = new DpmSolverMultistepScheduler(config);
        dpm.SetTimesteps(20);
        Assert.Equal(20, dpm.CallCount);
    }

    [Fact]
    public void NaNIsRefusedEvenWhereInfinityIsAllowed()
    {
        var config = SchedulerConfig.Parse("""{"beta_start":NaN}""", "cfg.json");
        var e = Assert.Throws<InvalidDataException>(() => config.GetDouble("beta_start", 0.1, allowInfinite: true));
        Assert.Contains("beta_start", e.Message);
    }

    [Fact]
    public void MissingKeysTakeTheCallersDefaultAndWrongTypesAreNamed()
    {
        var config = SchedulerConfig.Parse("""{"steps_offset":"one","beta_schedule":"scaled_linear"}""", "scheduler_config.json");
        Assert.Equal(0.02, config.GetDouble("beta_end", 0.02));
        var e = Assert.Throws<InvalidDataException>(() => config.GetInt("steps_offset", 0));
        Assert.Contains("steps_offset", e.Message);
        Assert.Contains("an integer", e.Message);
    }

    [Fact]
    public void MalformedJsonNamesTheFile()
    {
        var e = Assert.Throws<InvalidDataException>(() => SchedulerConfig.Parse("{\"a\": ", "/m/scheduler/scheduler_config.json"));
        Assert.Contains("/m/scheduler/scheduler_config.json", e.Message);
    }
}

using MLNet.Diffusion.Cli;
using MLNet.Diffusion.Tests.TestModels;

namespace MLNet.Diffusion.Tests.Cli;

/// <summary>Issue 12, point 5: <c>info</c> reads the scheduler configuration through the engine's reader, so it accepts and refuses the folders <c>generate</c> does.</summary>
public class CliInfoTests
{
    private const string DpmSolverConfig =
        """{"_class_name":"DPMSolverMultistepScheduler","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,"algorithm_type":"dpmsolver++","solver_order":2,"steps_offset":1}""";

    /// <summary>A test model whose scheduler_config.json gains <c>"lambda_min_clipped": <paramref name="literal"/></c>, written as
    /// Python's json module writes it (a bare literal, which strict JSON readers refuse).</summary>
    private static TempModelFolder WithLambdaMinClipped(string literal)
    {
        var model = TestModelFactory.CreateTemp(new TestModelOptions { SchedulerConfigJson = DpmSolverConfig });
        var path = Path.Combine(model.Path, "scheduler", "scheduler_config.json");
        var text = File.ReadAllText(path);
        File.WriteAllText(path, "{\n  \"lambda_min_clipped\": " + literal + "," + text[(text.IndexOf('{') + 1)..]);
        return model;
    }

    [Fact]
    public void InfoReadsMinusInfinityAsGenerateDoes()
    {
        // diffusers writes "lambda_min_clipped": -Infinity in DPM-Solver configurations.
        using var model = WithLambdaMinClipped("-Infinity");
        using var dir = new TempDir();
        CliRun.Ok("generate", "a red circle", "--model", model.Path, "--out", dir["out"], "--steps", "2", "--seed", "1");
        var info = CliRun.Ok("info", "--model", model.Path);
        Assert.Contains("DPMSolverMultistepScheduler", info.Out);
        Assert.Matches(@"lambda_min_clipped\s+-Infinity", info.Out);
    }

    [Fact]
    public void InfoRefusesNaNAsGenerateDoesNamingTheKey()
    {
        using var model = WithLambdaMinClipped("NaN");
        using var dir = new TempDir();
        var generate = CliRun.Run("generate", "a red circle", "--model", model.Path, "--out", dir["out"], "--steps", "2", "--seed", "1");
        var info = CliRun.Run("info", "--model", model.Path);
        foreach (var result in new[] { generate, info })
        {
            Assert.True(result.ExitCode == Program.UsageError, result.ToString());
            Assert.True(result.ErrLines.Length == 1, result.ToString());
            Assert.Contains("lambda_min_clipped", result.ErrLines[0]);
            Assert.Contains("NaN", result.ErrLines[0]);
        }
    }

    [Fact]
    public void InfoShowsAnUnusedNaNKeyThatGenerateIgnores()
    {
        // PNDM does not read lambda_min_clipped: generate accepts the folder, and so does info.
        using var model = TestModelFactory.CreateTemp();
        var path = Path.Combine(model.Path, "scheduler", "scheduler_config.json");
        var text = File.ReadAllText(path);
        File.WriteAllText(path, "{\"lambda_min_clipped\": NaN," + text[(text.IndexOf('{') + 1)..]);
        using var dir = new TempDir();
        CliRun.Ok("generate", "a red circle", "--model", model.Path, "--out", dir["out"], "--steps", "2", "--seed", "1");
        var info = CliRun.Ok("info", "--model", model.Path);
        Assert.Matches(@"lambda_min_clipped\s+NaN", info.Out);
    }

    [Fact]
    public void InfoAndGenerateRefuseAScheduleWithBetaEndBelowBetaStartNamingTheKeys()
    {
        using var model = TestModelFactory.CreateTemp();
        var path = Path.Combine(model.Path, "scheduler", "scheduler_config.json");
        File.WriteAllText(path, File.ReadAllText(path).Replace("\"beta_end\": 0.012", "\"beta_end\": 0.0001", StringComparison.Ordinal));
        using var dir = new TempDir();
        foreach (var result in new[] { CliRun.Run("info", "--model", model.Path), CliRun.Run("generate", "a red circle", "--model", model.Path, "--out", dir["out"], "--steps", "2") })
        {
            Assert.True(result.ExitCode == Program.UsageError, result.ToString());
            Assert.True(result.ErrLines.Length == 1, result.ToString());
            Assert.Contains("beta_start is 0.00085 but beta_end is 0.0001", result.ErrLines[0]);
        }
    }
}

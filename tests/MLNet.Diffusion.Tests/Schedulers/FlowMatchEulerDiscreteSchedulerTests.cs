using System.Text.Json;
using MLNet.Diffusion.Schedulers;
using Xunit;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>
/// The flow-matching Euler scheduler of SD3 and FLUX: its schedules bit-for-bit against diffusers' operations
/// (Data/reference/make_flow_match_reference.py), and its sampling against the exact answer for Gaussian data.
/// </summary>
public sealed class FlowMatchEulerDiscreteSchedulerTests
{
    private static readonly string ReferencePath = Path.Combine(AppContext.BaseDirectory, "Data", "reference", "flow_match_reference.json");
    private static readonly Lazy<JsonDocument> Reference = new(() => JsonDocument.Parse(File.ReadAllText(ReferencePath)));

    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        foreach (var c in Reference.Value.RootElement.GetProperty("cases").EnumerateArray()) data.Add(c.GetProperty("name").GetString()!);
        return data;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void ScheduleEqualsDiffusersBitForBit(string name)
    {
        var c = Reference.Value.RootElement.GetProperty("cases").EnumerateArray().Single(e => e.GetProperty("name").GetString() == name);
        var scheduler = new FlowMatchEulerDiscreteScheduler(SchedulerConfig.Parse(c.GetProperty("config").GetRawText()));
        if (c.GetProperty("image_tokens").ValueKind == JsonValueKind.Number)
        {
            double mu = scheduler.ResolutionShift(c.GetProperty("image_tokens").GetInt32());
            Assert.Equal(c.GetProperty("mu").GetDouble(), mu, 12);
            scheduler.Mu = c.GetProperty("mu").GetDouble();
        }
        scheduler.UsePipelineSigmas = c.GetProperty("pipeline_sigmas").GetBoolean();
        scheduler.SetTimesteps(c.GetProperty("steps").GetInt32());

        Assert.Equal(Floats(c.GetProperty("sigmas")), scheduler.Sigmas.ToArray());
        Assert.Equal(Floats(c.GetProperty("timesteps")), scheduler.Timesteps.ToArray());
    }

    [Fact]
    public void StepAndNoisingEqualDiffusersBitForBit()
    {
        var s = Reference.Value.RootElement.GetProperty("step");
        var scheduler = new FlowMatchEulerDiscreteScheduler(SchedulerConfig.Parse(s.GetProperty("config").GetRawText()));
        scheduler.SetTimesteps(s.GetProperty("steps").GetInt32());
        int k = s.GetProperty("index").GetInt32();
        var sample = Floats(s.GetProperty("sample"));
        var noised = new float[sample.Length];
        scheduler.AddNoise(Floats(s.GetProperty("original")), sample, k, noised);
        Assert.Equal(Floats(s.GetProperty("noised")), noised);

        scheduler.SetBeginIndex(k);
        scheduler.Step(Floats(s.GetProperty("velocity")), sample);
        Assert.Equal(Floats(s.GetProperty("stepped")), sample);
        Assert.Equal(k + 1, scheduler.StepIndex);
    }

    [Theory]
    [InlineData(3.0, false)]
    [InlineData(1.0, true)]
    public void SamplingTheExactVelocityOfGaussianDataLandsOnItsTransport(double shift, bool pipelineSigmas)
    {
        // Data x₀ ~ N(m, s²) per value; x_σ = (1 − σ)·x₀ + σ·ε. The ideal velocity E[ε − x₀ | x_σ] is linear in x_σ, and
        // the ODE carries the noise z at σ = 1 to m + s·z. Euler's error shrinks in proportion to the step.
        const double m = 0.7, sd = 0.4;
        float[] z = [-1.5f, -0.3f, 0f, 0.8f, 2.1f];
        double Error(int steps)
        {
            var config = SchedulerConfig.Parse($$"""{"num_train_timesteps": 1000, "shift": {{shift}}}""");
            var scheduler = new FlowMatchEulerDiscreteScheduler(config) { UsePipelineSigmas = pipelineSigmas };
            scheduler.SetTimesteps(steps);
            var x = (float[])z.Clone();
            var v = new float[x.Length];
            while (scheduler.StepIndex < scheduler.CallCount)
            {
                double sigma = scheduler.Sigmas[scheduler.StepIndex];
                Assert.Equal((float)(sigma * 1000), scheduler.Timesteps[scheduler.StepIndex], 3);
                double variance = (1 - sigma) * (1 - sigma) * sd * sd + sigma * sigma;
                for (int i = 0; i < x.Length; i++)
                {
                    double centred = x[i] - (1 - sigma) * m;
                    double expectedNoise = sigma / variance * centred, expectedData = m + (1 - sigma) * sd * sd / variance * centred;
                    v[i] = (float)(expectedNoise - expectedData);
                }
                scheduler.Step(v, x);
            }
            return z.Select((zi, i) => Math.Abs(x[i] - (m + sd * zi))).Max();
        }
        // (The same Euler in float64: 0.0137 off at 100 steps with shift 1, 0.0289 with shift 3.)
        double coarse = Error(25), fine = Error(100), finer = Error(400);
        Assert.True(finer < 0.01, $"400 steps miss the transport by {finer}");
        Assert.InRange(coarse / fine, 3.5, 4.5); // first order: 4× the steps, a quarter of the error
        Assert.InRange(fine / finer, 3.5, 4.5);
    }

    [Fact]
    public void DynamicShiftingNeedsMu()
    {
        var config = SchedulerConfig.Parse("""{"use_dynamic_shifting": true}""");
        var scheduler = new FlowMatchEulerDiscreteScheduler(config);
        var error = Assert.Throws<InvalidOperationException>(() => scheduler.SetTimesteps(4));
        Assert.Contains("μ", error.Message);
    }

    [Theory]
    [InlineData("""{"invert_sigmas": true}""", "invert_sigmas")]
    [InlineData("""{"stochastic_sampling": true}""", "stochastic_sampling")]
    [InlineData("""{"shift": 0}""", "shift must be positive")]
    [InlineData("""{"shift_terminal": 1.5}""", "shift_terminal")]
    public void UnsupportedOrInvalidConfigsAreRefusedByName(string json, string expected)
    {
        var error = Record.Exception(() => new FlowMatchEulerDiscreteScheduler(SchedulerConfig.Parse(json)));
        Assert.NotNull(error);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void TheFactoryKnowsTheClassNameButDoesNotOfferItAsASwitch()
    {
        Assert.DoesNotContain(SchedulerFactory.Names, n => n.Contains("Flow", StringComparison.OrdinalIgnoreCase));
        var scheduler = SchedulerFactory.Create(null, SchedulerConfig.Parse("""{"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}"""));
        Assert.Equal("FlowMatchEulerDiscreteScheduler", scheduler.Name);
        Assert.Equal(1f, scheduler.InitNoiseSigma);
    }

    private static float[] Floats(JsonElement array) => array.EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
}

using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>
/// LCM with the released configurations: LCM-Dreamshaper v7 (SD 1.5) and LCM-SDXL (SDXL base's file read by
/// LCMScheduler). Expected values: diffusers' <c>LCMScheduler.set_timesteps</c> and <c>step</c> run on the same files,
/// in float32, with the noise of the re-noising step fixed.
/// </summary>
public class LcmReleasedConfigTests
{
    public static TheoryData<string, int, float[]> Schedules()
    {
        // k = 1000 div original_inference_steps (50) = 20: the distillation schedule 999, 979, …, 19, of which the indices
        // ⌊i·50/n⌋ are used; spacing keys (timestep_spacing, steps_offset) play no part.
        float[][] expected =
        [
            [999],
            [999, 499],
            [999, 679, 339],
            [999, 759, 499, 259],
            [999, 799, 599, 399, 199],
            [999, 839, 679, 499, 339, 179],
            [999, 859, 719, 579, 439, 299, 159],
            [999, 879, 759, 639, 499, 379, 259, 139],
        ];
        var data = new TheoryData<string, int, float[]>();
        foreach (var model in new[] { "lcm-dreamshaper-v7", "sdxl-base" })
            for (int n = 1; n <= 8; n++) data.Add(model, n, expected[n - 1]);
        return data;
    }

    [Theory]
    [MemberData(nameof(Schedules))]
    public void TimestepsMatchDiffusersForOneToEightSteps(string model, int steps, float[] expected)
    {
        var lcm = SchedulerFactory.Create("lcm", ReleasedSchedulerConfigs.Load(model));
        lcm.SetTimesteps(steps);
        Assert.Equal(expected, lcm.Timesteps.ToArray());
        Assert.Equal(1f, lcm.InitNoiseSigma);
    }

    [Fact]
    public void ReleasedConfigsKeepTheirLcmKeysAndClassDefaults()
    {
        var sd15 = (LcmScheduler)SchedulerFactory.Create(null, ReleasedSchedulerConfigs.Load("lcm-dreamshaper-v7"));
        Assert.Equal(50, sd15.OriginalInferenceSteps);
        Assert.Equal(10.0, sd15.TimestepScaling);
        Assert.Equal(1.0, sd15.FinalAlphaCumprod);
        // SDXL's file has set_alpha_to_one false and no LCM keys: ᾱ_0 as the final value, class defaults for the rest.
        var xl = (LcmScheduler)SchedulerFactory.Create("LCMScheduler", ReleasedSchedulerConfigs.Load("sdxl-base"));
        Assert.Equal(50, xl.OriginalInferenceSteps);
        Assert.Equal(10.0, xl.TimestepScaling);
        Assert.Equal(0.9991499781608582, xl.FinalAlphaCumprod, 1e-7);
    }

    [Theory]
    // diffusers get_scalings_for_boundary_condition_discrete: τ = t·timestep_scaling, σ_d = 0.5.
    [InlineData(10.0, 0, 1.0, 0.0)]
    [InlineData(10.0, 1, 0.0024937655860349127, 0.9987523388778445)]
    [InlineData(10.0, 19, 6.92515979806234e-06, 0.9999965374141062)]
    [InlineData(10.0, 999, 2.5050075037374525e-09, 0.9999999987474963)]
    [InlineData(0.01, 1, 0.9996001599360256, 0.01999600119960014)]
    [InlineData(0.01, 19, 0.8738203425375742, 0.3552177606235726)]
    [InlineData(0.01, 999, 0.002498748127188279, 0.9987498444920088)]
    public void BoundaryScalingsMatchDiffusers(double scaling, int timestep, double cSkip, double cOut)
    {
        var lcm = new LcmScheduler(ReleasedSchedulerConfigs.Load("lcm-dreamshaper-v7").With(("timestep_scaling", scaling)));
        var (skip, output) = lcm.BoundaryScalings(timestep);
        Assert.Equal(cSkip, skip, 1e-15);
        Assert.Equal(cOut, output, 1e-15);
    }

    // x, ε and z as diffusers saw them (float32 of sin(0.7i + 0.1), cos(1.3i), 0.5 − 0.25i).
    private static readonly float[] X = [0.0998334139585495f, 0.7173560857772827f, 0.9974949955940247f, 0.8084964156150818f, 0.2392493337392807f, -0.4425204396247864f, -0.9161659479141235f, -0.9589242935180664f];
    private static readonly float[] Eps = [1.0f, 0.26749882102012634f, -0.8568887710571289f, -0.7259323000907898f, 0.46851667761802673f, 0.9765876531600952f, 0.05395542085170746f, -0.9477216005325317f];
    private static readonly float[] Z = [0.5f, 0.25f, 0.0f, -0.25f, -0.5f, -0.75f, -1.0f, -1.25f];

    public static TheoryData<string, double, float[][]> Steps() => new()
    {
        {
            // LCM-SDXL (SDXL base's file), 4 steps 999, 759, 499, 259: c_skip ≈ 0, so each call gives √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev)·z
            // and the last the clean estimate x̂₀ itself.
            "sdxl-base", 10.0,
            [
                [-2.51852536f, 1.75127089f, 6.20044231f, 4.88710165f, -1.25053442f, -5.47267771f, -4.22038555f, -1.26182806f],
                [-1.58989906f, 1.26620412f, 4.22408628f, 3.28175712f, -0.925075412f, -3.85042572f, -3.08379006f, -1.1460309f],
                [-0.863514781f, 0.900867105f, 2.65859485f, 2.04998231f, -0.536843419f, -2.3983407f, -2.06599903f, -0.96636939f],
                [-0.596398115f, 0.691257298f, 1.84521449f, 1.51818502f, -0.0423170887f, -1.247666f, -1.16741323f, -0.499499679f],
            ]
        },
        {
            // timestep_scaling 0.01 makes the boundary conditions matter (c_skip 0.0025 … 0.036): the skip term is tested too.
            "lcm-dreamshaper-v7", 0.01,
            [
                [-2.51471138f, 1.74979532f, 6.19326067f, 4.88114929f, -1.24944293f, -5.46700144f, -4.2168498f, -1.26231945f],
                [-1.58531427f, 1.26555848f, 4.21722126f, 3.27604079f, -0.923449039f, -3.84448433f, -3.08104467f, -1.14803338f],
                [-0.856951833f, 0.902894437f, 2.65339732f, 2.04556489f, -0.533692837f, -2.39214396f, -2.06600785f, -0.972929358f],
                [-0.581999063f, 0.704499602f, 1.84760189f, 1.51971066f, -0.0329538547f, -1.24094653f, -1.17916644f, -0.524897754f],
            ]
        },
    };

    [Theory]
    [MemberData(nameof(Steps))]
    public void EachStepOnAFixedInputMatchesDiffusers(string model, double scaling, float[][] expected)
    {
        // Every call gets the same x and ε, so each result checks one step formula: denoised = c_out·x̂₀ + c_skip·x with
        // x̂₀ = (x − √(1 − ᾱ_t)·ε)/√ᾱ_t, then x_prev = √ᾱ_prev·denoised + √(1 − ᾱ_prev)·z, and the last call returns denoised.
        var lcm = SchedulerFactory.Create("lcm", ReleasedSchedulerConfigs.Load(model).With(("timestep_scaling", scaling)));
        lcm.SetTimesteps(4);
        var noise = new FixedNoise(Z);
        for (int call = 0; call < 4; call++)
        {
            var x = (float[])X.Clone();
            lcm.Step(Eps, x, noise);
            for (int i = 0; i < x.Length; i++)
                Assert.True(Math.Abs(x[i] - expected[call][i]) <= 1e-5 * Math.Max(1, Math.Abs(expected[call][i])),
                    $"call {call}, element {i}: {x[i]:R}, diffusers {expected[call][i]:R}");
        }
        Assert.Equal(3, noise.Draws); // no noise after the last step
    }

    private sealed class FixedNoise(float[] values) : INoiseSource
    {
        public int Draws { get; private set; }

        public void Fill(Span<float> destination)
        {
            Draws++;
            values.CopyTo(destination);
        }
    }
}

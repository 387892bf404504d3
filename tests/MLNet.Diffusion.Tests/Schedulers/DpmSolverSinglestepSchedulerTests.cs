using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Schedulers;

/// <summary>Singlestep DPM-Solver beyond diffusers' figures (DiffusersReferenceLoopTests): order lists, every order and type, state.</summary>
public class DpmSolverSinglestepSchedulerTests
{
    private static DpmSolverSinglestepScheduler Sd15(params (string, object?)[] overrides) => new(SigmaTestKit.Sd15(overrides));

    [Theory]
    [InlineData(2, true, 10, new[] { 1, 2, 1, 2, 1, 2, 1, 2, 1, 1 })]
    [InlineData(2, true, 7, new[] { 1, 2, 1, 2, 1, 2, 1 })]
    [InlineData(2, false, 10, new[] { 1, 2, 1, 2, 1, 2, 1, 2, 1, 2 })]
    [InlineData(3, true, 9, new[] { 1, 2, 3, 1, 2, 3, 1, 2, 1 })]
    [InlineData(3, true, 10, new[] { 1, 2, 3, 1, 2, 3, 1, 2, 3, 1 })]
    [InlineData(3, true, 8, new[] { 1, 2, 3, 1, 2, 3, 1, 2 })]
    [InlineData(3, false, 7, new[] { 1, 2, 3, 1, 2, 3, 1 })]  // 7 is not a multiple of 3: lower_order_final is switched on
    public void OrderListsFollowDiffusers(int order, bool lowerOrderFinal, int steps, int[] expected)
    {
        var s = Sd15(("solver_order", order), ("lower_order_final", lowerOrderFinal), ("final_sigmas_type", "sigma_min"));
        s.SetTimesteps(steps);
        Assert.Equal(expected, s.Orders.ToArray());
    }

    [Theory]
    [InlineData("dpmsolver++", "midpoint", 2)]
    [InlineData("dpmsolver++", "heun", 2)]
    [InlineData("dpmsolver++", "midpoint", 3)]
    [InlineData("dpmsolver++", "heun", 3)]
    [InlineData("dpmsolver", "midpoint", 3)]
    [InlineData("dpmsolver", "heun", 3)]
    public void FixedTargetIsReachedByEveryOrderAndType(string algorithm, string solverType, int order)
    {
        bool plus = algorithm == "dpmsolver++";
        var s = Sd15(("algorithm_type", algorithm), ("solver_type", solverType), ("solver_order", order),
            ("final_sigmas_type", plus ? "zero" : "sigma_min"));
        // Data prediction ends on σ = 0 exactly; noise prediction at σ_min keeps that much of the start's noise (|ε| < 5).
        Assert.True(SigmaTestKit.FixedTargetError(s, 20) < (plus ? 1e-5 : 5 * SigmaTestKit.SigmaMin));
        Assert.Equal(0, SigmaTestKit.AllocationsAfterFirstStep(s, 12, 4096));
    }

    [Fact]
    public void AMidScheduleStartCutsTheFirstGroupToTheOutputsItHas()
    {
        // diffusers' test_full_uneven_loop: 50 steps entered at call 3 (an order-2 call) with no history: 0.2574.
        var s = new DpmSolverSinglestepScheduler(SchedulerConfig.Parse(
            """{"num_train_timesteps":1000,"beta_start":0.0001,"beta_end":0.02,"beta_schedule":"linear","solver_order":2,"lower_order_final":false,"final_sigmas_type":"sigma_min"}""", "t"));
        s.SetTimesteps(50);
        s.SetBeginIndex(3);
        var sample = new float[768];
        for (int i = 0; i < sample.Length; i++) sample[i] = i / 768f;
        var model = new float[768];
        while (s.StepIndex < s.CallCount)
        {
            float t = s.Timesteps[s.StepIndex];
            for (int i = 0; i < model.Length; i++) model[i] = sample[i] * t / (t + 1);
            s.Step(model, sample);
        }
        Assert.Equal(0.2574, sample.Average(v => Math.Abs((double)v)), 1e-3);
    }

    [Fact]
    public void ConfigurationChecksNameTheKey()
    {
        Assert.Contains("sde", Assert.Throws<NotSupportedException>(() => Sd15(("algorithm_type", "sde-dpmsolver++"))).Message);
        Assert.Contains("final_sigmas_type", Assert.Throws<InvalidDataException>(() => Sd15(("algorithm_type", "dpmsolver"))).Message);
        Assert.Contains("solver_order", Assert.Throws<InvalidDataException>(() => Sd15(("solver_order", 4))).Message);
        Assert.Equal("DPMSolverSinglestepScheduler", SchedulerFactory.Create("dpm++2s-karras", SigmaTestKit.Sd15()).Name);
    }
}

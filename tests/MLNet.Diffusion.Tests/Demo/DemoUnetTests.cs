using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Tests.Demo;

[Collection(DemoCollection.Name)]
public class DemoUnetTests(DemoModelFixture model)
{
    [Fact]
    public void NoiseTableIsTheSchedulersSchedule()
    {
        var config = SchedulerConfig.Load(Path.Combine(model.Folder, "scheduler", "scheduler_config.json"));
        int steps = config.GetInt("num_train_timesteps", 1000);
        var expected = SchedulerMath.AlphasCumprod(SchedulerMath.Betas(config, steps));
        var actual = DemoUnet.AlphasCumprod();
        Assert.Equal(expected.Length, actual.Length);
        for (int t = 0; t < expected.Length; t++) Assert.Equal(expected[t], actual[t], 12);
        // The graph's ᾱ (through the float σ table) at integer timesteps.
        foreach (int t in new[] { 0, 1, 500, 999 }) Assert.Equal(expected[t], DemoUnet.AlphaBar(t), 6);
        // Fractional: σ interpolated linearly, as Euler-type schedulers do.
        var sigmas = SchedulerMath.Sigmas(expected);
        double s = SchedulerMath.SigmaAtTimestep(321.37, sigmas);
        Assert.Equal(1 / (1 + s * s), DemoUnet.AlphaBar(321.37), 6);
    }

    [Theory]
    [InlineData(999f, 999f)]
    [InlineData(500f, 500f)]
    [InlineData(1f, 1f)]
    [InlineData(321.37f, 0.5f)]
    [InlineData(740.9f, 12.25f)]
    public void OnnxEqualsThePosteriorMeanFormula(float t0, float t1)
    {
        // Batch 2: a noised dataset latent under "a red circle" and pure noise under the empty prompt.
        var noise = new GaussianNoise(42);
        var sample = new float[2 * DemoUnet.LatentLength];
        noise.Fill(sample);
        double a = DemoUnet.AlphaBar(t0);
        for (int i = 0; i < DemoUnet.LatentLength; i++)
            sample[i] = (float)(Math.Sqrt(a) * model.DatasetLatents[9 * DemoUnet.LatentLength + i] + Math.Sqrt(1 - a) * sample[i]);
        var (hidden, _) = model.EncodeText("a red circle", "");
        var timesteps = new[] { t0, t1 };
        var onnx = model.RunUnet(sample, timesteps, hidden);
        var reference = DemoUnet.Predict(sample, timesteps, hidden, model.DatasetLatents, model.CaptionEmbeddings);
        double scale = reference.Max(v => Math.Abs(v)), max = 0;
        for (int i = 0; i < onnx.Length; i++) max = Math.Max(max, Math.Abs(onnx[i] - reference[i]));
        Assert.True(max < 1e-3 * scale + 1e-4, $"max difference {max} (output scale {scale})");
    }

    [Fact]
    public void OneTimestepServesTheWholeBatch()
    {
        var sample = new float[2 * DemoUnet.LatentLength];
        new GaussianNoise(5).Fill(sample);
        var (hidden, _) = model.EncodeText("", "a star");
        Assert.Equal(model.RunUnet(sample, [400f, 400f], hidden), model.RunUnet(sample, [400f], hidden));
    }

    [Fact]
    public void OtherLatentSizesAreRefusedClearly()
    {
        using var x = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(new float[4 * 8 * 8], [1, 4, 8, 8]);
        using var t = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(new float[] { 10 }, [1]);
        using var h = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(new float[77 * model.Dimension], [1, 77, model.Dimension]);
        var e = Assert.ThrowsAny<Exception>(() => model.Unet.Run(new Microsoft.ML.OnnxRuntime.RunOptions(),
            ["sample", "timestep", "encoder_hidden_states"], [x, t, h], ["out_sample"]));
        Assert.Contains(DemoUnet.LatentSize.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message);
    }
}

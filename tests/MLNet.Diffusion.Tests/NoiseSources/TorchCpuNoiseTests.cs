using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Tests.NoiseSources;

/// <summary>
/// <see cref="TorchCpuNoise"/> against <c>torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))</c>
/// (torch 1.13, <c>Data/reference/make_noise_reference.py</c>): seeds 0, 1, 42, 2³² + 5 and −1; shapes of 5 values (the
/// scalar path, twice on one generator to carry its cached value), 20 (blocks of 16 with the recomputed tail),
/// 1×4×64×64, 1×4×128×128, 2×4×48×80 (one generator for a batch), 1×4×9×9 (a tail) and two 1×4×64×64 calls on one
/// generator; for torch's AVX2 build (x86-64) and its portable one (ATEN_CPU_CAPABILITY=default).
/// </summary>
public class TorchCpuNoiseTests
{
    public static TheoryData<string, int> Avx2Cases() => NoiseReference.Cases("torch_avx2");

    public static TheoryData<string, int> PortableCases() => NoiseReference.Cases("torch_default");

    [Theory]
    [MemberData(nameof(Avx2Cases))]
    public void MatchesTorchOnAvx2(string section, int index)
    {
        var @case = NoiseReference.Case(section, index);
        NoiseReference.Check(@case, new TorchCpuNoise(@case.GetProperty("seed").GetInt64(), TorchMath.Avx2));
    }

    [Theory]
    [MemberData(nameof(PortableCases))]
    public void MatchesTorchWithoutAvx2(string section, int index)
    {
        var @case = NoiseReference.Case(section, index);
        NoiseReference.Check(@case, new TorchCpuNoise(@case.GetProperty("seed").GetInt64(), TorchMath.Portable));
    }

    [Fact]
    public void PublishedSeedZeroValues()
    {
        var five = new float[5];
        new TorchCpuNoise(0).Fill(five);
        Assert.Equal([1.5410f, -0.2934f, -2.1788f, 0.5684f, -1.0845f], five.Select(v => MathF.Round(v, 4)));
        var latents = new float[4 * 64 * 64];
        new TorchCpuNoise(0).Fill(latents);
        Assert.Equal([-1.1258f, -1.1524f, -0.2506f, -0.4339f, 0.8487f], latents.Take(5).Select(v => MathF.Round(v, 4)));
    }

    [Theory]
    [InlineData("torch_avx2")]
    [InlineData("torch_default")]
    public void ListOfGeneratorsDrawsEachImageOnItsOwn(string section)
    {
        // diffusers' randn_tensor with a list of generators: one [1, 4, h, w] call per image, each on its own generator,
        // which is what BatchNoise does with one TorchCpuNoise per image.
        var perImage = NoiseReference.Section(section).GetProperty("per_image");
        var seeds = perImage.GetProperty("seeds").EnumerateArray().Select(s => s.GetInt64()).ToArray();
        int count = perImage.GetProperty("shape").EnumerateArray().Aggregate(1, (n, d) => n * d.GetInt32());
        var math = section == "torch_avx2" ? TorchMath.Avx2 : TorchMath.Portable;
        var batch = new float[seeds.Length * count];
        new BatchNoise(Array.ConvertAll(seeds, s => (MLNet.Diffusion.Schedulers.INoiseSource)new TorchCpuNoise(s, math))).Fill(batch);
        for (int i = 0; i < seeds.Length; i++)
            NoiseReference.CheckSummary(perImage.GetProperty("summaries")[i], batch.AsSpan(i * count, count), $"seed {seeds[i]} in a list of generators");
    }
}

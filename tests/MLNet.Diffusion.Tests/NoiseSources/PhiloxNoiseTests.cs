using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Tests.NoiseSources;

/// <summary>
/// <see cref="PhiloxNoise"/> (AUTOMATIC1111's "NV" source): its Philox4x32-10 core against the Random123 known-answer
/// vectors, and its values against a tensor printed from a GPU.
/// </summary>
public class PhiloxNoiseTests
{
    [Theory]
    [InlineData(0u, 0u, 0u, 0u, 0u, 0u, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)]
    [InlineData(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)]
    [InlineData(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)]
    public void CoreMatchesRandom123KnownAnswers(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, uint r0, uint r1, uint r2, uint r3) =>
        Assert.Equal((r0, r1, r2, r3), PhiloxNoise.Philox4x32_10Block(c0, c1, c2, c3, k0, k1));

    /// <summary>
    /// An 8×8 float32 tensor drawn with <c>torch.randn(…, device="cuda")</c> right after seeding, as printed (4 decimals) in
    /// the write-up of the CUDA MODE talk "Fusing Kernels" (2024; the input tensor of its Triton fused mul-add-relu section,
    /// from <c>get_inputs(add_manual_seed=True)</c>, whose seed the page does not show): all 64 values are seed 0's.
    /// </summary>
    private static readonly float[] CudaSeedZero8x8 =
    [
        -0.9247f, -0.4253f, -2.6438f, 0.1452f, -0.1209f, -0.5797f, -0.6229f, -0.3284f,
        -1.0745f, -0.3631f, -1.6711f, 2.2655f, 0.3117f, -0.1842f, 1.2866f, 1.1820f,
        -0.1271f, 1.2169f, 1.4353f, 1.0605f, -0.4941f, -1.4244f, -0.7244f, -1.2973f,
        0.0697f, -0.0074f, 1.8969f, 0.6878f, -0.0779f, -0.8373f, 1.3506f, -0.2879f,
        -0.5965f, -0.3283f, -0.9086f, -0.8059f, -0.7407f, -0.0504f, 0.5435f, 1.5150f,
        0.0141f, 0.4532f, 1.6349f, 0.7124f, -0.1806f, 1.0252f, -1.4622f, -0.7554f,
        -0.1836f, 0.3824f, 0.3918f, -0.0830f, 0.8971f, -1.1123f, 0.1116f, 0.4863f,
        -0.5499f, -0.3231f, -0.5469f, 0.9049f, 0.2837f, 0.1210f, 0.4730f, -1.0823f,
    ];

    [Fact]
    public void SeedZeroMatchesATensorPrintedFromAGpu()
    {
        var values = new float[64];
        new PhiloxNoise(0).Fill(values);
        for (int i = 0; i < values.Length; i++)
            Assert.True(Math.Abs(values[i] - CudaSeedZero8x8[i]) <= 0.5e-4 + 1e-6, $"value {i}: {values[i]}, the GPU printed {CudaSeedZero8x8[i]}.");
    }

    [Fact]
    public void EachCallAdvancesTheOffsetAndSeedsUseBothKeyWords()
    {
        var generator = new PhiloxNoise(0);
        float[] first = new float[16], second = new float[16], high = new float[16], negative = new float[16];
        generator.Fill(first);
        generator.Fill(second);
        new PhiloxNoise(1L << 32).Fill(high);
        new PhiloxNoise(-1).Fill(negative);
        Assert.NotEqual(first, second);
        Assert.NotEqual(first, high);
        Assert.NotEqual(first, negative);
        var again = new float[16];
        new PhiloxNoise(0).Fill(again);
        Assert.Equal(first, again);
    }
}

using MLNet.Diffusion.Noise;

namespace MLNet.Diffusion.Tests.NoiseSources;

/// <summary>The initial latents' parallel fill gives <see cref="GaussianNoise.Fill"/>'s values bit for bit, and leaves the
/// generator in the same state (the spare value included) for the noise drawn after it.</summary>
public sealed class GaussianNoiseParallelFillTests
{
    [Theory]
    [InlineData(0, false)]
    [InlineData(1, false)]
    [InlineData(16383, false)]
    [InlineData(GaussianNoise.ParallelThreshold, false)]
    [InlineData(65536, false)]
    [InlineData(65537, false)]
    [InlineData(65536, true)]
    [InlineData(65537, true)]
    public void ParallelFillEqualsTheSequentialOneAndLeavesTheSameState(int length, bool startWithSpare)
    {
        var sequential = new GaussianNoise(42);
        var parallel = new GaussianNoise(42);
        if (startWithSpare)
        {
            // One value drawn first leaves the pair's sine waiting as the spare.
            Span<float> one = stackalloc float[1];
            sequential.Fill(one);
            parallel.Fill(one);
        }
        var expected = new float[length];
        var actual = new float[length];
        sequential.Fill(expected);
        parallel.FillInParallel(actual);
        Assert.Equal(expected, actual);
        var after = new float[7];
        var afterExpected = new float[7];
        sequential.Fill(afterExpected);
        parallel.Fill(after);
        Assert.Equal(afterExpected, after);
    }

    [Fact]
    public void BatchNoiseFillsTheInitialLatentsAsFillDoes()
    {
        var a = new BatchNoise([1L, 2L, 3L]);
        var b = new BatchNoise([1L, 2L, 3L]);
        var expected = new float[3 * 4 * 64 * 64];
        var actual = new float[expected.Length];
        a.Fill(expected);
        b.FillInitial(actual);
        Assert.Equal(expected, actual);
    }
}

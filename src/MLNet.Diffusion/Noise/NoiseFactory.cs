using MLNet.Diffusion.Schedulers;
namespace MLNet.Diffusion.Noise;

/// <summary>Creates the per-image generator for a <see cref="NoiseKind"/>.</summary>
internal static class NoiseFactory
{
    /// <summary>A generator for one image's <paramref name="seed"/>.</summary>
    public static INoiseSource Create(NoiseKind kind, long seed) => kind switch
    {
        NoiseKind.Default => new GaussianNoise(seed),
        NoiseKind.Torch => new TorchCpuNoise(seed),
        NoiseKind.Numpy => new NumpyLegacyNoise(seed),
        NoiseKind.TorchCuda => new PhiloxNoise(seed),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, $"Unknown noise kind {(int)kind}; use one of {string.Join(", ", Enum.GetNames<NoiseKind>())}."),
    };
}

namespace MLNet.Diffusion.Noise;

/// <summary>
/// The short names of <see cref="NoiseKind"/> used by the command line (<c>--noise</c>), the batch manifest and the
/// <c>IImageGenerator</c> property <c>noise</c>: <c>default</c>, <c>torch</c>, <c>numpy</c>, <c>cuda</c>. The enum's own
/// names (<c>TorchCuda</c>) are accepted too, in any case.
/// </summary>
internal static class NoiseKindNames
{
    /// <summary>The accepted short names, for messages.</summary>
    public const string Choices = "default, torch, numpy or cuda";

    /// <summary>The kind named <paramref name="text"/>, or null when it names none.</summary>
    public static NoiseKind? Parse(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        "default" => NoiseKind.Default,
        "torch" => NoiseKind.Torch,
        "numpy" => NoiseKind.Numpy,
        "cuda" or "torchcuda" => NoiseKind.TorchCuda,
        _ => null,
    };

    /// <summary>The short name of <paramref name="kind"/>.</summary>
    public static string Name(NoiseKind kind) => kind switch
    {
        NoiseKind.Default => "default",
        NoiseKind.Torch => "torch",
        NoiseKind.Numpy => "numpy",
        NoiseKind.TorchCuda => "cuda",
        _ => ((int)kind).ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}

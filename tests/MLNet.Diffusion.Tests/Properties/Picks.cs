using CsCheck;

namespace MLNet.Diffusion.Tests.Properties;

internal static class Picks
{
    /// <summary>One of the given values, uniformly (shrinks toward the first).</summary>
    public static Gen<T> OneOf<T>(params T[] values) => Gen.Int[0, values.Length - 1].Select(i => values[i]);
}

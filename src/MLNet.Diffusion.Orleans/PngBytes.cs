using Microsoft.ML.Data;
using MLNet.Diffusion.Hosting;

namespace MLNet.Diffusion.Orleans;

/// <summary>The one PNG encoding workers use (the library's in-memory encoder), so equal pixels give equal bytes everywhere.</summary>
internal static class PngBytes
{
    /// <summary>The image as PNG bytes.</summary>
    public static byte[] Of(MLImage image) => PngEncoder.Encode(image);
}

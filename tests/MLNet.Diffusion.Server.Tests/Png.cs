using MLNet.Diffusion;

namespace MLNet.Diffusion.Server.Tests;

/// <summary>Checks on PNG bytes a response carries.</summary>
internal static class Png
{
    private static readonly byte[] Signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Encodes RGBA pixels as a PNG (through <see cref="Microsoft.ML.Data.MLImage.Save"/>).</summary>
    public static byte[] Encode(int width, int height, byte[] rgba)
    {
        using var image = Microsoft.ML.Data.MLImage.CreateFromPixels(width, height, Microsoft.ML.Data.MLPixelFormat.Rgba32, rgba);
        string path = Path.Combine(Path.GetTempPath(), $"mlnet-diffusion-server-{Guid.NewGuid():N}.png");
        try
        {
            image.Save(path);
            return File.ReadAllBytes(path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Asserts <paramref name="bytes"/> is a PNG of <paramref name="width"/>×<paramref name="height"/> pixels.</summary>
    public static void AssertImage(byte[] bytes, int width, int height)
    {
        Assert.True(bytes.AsSpan().StartsWith(Signature), "not a PNG signature");
        using var image = ImageLoader.Load(bytes);
        Assert.Equal((width, height), (image.Width, image.Height));
    }
}

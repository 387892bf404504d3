using System.Buffers.Binary;
using System.Text;
using Microsoft.ML.Data;
using MLNet.Diffusion.Hosting;

namespace MLNet.Diffusion.Tests.Hosting;

public class PngEncoderTests
{
    [Fact]
    public void CrcMatchesTheStandardCheckValue()
    {
        // The CRC-32 check value for "123456789" (the PNG/zlib/IEEE 802.3 CRC).
        Assert.Equal(0xCBF43926u, PngEncoder.UpdateCrc(0xFFFFFFFFu, "123456789"u8) ^ 0xFFFFFFFFu);
    }

    [Theory]
    [InlineData(MLPixelFormat.Rgba32)]
    [InlineData(MLPixelFormat.Bgra32)]
    public void OpaqueImageRoundTripsThroughSkiaAsRgb(MLPixelFormat format)
    {
        const int w = 37, h = 23;   // odd sizes: no row happens to line up with anything
        var rgba = Pattern(w, h, opaque: true);
        using var image = MLImage.CreateFromPixels(w, h, format, format == MLPixelFormat.Bgra32 ? SwapRedBlue(rgba) : rgba);
        var png = PngEncoder.Encode(image);
        Assert.True(png.AsSpan().StartsWith(PngEncoder.Signature));
        var chunks = Chunks(png);
        Assert.Equal(["IHDR", "IDAT", "IEND"], chunks.Select(c => c.Type));
        Assert.Equal(2, chunks[0].Data[9]);   // colour type 2: RGB, alpha dropped
        using var decoded = MLImage.CreateFromStream(new MemoryStream(png));
        Assert.Equal(w, decoded.Width);
        Assert.Equal(h, decoded.Height);
        Assert.Equal(rgba, ToRgba(decoded));
    }

    [Fact]
    public void TranslucentImageKeepsItsAlpha()
    {
        const int w = 16, h = 9;
        var rgba = Pattern(w, h, opaque: false);
        using var image = MLImage.CreateFromPixels(w, h, MLPixelFormat.Rgba32, rgba);
        var png = PngEncoder.Encode(image);
        Assert.Equal(6, Chunks(png)[0].Data[9]);   // colour type 6: RGBA
        using var decoded = MLImage.CreateFromStream(new MemoryStream(png));
        var back = ToRgba(decoded);
        for (int i = 0; i < rgba.Length; i += 4)
        {
            Assert.Equal(rgba[i + 3], back[i + 3]);
            if (rgba[i + 3] == 255) Assert.Equal(rgba.AsSpan(i, 3).ToArray(), back.AsSpan(i, 3).ToArray());
        }
    }

    [Fact]
    public void EveryChunkCarriesItsCrc()
    {
        using var image = MLImage.CreateFromPixels(8, 8, MLPixelFormat.Rgba32, Pattern(8, 8, opaque: true));
        var png = PngEncoder.Encode(image);
        int offset = 8;
        while (offset < png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(offset));
            uint stored = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(offset + 8 + length));
            Assert.Equal(stored, PngEncoder.UpdateCrc(0xFFFFFFFFu, png.AsSpan(offset + 4, 4 + length)) ^ 0xFFFFFFFFu);
            offset += 12 + length;
        }
        Assert.Equal(png.Length, offset);
    }

    /// <summary>Gradients, noise and flat areas, so that every PNG filter type wins some row.</summary>
    private static byte[] Pattern(int w, int h, bool opaque)
    {
        var random = new Random(42);
        var p = new byte[w * h * 4];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int i = (y * w + x) * 4;
                p[i] = (byte)(x * 255 / Math.Max(1, w - 1));
                p[i + 1] = y % 3 == 0 ? (byte)random.Next(256) : (byte)(y * 11);
                p[i + 2] = (byte)((x + y) % 2 == 0 ? 200 : 17);
                p[i + 3] = opaque ? (byte)255 : (byte)((x + y) % 4 == 0 ? 255 : x * 16 % 256);
            }
        return p;
    }

    private static byte[] SwapRedBlue(byte[] p)
    {
        var q = (byte[])p.Clone();
        for (int i = 0; i < q.Length; i += 4) (q[i], q[i + 2]) = (q[i + 2], q[i]);
        return q;
    }

    internal static byte[] ToRgba(MLImage image)
    {
        var p = image.Pixels.ToArray();
        return image.PixelFormat == MLPixelFormat.Bgra32 ? SwapRedBlue(p) : p;
    }

    private static List<(string Type, byte[] Data)> Chunks(byte[] png)
    {
        var chunks = new List<(string, byte[])>();
        for (int offset = 8; offset < png.Length;)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(offset));
            chunks.Add((Encoding.ASCII.GetString(png, offset + 4, 4), png.AsSpan(offset + 8, length).ToArray()));
            offset += 12 + length;
        }
        return chunks;
    }
}

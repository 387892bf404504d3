using System.Diagnostics;
using MLNet.Diffusion.Imaging;
using static MLNet.Diffusion.Tests.Imaging.EncodedImages;

namespace MLNet.Diffusion.Tests.Imaging;

/// <summary>
/// Issue 12, decompression amplification: a small file declaring a huge image is refused from its header, before
/// anything in proportion to the declared size is allocated or any pixel is decoded.
/// </summary>
public class ImageSizeLimitTests
{
    /// <summary>The two files: a 196 KB PNG declaring 8192×8192 and a 3 KB JPEG patched to 8000×8000.</summary>
    public static TheoryData<string> Bombs => new() { "bomb.png", "patched.jpg" };

    private static readonly Lazy<byte[]> BombPng = new(() => ZeroPng(8192));
    private static readonly Lazy<byte[]> PatchedJpeg = new(() => { using var small = NoiseImage(48, 48); return PatchJpegSize(Encode(small, "jpg"), 8000, 8000); });

    private static byte[] Bomb(string name) => name.EndsWith(".png", StringComparison.Ordinal) ? BombPng.Value : PatchedJpeg.Value;

    [Theory]
    [MemberData(nameof(Bombs))]
    public void SmallFilesDeclaringHugeImagesAreRefusedFastWithoutAllocating(string name)
    {
        var bytes = Bomb(name);
        Assert.True(bytes.Length < 250_000, $"{name} is {bytes.Length} bytes");
        var dir = Directory.CreateTempSubdirectory("mlnd-bomb-");
        try
        {
            string path = Path.Combine(dir.FullName, name);
            File.WriteAllBytes(path, bytes);
            foreach (long limit in new[] { ImageLoader.DefaultMaxPixels, ImageLoader.MaxPixelsFor(512, 512), ImageLoader.MaxPixelsFor(1024, 1024) })
            {
                var clock = Stopwatch.StartNew();
                long allocated = GC.GetAllocatedBytesForCurrentThread();
                var e = Assert.Throws<InvalidDataException>(() => ImageLoader.Load(path, limit));
                allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"{name}: refused after {clock.Elapsed}");
                Assert.True(allocated < 1 << 20, $"{name}: {allocated} bytes allocated");
                Assert.Contains(path, e.Message);
                Assert.Contains(name.EndsWith(".png", StringComparison.Ordinal) ? "8192×8192 (67108864 pixels)" : "8000×8000 (64000000 pixels)", e.Message);
                Assert.Contains("at most 16777216 pixels (4096×4096)", e.Message);
                Assert.Contains("Resize it first", e.Message);
            }
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void TheLimitGrowsWithTheGenerationBetweenTheDefaultAndTheCeiling()
    {
        Assert.Equal(4096L * 4096, ImageLoader.DefaultMaxPixels);
        Assert.Equal(ImageLoader.DefaultMaxPixels, ImageLoader.MaxPixelsFor(512, 512));
        Assert.Equal(ImageLoader.DefaultMaxPixels, ImageLoader.MaxPixelsFor(1024, 1024));
        Assert.Equal(16L * 1536 * 1024, ImageLoader.MaxPixelsFor(1536, 1024));
        Assert.Equal(ImageLoader.MaxPixels, ImageLoader.MaxPixelsFor(2048, 2048));
        Assert.Equal(ImageLoader.MaxPixels, ImageLoader.MaxPixelsFor(8192, 8192));
        Assert.Throws<ArgumentOutOfRangeException>(() => ImageLoader.MaxPixelsFor(0, 512));
    }

    [Fact]
    public void AnyLimitIsEnforcedFromTheHeaderOfEveryFormat()
    {
        using var image = NoiseImage(64, 48);
        var encoded = new List<(string Name, byte[] Bytes)> { ("a.png", Encode(image, "png")), ("a.jpg", Encode(image, "jpg")), ("a.webp", Encode(image, "webp")),
            ("a.gif", Gif(64, 48, (x, y) => x)), ("a.bmp", Bmp(64, 48, (x, y) => ((byte)x, 0, 0))) };
        foreach (var (name, bytes) in encoded)
        {
            var e = Assert.Throws<InvalidDataException>(() => ImageLoader.Load(bytes, name, maxPixels: 64 * 48 - 1));
            Assert.Contains("64×48 (3072 pixels); at most 3071 pixels are decoded", e.Message);
            using var loaded = ImageLoader.Load(bytes, name, maxPixels: 64 * 48);
            Assert.Equal((64, 48), (loaded.Width, loaded.Height));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => ImageLoader.Load(encoded[0].Bytes, "a.png", maxPixels: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => ImageLoader.Load(encoded[0].Bytes, "a.png", maxPixels: ImageLoader.MaxPixels + 1));
    }
}

using System.Buffers.Binary;
using Microsoft.ML.Data;
using MLNet.Diffusion.Imaging;
using static MLNet.Diffusion.Tests.Imaging.EncodedImages;

namespace MLNet.Diffusion.Tests.Imaging;

/// <summary>
/// Issue 12, item 3: truncated and corrupt images are refused with the reason, not decoded to partial pictures. The
/// images are 256×256 noise, so that their compressed data is large and every cut falls inside the pixel data.
/// </summary>
public class ImageStructureTests
{
    private static readonly Lazy<byte[]> NoiseJpeg = new(() => { using var i = NoiseImage(256, 256); return Encode(i, "jpg"); });
    private static readonly Lazy<byte[]> NoisePng = new(() => { using var i = NoiseImage(256, 256); return Encode(i, "png"); });
    private static readonly Lazy<byte[]> NoiseWebP = new(() => { using var i = NoiseImage(256, 256); return Encode(i, "webp"); });

    private static string Refusal(byte[] bytes, string name)
    {
        var e = Assert.Throws<InvalidDataException>(() => ImageLoader.Load(bytes, name));
        Assert.Contains($"'{name}'", e.Message);
        return e.Message;
    }

    // ---- JPEG -------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(30)]
    [InlineData(50)]
    [InlineData(90)]
    [InlineData(99)]
    public void JpegCutInItsPixelDataIsRefused(int percent)
    {
        var jpeg = NoiseJpeg.Value;
        int cut = jpeg.Length * percent / 100;
        Assert.True(IndexOfMarker(jpeg, 0xDA) < jpeg.Length * 30 / 100, "the scan must start before the cut");
        string message = Refusal(jpeg[..cut], $"cut{percent}.jpg");
        Assert.Contains("truncated JPEG", message);
        Assert.Contains("FF D9", message);
        Assert.Contains($"ends at byte {cut}", message);
    }

    [Fact]
    public void JpegWithRestartMarkersOutOfOrderIsRefused()
    {
        var jpeg = NoiseJpeg.Value;
        int sos = IndexOfMarker(jpeg, 0xDA), scan = sos + 2 + BinaryPrimitives.ReadUInt16BigEndian(jpeg.AsSpan(sos + 2));
        byte[] dri = [0xFF, 0xDD, 0x00, 0x04, 0x00, 0x10];
        byte[] Restarts(params byte[] rst) =>
            [.. jpeg[..sos], .. dri, .. jpeg[sos..(scan + 100)], 0xFF, rst[0], .. jpeg[(scan + 100)..(scan + 200)], 0xFF, rst[1], .. jpeg[(scan + 200)..]];
        Assert.Contains("RST2 at byte", Refusal(Restarts(0xD0, 0xD2), "restarts.jpg"));
        Assert.Contains("RST1 belongs", Refusal(Restarts(0xD0, 0xD2), "restarts.jpg"));
        // In order, the structure passes (the decoder then judges the data: libjpeg-turbo resynchronises with a warning).
        try { ImageLoader.Load(Restarts(0xD0, 0xD1), "ordered.jpg").Dispose(); }
        catch (InvalidDataException e) { Assert.DoesNotContain("RST", e.Message); }
    }

    [Fact]
    public void JpegWithGarbageWhereAMarkerBelongsIsRefused()
    {
        var jpeg = (byte[])NoiseJpeg.Value.Clone();
        // The segment after the frame header (the header reader stops at the frame header).
        int sof = IndexOfMarker(jpeg, 0xC0), next = sof + 2 + BinaryPrimitives.ReadUInt16BigEndian(jpeg.AsSpan(sof + 2));
        jpeg[next] = 0x12;
        Assert.Contains($"byte {next} should start a marker", Refusal(jpeg, "garbage.jpg"));
        Assert.Contains("without the end-of-image marker", Refusal([0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 8, 0, 16, 0, 16, 1, 1, 0x11, 0, 0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0], "no-scan-data.jpg"));
    }

    [Fact]
    public void ProgressiveJpegStructureIsFollowedThroughEveryScan()
    {
        // SOI, SOF2, then two scans with a DHT between them (a progressive file's shape), each scan's data holding a
        // stuffed FF 00, then EOI: complete. Cut inside the second scan: truncated.
        byte[] segment(byte marker, params byte[] payload) => [0xFF, marker, 0, (byte)(payload.Length + 2), .. payload];
        byte[] scan = [.. segment(0xDA, 1, 1, 0, 0, 63, 0), 0x12, 0xFF, 0x00, 0x34, 0x56];
        byte[] jpeg = [0xFF, 0xD8, .. segment(0xC2, 8, 0, 16, 0, 16, 1, 1, 0x11, 0), .. segment(0xC4, 0, 1), .. scan, .. segment(0xC4, 0x10, 2), .. scan, 0xFF, 0xD9];
        JpegStructure.Verify(new MemoryStream(jpeg), 0, "progressive.jpg");
        var e = Assert.Throws<InvalidDataException>(() => JpegStructure.Verify(new MemoryStream(jpeg[..^4]), 0, "cut-progressive.jpg"));
        Assert.Contains($"scan data (from byte {jpeg.Length - 2 - scan.Length}) ends at byte {jpeg.Length - 4}", e.Message);
    }

    // ---- PNG --------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(30)]
    [InlineData(50)]
    [InlineData(90)]
    public void PngCutInItsPixelDataIsRefused(int percent)
    {
        var png = NoisePng.Value;
        Assert.True(Chunks(png).First(c => c.Type == "IDAT").Offset < png.Length * 30 / 100);
        string message = Refusal(png[..(png.Length * percent / 100)], $"cut{percent}.png");
        Assert.Contains("truncated PNG", message);
        Assert.Contains("IEND", message);
    }

    [Fact]
    public void PngWhoseImageDataIsRandomBytesIsRefused()
    {
        // The CRC is rewritten to match: only the zlib stream can tell.
        var random = ChangeChunk(NoisePng.Value, "IDAT", data => new Random(7).NextBytes(data), fixCrc: true);
        string message = Refusal(random, "random.png");
        Assert.Contains("corrupt PNG", message);
        Assert.Contains("not a valid zlib stream", message);
    }

    [Theory]
    [InlineData(0.1)]
    [InlineData(0.5)]
    [InlineData(0.95)]
    public void PngWithAFlippedByteInItsImageDataIsRefused(double where)
    {
        void Flip(Span<byte> data) => data[(int)(data.Length * where)] ^= 0x10;
        string stale = Refusal(ChangeChunk(NoisePng.Value, "IDAT", Flip, fixCrc: false), "flipped.png");
        Assert.Contains("the CRC of its IDAT chunk", stale);
        Assert.Contains("does not match", stale);
        // With the CRC rewritten, the zlib stream (its Adler-32, its codes), the inflated size or a filter type fails.
        string rewritten = Refusal(ChangeChunk(NoisePng.Value, "IDAT", Flip, fixCrc: true), "flipped-crc.png");
        Assert.Contains("corrupt PNG", rewritten);
        Assert.Contains("image data", rewritten);
    }

    [Fact]
    public void PngWithOneIdatChunkAndAFlippedByteIsRefusedByItsCrc()
    {
        // The inflater fails on the changed byte before the chunk's end is read: the CRC is still the reason given.
        var random = new Random(3);
        var raw = RawImage(256, 256, 3, 8, false, (x, y) => random.Next(256));
        var png = ChangeChunk(Png(Ihdr(256, 256, 8, 2), raw, idatSize: int.MaxValue), "IDAT", data => data[1000] ^= 0x10, fixCrc: false);
        Assert.Single(Chunks(png), c => c.Type == "IDAT");
        Assert.Contains("the CRC of its IDAT chunk", Refusal(png, "one-idat.png"));
    }

    [Fact]
    public void PngWithABadChecksumAtTheEndOfItsZlibStreamIsRefused()
    {
        var png = ChangeChunk(NoisePng.Value, "IDAT", data => data[^1] ^= 1, fixCrc: true, last: true);
        Assert.Contains("not a valid zlib stream", Refusal(png, "adler.png"));
    }

    [Fact]
    public void PngWhoseImageDataInflatesToTheWrongSizeIsRefused()
    {
        var ihdr = Ihdr(16, 16, 8, 2);
        var raw = RawImage(16, 16, 3, 8, false, (x, y) => x * 16 + y);
        Assert.Contains("short: the zlib stream ends after 735 inflated bytes, where a 16×16 8-bit colour-type-2 image (not interlaced) needs 784",
            Refusal(Png(ihdr, raw.AsSpan(..735)), "short.png"));
        Assert.Contains("inflates to more than the 784 bytes", Refusal(Png(ihdr, [.. raw, 0, 1, 2]), "long.png"));
        var badFilter = (byte[])raw.Clone();
        badFilter[5 * 49] = 5;
        Assert.Contains("row 5 of its image data has filter type 5", Refusal(Png(ihdr, badFilter), "filter.png"));
    }

    [Fact]
    public void PngChunkFaultsAreRefused()
    {
        var ihdr = Ihdr(8, 8, 8, 0);
        var raw = RawImage(8, 8, 1, 8, false, (x, y) => x + y);
        var good = Png(ihdr, raw, idatSize: 20);
        using (ImageLoader.Load(good, "good.png")) { }
        Assert.Contains("without a PLTE chunk", Refusal(Png(Ihdr(8, 8, 8, 3), raw), "palette.png"));
        Assert.Contains("bit depth 4 for colour type 2", Refusal(Png(Ihdr(8, 8, 4, 2), raw), "depth.png"));
        Assert.Contains("interlace method 2", Refusal(Png([.. ihdr[..12], 2], raw), "interlace.png"));
        Assert.Contains("critical chunk 'ABCD'", Refusal(Png(ihdr, raw, before: ("ABCD", [1, 2])), "critical.png"));
        Assert.Contains("CRC of its tEXt chunk", Refusal(ChangeChunk(Png(ihdr, raw, before: ("tEXt", "a\0b"u8.ToArray())), "tEXt", d => d[0] = (byte)'c', fixCrc: false), "text.png"));
        // IDAT chunks split by another chunk: the first run is cut short…
        var (second, _, _) = Chunks(good).Where(c => c.Type == "IDAT").ElementAt(1);
        var split = new MemoryStream();
        split.Write(good.AsSpan(0, second));
        Chunk(split, "tEXt", "a\0b"u8);
        split.Write(good.AsSpan(second));
        Assert.Contains("IDAT) is short", Refusal(split.ToArray(), "split.png"));
        // …or complete, with a stray IDAT after it.
        var stray = new MemoryStream();
        stray.Write(good.AsSpan(0, good.Length - 12));
        Chunk(stray, "tEXt", "a\0b"u8);
        Chunk(stray, "IDAT", []);
        stray.Write(good.AsSpan(good.Length - 12));
        Assert.Contains("IDAT chunks are not consecutive", Refusal(stray.ToArray(), "stray.png"));
        Assert.Contains("no IDAT chunk", Refusal([.. PngSignature, .. good[8..33], .. good[^12..]], "no-idat.png"));
    }

    // ---- good images still load ---------------------------------------------------------------------------------

    [Fact]
    public void GoodSkiaEncodedImagesLoad()
    {
        using var source = NoiseImage(256, 256);
        foreach (var (bytes, name) in new[] { (NoisePng.Value, "noise.png"), (NoiseJpeg.Value, "noise.jpg"), (NoiseWebP.Value, "noise.webp") })
        {
            using var image = ImageLoader.Load(bytes, name);
            Assert.Equal((256, 256), (image.Width, image.Height));
            if (name.EndsWith(".png", StringComparison.Ordinal))
                Assert.Equal(Pixel(source, 200, 100), Pixel(image, 200, 100));
        }
        // Data after JPEG's EOI (cameras append some) is ignored.
        using var trailing = ImageLoader.Load([.. NoiseJpeg.Value, 1, 2, 3], "trailing.jpg");
    }

    public static TheoryData<string, int, int, int, int, bool> PngKinds => new()
    {
        // name, width, height, bit depth, colour type, interlaced: odd sizes so that rows end mid-byte and Adam7 passes are uneven.
        { "rgb8", 37, 23, 8, 2, false },
        { "rgb8 interlaced", 37, 23, 8, 2, true },
        { "grey1 interlaced", 13, 5, 1, 0, true },
        { "grey2", 11, 3, 2, 0, false },
        { "grey4 interlaced", 9, 9, 4, 0, true },
        { "grey16 interlaced", 10, 7, 16, 0, true },
        { "rgba16", 5, 4, 16, 6, false },
        { "grey-alpha8 interlaced", 3, 2, 8, 4, true },
        { "palette4 interlaced", 7, 1, 4, 3, true },
        { "one pixel interlaced", 1, 1, 8, 2, true },
    };

    /// <summary>PNGs written here for every colour type and depth, interlaced or not: the expected inflated size must match libpng's, which decodes them.</summary>
    [Theory]
    [MemberData(nameof(PngKinds))]
    public void GoodPngsOfEveryKindLoad(string name, int width, int height, int bitDepth, int colourType, bool interlaced)
    {
        int channels = colourType switch { 0 or 3 => 1, 2 => 3, 4 => 2, _ => 4 };
        int max = (1 << bitDepth) - 1;
        int Sample(int x, int y) => (x * 7 + y * 3) % (max + 1);
        var raw = RawImage(width, height, channels, bitDepth, interlaced, Sample, opaque: colourType is 4 or 6);
        (string, byte[])[] palette = colourType == 3 ? [("PLTE", Enumerable.Range(0, 16).SelectMany(i => new[] { (byte)(16 * i), (byte)(255 - 16 * i), (byte)7 }).ToArray())] : [];
        var png = Png(Ihdr((uint)width, (uint)height, (byte)bitDepth, (byte)colourType, interlaced), raw, idatSize: 17, before: palette);
        using var image = ImageLoader.Load(png, name + ".png");
        Assert.Equal((width, height), (image.Width, image.Height));
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                var (r, g, _, _) = Pixel(image, x, y);
                int s = Sample(x, y);
                int expected = colourType == 3 ? 16 * s : (int)Math.Round(s * 255.0 / max);
                Assert.True(Math.Abs(r - expected) <= 1, $"{name} ({x}, {y}): red {r}, expected {expected}");
                if (colourType == 3) Assert.Equal(255 - 16 * s, g);
            }
    }

    [Fact]
    public void GoodGifsAndBmpsLoad()
    {
        int Grey(int x, int y) => (x * 5 + y * 3) % 128;
        using (var gif = ImageLoader.Load(Gif(300, 20, Grey), "grey.gif"))
        {
            Assert.Equal((300, 20), (gif.Width, gif.Height));
            Assert.Equal((byte)(2 * Grey(250, 17)), Pixel(gif, 250, 17).R);
        }
        (byte, byte, byte) Colour(int x, int y) => ((byte)(x * 9), (byte)(y * 11), (byte)(x ^ y));
        foreach (bool rle in new[] { false, true })
        {
            using var bmp = ImageLoader.Load(Bmp(21, 13, Colour, rle), rle ? "rle8.bmp" : "rgb24.bmp");
            Assert.Equal((21, 13), (bmp.Width, bmp.Height));
            var (r, g, b, _) = Pixel(bmp, 20, 12);
            Assert.Equal(rle ? (Colour(20, 12).Item1, Colour(20, 12).Item1, Colour(20, 12).Item1) : Colour(20, 12), (r, g, b));
        }
    }

    // ---- GIF, BMP, WebP cut short ---------------------------------------------------------------------------

    [Fact]
    public void GifsBmpsAndWebPsCutShortAreRefused()
    {
        var gif = Gif(300, 20, (x, y) => (x + y) % 128);
        Assert.Contains("truncated GIF", Refusal(gif[..(gif.Length / 2)], "half.gif"));
        Assert.Contains("before its trailer", Refusal(gif[..^1], "no-trailer.gif"));
        Assert.Contains("corrupt GIF", Refusal([.. gif[..^1], 0x99], "bad-block.gif"));

        var bmp = Bmp(64, 64, (x, y) => ((byte)x, (byte)y, 0));
        Assert.Contains("need 12288 bytes from byte 54", Refusal(bmp[..(bmp.Length * 9 / 10)], "cut.bmp"));
        var rle = Bmp(64, 64, (x, y) => ((byte)x, (byte)y, 0), rle8: true);
        Assert.Contains("end-of-bitmap", Refusal(rle[..(rle.Length / 2)], "cut-rle.bmp"));
        var jpegBmp = (byte[])bmp.Clone();
        jpegBmp[30] = 4;
        Assert.Contains("compression method 4, which is not read", Refusal(jpegBmp, "jpeg-in.bmp"));

        var webp = NoiseWebP.Value;
        Assert.Contains("truncated WebP", Refusal(webp[..(webp.Length / 2)], "half.webp"));
        var overrun = (byte[])webp.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(overrun.AsSpan(16), BinaryPrimitives.ReadUInt32LittleEndian(webp.AsSpan(16)) + 100);
        Assert.Contains("past the RIFF end", Refusal(overrun, "overrun.webp"));
    }
}

using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Tests.Imaging;

/// <summary>
/// Encoded images for the loader's tests: noise pictures encoded by SkiaSharp (through <see cref="MLImage.Save"/>),
/// and PNG, GIF and BMP files written here byte by byte from their specifications, so that a test can place a fault
/// exactly. The CRC-32 here is the bitwise definition, independent of the library's table.
/// </summary>
internal static class EncodedImages
{
    /// <summary>A gradient with seeded noise: large once compressed, so that a cut at 30 % falls in the pixel data.</summary>
    public static MLImage NoiseImage(int width, int height, int seed = 1)
    {
        var random = new Random(seed);
        var rgba = new byte[width * height * 4];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int o = 4 * (y * width + x);
                rgba[o] = (byte)(x * 255 / width ^ random.Next(64));
                rgba[o + 1] = (byte)(y * 255 / height ^ random.Next(64));
                rgba[o + 2] = (byte)random.Next(256);
                rgba[o + 3] = 255;
            }
        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Rgba32, rgba);
    }

    /// <summary>The image encoded by SkiaSharp in the format its extension names ("png", "jpg", "webp").</summary>
    public static byte[] Encode(MLImage image, string extension)
    {
        var dir = Directory.CreateTempSubdirectory("mlnd-encode-");
        try
        {
            string path = Path.Combine(dir.FullName, "image." + extension);
            image.Save(path);
            return File.ReadAllBytes(path);
        }
        finally { dir.Delete(true); }
    }

    /// <summary>RGBA of pixel (x, y) of a decoded image, whichever of RGBA32 and BGRA32 it holds.</summary>
    public static (byte R, byte G, byte B, byte A) Pixel(MLImage image, int x, int y)
    {
        var p = image.Pixels.Slice(4 * (y * image.Width + x), 4);
        return image.PixelFormat == MLPixelFormat.Bgra32 ? (p[2], p[1], p[0], p[3]) : (p[0], p[1], p[2], p[3]);
    }

    // ---- PNG ------------------------------------------------------------------------------------------------

    /// <summary>PNG's CRC-32 by its definition (ISO 3309, reflected polynomial 0xEDB88320), a bit at a time.</summary>
    public static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }

    /// <summary>Writes a chunk: length, type, data, CRC of type and data.</summary>
    public static void Chunk(Stream s, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> four = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(four, (uint)data.Length);
        s.Write(four);
        var typed = new byte[4 + data.Length];
        System.Text.Encoding.ASCII.GetBytes(type, typed);
        data.CopyTo(typed.AsSpan(4));
        s.Write(typed);
        BinaryPrimitives.WriteUInt32BigEndian(four, Crc32(typed));
        s.Write(four);
    }

    public static readonly byte[] PngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    public static byte[] Ihdr(uint width, uint height, byte bitDepth, byte colourType, bool interlaced = false)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = bitDepth;
        ihdr[9] = colourType;
        ihdr[12] = (byte)(interlaced ? 1 : 0);
        return ihdr;
    }

    public static byte[] Zlib(ReadOnlySpan<byte> raw)
    {
        var z = new MemoryStream();
        using (var zlib = new ZLibStream(z, CompressionLevel.Optimal, leaveOpen: true)) zlib.Write(raw);
        return z.ToArray();
    }

    /// <summary>A PNG from its IHDR and filtered image data: signature, IHDR, chunks before the data, the zlib data in IDATs of <paramref name="idatSize"/> bytes, IEND.</summary>
    public static byte[] Png(byte[] ihdr, ReadOnlySpan<byte> raw, int idatSize = 1 << 16, params (string Type, byte[] Data)[] before)
    {
        var ms = new MemoryStream();
        ms.Write(PngSignature);
        Chunk(ms, "IHDR", ihdr);
        foreach (var (type, data) in before) Chunk(ms, type, data);
        var z = Zlib(raw);
        for (int i = 0; i < z.Length; i += idatSize) Chunk(ms, "IDAT", z.AsSpan(i, Math.Min(idatSize, z.Length - i)));
        Chunk(ms, "IEND", []);
        return ms.ToArray();
    }

    /// <summary>Adam7 passes (PNG specification, 8.2): first column, first row, column step, row step.</summary>
    private static readonly (int X0, int Y0, int Dx, int Dy)[] Adam7 =
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

    /// <summary>
    /// Filtered (filter type 0) image data for a <paramref name="channels"/>-channel image whose every sample of
    /// pixel (x, y) is <paramref name="sample"/>(x, y) at <paramref name="bitDepth"/> bits, in one pass or Adam7's seven;
    /// with <paramref name="opaque"/>, the last channel (alpha) is the largest value instead.
    /// </summary>
    public static byte[] RawImage(int width, int height, int channels, int bitDepth, bool interlaced, Func<int, int, int> sample, bool opaque = false)
    {
        var raw = new MemoryStream();
        foreach (var (x0, y0, dx, dy) in interlaced ? Adam7 : [(0, 0, 1, 1)])
        {
            int w = (width - x0 + dx - 1) / dx, h = (height - y0 + dy - 1) / dy;
            if (w <= 0 || h <= 0) continue;
            for (int j = 0; j < h; j++)
            {
                var row = new byte[(w * channels * bitDepth + 7) / 8];
                int bit = 0;
                for (int i = 0; i < w; i++)
                    for (int c = 0; c < channels; c++, bit += bitDepth)
                    {
                        int v = opaque && c == channels - 1 ? (1 << bitDepth) - 1 : sample(x0 + i * dx, y0 + j * dy);
                        if (bitDepth == 16) { row[bit / 8] = (byte)(v >> 8); row[bit / 8 + 1] = (byte)v; }
                        else row[bit / 8] |= (byte)(v << (8 - bitDepth - bit % 8));
                    }
                raw.WriteByte(0);
                raw.Write(row);
            }
        }
        return raw.ToArray();
    }

    /// <summary>The chunks of a PNG: (offset of the length field, data length, type).</summary>
    public static List<(int Offset, int Length, string Type)> Chunks(byte[] png)
    {
        var chunks = new List<(int, int, string)>();
        for (int at = 8; at + 8 <= png.Length;)
        {
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at));
            chunks.Add((at, length, System.Text.Encoding.ASCII.GetString(png, at + 4, 4)));
            at += 12 + length;
        }
        return chunks;
    }

    /// <summary>A copy of <paramref name="png"/> with the data of its first (or last) chunk of <paramref name="type"/> changed in place (same length), its CRC rewritten or left stale.</summary>
    public static byte[] ChangeChunk(byte[] png, string type, Action<Span<byte>> change, bool fixCrc, bool last = false)
    {
        var copy = (byte[])png.Clone();
        var ofType = Chunks(copy).Where(c => c.Type == type);
        var (offset, length, _) = last ? ofType.Last() : ofType.First();
        change(copy.AsSpan(offset + 8, length));
        if (fixCrc) BinaryPrimitives.WriteUInt32BigEndian(copy.AsSpan(offset + 8 + length), Crc32(copy.AsSpan(offset + 4, 4 + length)));
        return copy;
    }

    /// <summary>
    /// The amplification attack: an 8-bit RGB PNG declaring <paramref name="side"/>×<paramref name="side"/> whose image
    /// data is all zeros, so that it compresses about 1000:1 (8192 gives 196 KB for 201 MB of image data).
    /// </summary>
    public static byte[] ZeroPng(int side)
    {
        var ms = new MemoryStream();
        ms.Write(PngSignature);
        Chunk(ms, "IHDR", Ihdr((uint)side, (uint)side, 8, 2));
        var z = new MemoryStream();
        var row = new byte[1 + 3 * side];
        using (var zlib = new ZLibStream(z, CompressionLevel.SmallestSize, leaveOpen: true))
            for (int y = 0; y < side; y++) zlib.Write(row);
        Chunk(ms, "IDAT", z.ToArray());
        Chunk(ms, "IEND", []);
        return ms.ToArray();
    }

    // ---- JPEG -----------------------------------------------------------------------------------------------

    /// <summary>The offset of the first FF <paramref name="marker"/> byte pair (for JPEGs whose headers hold no such pair elsewhere).</summary>
    public static int IndexOfMarker(byte[] jpeg, byte marker) => jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, marker]);

    /// <summary>A copy of a baseline JPEG with its frame header's height and width set (the rest untouched).</summary>
    public static byte[] PatchJpegSize(byte[] jpeg, ushort width, ushort height)
    {
        var copy = (byte[])jpeg.Clone();
        int sof = IndexOfMarker(copy, 0xC0);
        BinaryPrimitives.WriteUInt16BigEndian(copy.AsSpan(sof + 5), height);
        BinaryPrimitives.WriteUInt16BigEndian(copy.AsSpan(sof + 7), width);
        return copy;
    }

    // ---- GIF and BMP ----------------------------------------------------------------------------------------

    /// <summary>
    /// A GIF89a of 128 grey levels (index i is grey 2i) whose pixels are <paramref name="index"/>(x, y) &lt; 128. The
    /// LZW data is the "uncompressed" form: with a minimum code size of 7 every code is 8 bits, one byte per pixel, and
    /// a clear code every 100 pixels keeps the table from growing to 9-bit codes.
    /// </summary>
    public static byte[] Gif(int width, int height, Func<int, int, int> index)
    {
        var ms = new MemoryStream();
        ms.Write("GIF89a"u8);
        ms.Write([(byte)width, (byte)(width >> 8), (byte)height, (byte)(height >> 8), 0x80 | 6, 0, 0]); // global table of 2^7
        for (int i = 0; i < 128; i++) ms.Write([(byte)(2 * i), (byte)(2 * i), (byte)(2 * i)]);
        ms.Write([0x21, 0xF9, 4, 0, 0, 0, 0, 0]);                    // graphic control extension
        ms.Write([0x21, 0xFE, 3, (byte)'m', (byte)'l', (byte)'n', 0]); // comment extension
        ms.Write([0x2C, 0, 0, 0, 0, (byte)width, (byte)(width >> 8), (byte)height, (byte)(height >> 8), 0, 7]);
        var codes = new List<byte>();
        for (int p = 0; p < width * height; p++)
        {
            if (p % 100 == 0) codes.Add(128); // clear
            codes.Add((byte)index(p % width, p / width));
        }
        codes.Add(129); // end of information
        foreach (var block in codes.Chunk(255))
        {
            ms.WriteByte((byte)block.Length);
            ms.Write(block);
        }
        ms.WriteByte(0);
        ms.WriteByte(0x3B);
        return ms.ToArray();
    }

    /// <summary>A bottom-up BMP with a 40-byte header: 24-bit uncompressed, or 8-bit RLE8 over 256 grey levels.</summary>
    public static byte[] Bmp(int width, int height, Func<int, int, (byte R, byte G, byte B)> pixel, bool rle8 = false)
    {
        var pixels = new MemoryStream();
        for (int y = height - 1; y >= 0; y--)
        {
            if (rle8)
            {
                for (int x = 0; x < width; x++) pixels.Write([(byte)1, pixel(x, y).R]); // runs of one
                pixels.Write([0, 0]);                                             // end of line
            }
            else
            {
                for (int x = 0; x < width; x++) { var (r, g, bl) = pixel(x, y); pixels.Write([bl, g, r]); }
                while (pixels.Length % 4 != 0) pixels.WriteByte(0);
            }
        }
        if (rle8) pixels.Write([0, 1]); // end of bitmap
        int paletteBytes = rle8 ? 1024 : 0, offset = 54 + paletteBytes;
        var b = new byte[offset];
        b[0] = (byte)'B'; b[1] = (byte)'M';
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(2), (uint)(offset + pixels.Length));
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(10), (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(18), width);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(22), height);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(26), 1);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(28), (ushort)(rle8 ? 8 : 24));
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(30), (uint)(rle8 ? 1 : 0));
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(34), (uint)pixels.Length);
        for (int i = 0; i < paletteBytes / 4; i++) { b[54 + 4 * i] = b[55 + 4 * i] = b[56 + 4 * i] = (byte)i; }
        return [.. b, .. pixels.ToArray()];
    }
}

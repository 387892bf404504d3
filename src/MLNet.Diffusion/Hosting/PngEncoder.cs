using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Hosting;

/// <summary>
/// Writes an <see cref="MLImage"/> as PNG bytes in memory (PNG specification, ISO/IEC 15948 / W3C PNG 2nd ed.).
/// </summary>
/// <remarks>
/// <see cref="MLImage.Save"/> only writes to a path, and a server answering an image request should not need a
/// writable temporary folder, leave files behind when it stops mid-write, or pay a disk round trip per image. A PNG
/// is small to write: the signature, IHDR, one IDAT holding the zlib stream (<see cref="ZLibStream"/>) of filtered
/// scanlines, and IEND, each chunk with its CRC-32. Opaque images (all the pipeline makes) are written as 8-bit RGB,
/// others as 8-bit RGBA with straight alpha. Each row takes the filter (None, Sub, Up, Average, Paeth) with the
/// smallest sum of absolute signed bytes, libpng's heuristic. The output depends only on the pixels and the
/// runtime's zlib, not on SkiaSharp's encoder.
/// </remarks>
internal static class PngEncoder
{
    /// <summary>The eight bytes every PNG file starts with.</summary>
    public static ReadOnlySpan<byte> Signature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    private static readonly uint[] s_crcTable = BuildCrcTable();

    /// <summary>Encodes <paramref name="image"/> (RGBA or BGRA, 32 bits per pixel) as PNG.</summary>
    /// <exception cref="NotSupportedException">The image's pixel format is neither Rgba32 nor Bgra32.</exception>
    public static byte[] Encode(MLImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        bool bgra = image.PixelFormat switch
        {
            MLPixelFormat.Rgba32 => false,
            MLPixelFormat.Bgra32 => true,
            var f => throw new NotSupportedException($"Cannot write a PNG from an image in pixel format {f}; Rgba32 or Bgra32 is needed."),
        };
        int width = image.Width, height = image.Height;
        ReadOnlySpan<byte> pixels = image.Pixels;
        int stride = pixels.Length / height;
        if (stride < 4 * width)
            throw new InvalidDataException($"The image holds {pixels.Length} bytes, too few for {width}×{height} pixels of 4 bytes.");
        return Encode(pixels, width, height, stride, bgra);
    }

    /// <summary>Encodes 32-bit pixels, rows <paramref name="stride"/> bytes apart, as PNG.</summary>
    internal static byte[] Encode(ReadOnlySpan<byte> pixels, int width, int height, int stride, bool bgra)
    {
        bool opaque = true;
        for (int y = 0; y < height && opaque; y++)
        {
            var row = pixels.Slice(y * stride, 4 * width);
            for (int x = 3; x < row.Length; x += 4)
                if (row[x] != 255) { opaque = false; break; }
        }
        int bpp = opaque ? 3 : 4;
        int rowBytes = width * bpp;

        using var output = new MemoryStream();
        output.Write(Signature);

        Span<byte> header = stackalloc byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header[4..], height);
        header[8] = 8;                       // bit depth
        header[9] = (byte)(opaque ? 2 : 6);  // colour type: truecolour, or truecolour with alpha
        header[10] = 0;                      // compression: deflate
        header[11] = 0;                      // filter method: adaptive (five filter types)
        header[12] = 0;                      // no interlace
        WriteChunk(output, "IHDR"u8, header);

        using (var idat = new MemoryStream())
        {
            using (var zlib = new ZLibStream(idat, CompressionLevel.Optimal, leaveOpen: true))
            {
                var previous = new byte[rowBytes];   // the row above the first is all zeros
                var current = new byte[rowBytes];
                var candidates = new byte[5][];
                for (int f = 0; f < 5; f++) candidates[f] = new byte[rowBytes + 1];
                for (int y = 0; y < height; y++)
                {
                    ToPngOrder(pixels.Slice(y * stride, 4 * width), current, bgra, opaque);
                    zlib.Write(FilterRow(current, previous, bpp, candidates));
                    (previous, current) = (current, previous);
                }
            }
            WriteChunk(output, "IDAT"u8, idat.GetBuffer().AsSpan(0, (int)idat.Length));
        }
        WriteChunk(output, "IEND"u8, []);
        return output.ToArray();
    }

    private static void ToPngOrder(ReadOnlySpan<byte> source, Span<byte> row, bool bgra, bool opaque)
    {
        int r = bgra ? 2 : 0, b = bgra ? 0 : 2;
        int o = 0;
        for (int i = 0; i < source.Length; i += 4)
        {
            row[o++] = source[i + r];
            row[o++] = source[i + 1];
            row[o++] = source[i + b];
            if (!opaque) row[o++] = source[i + 3];
        }
    }

    /// <summary>Filters one row with each of the five filter types and returns the one (filter byte first)
    /// whose bytes, read as signed, have the smallest sum of absolute values.</summary>
    private static ReadOnlySpan<byte> FilterRow(ReadOnlySpan<byte> row, ReadOnlySpan<byte> above, int bpp, byte[][] candidates)
    {
        long best = long.MaxValue;
        int bestType = 0;
        for (int type = 0; type < 5; type++)
        {
            var output = candidates[type];
            output[0] = (byte)type;
            long sum = 0;
            for (int i = 0; i < row.Length; i++)
            {
                int a = i >= bpp ? row[i - bpp] : 0, b = above[i], c = i >= bpp ? above[i - bpp] : 0;
                int predictor = type switch
                {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => (a + b) >> 1,
                    _ => Paeth(a, b, c),
                };
                byte value = (byte)(row[i] - predictor);
                output[i + 1] = value;
                sum += Math.Abs((int)(sbyte)value);   // widened first: Math.Abs((sbyte)-128) overflows
            }
            if (sum < best) { best = sum; bestType = type; }
        }
        return candidates[bestType];
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c;
        int pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    private static void WriteChunk(Stream output, ReadOnlySpan<byte> type, ReadOnlySpan<byte> data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        output.Write(word);
        output.Write(type);
        output.Write(data);
        uint crc = UpdateCrc(UpdateCrc(0xFFFFFFFFu, type), data) ^ 0xFFFFFFFFu;
        BinaryPrimitives.WriteUInt32BigEndian(word, crc);
        output.Write(word);
    }

    /// <summary>The PNG/zlib CRC-32 (polynomial 0xEDB88320, reflected), over the chunk type and data.</summary>
    internal static uint UpdateCrc(uint crc, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes) crc = s_crcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    private static uint[] BuildCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }
}

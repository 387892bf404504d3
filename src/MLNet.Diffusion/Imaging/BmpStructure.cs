using System.Buffers.Binary;

namespace MLNet.Diffusion.Imaging;

/// <summary>
/// Verifies a BMP before it is decoded: the pixel data offset must lie after the headers; uncompressed data
/// (BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS) must hold every row, each padded to 4 bytes, at its bit depth (1, 2, 4, 8,
/// 16, 24 or 32); RLE8 and RLE4 data is walked command by command to its end-of-bitmap code (00 01). A file cut short
/// fails these, which the decoder behind <c>MLImage</c> does not notice (it returns the missing rows blank). Other
/// compressions (embedded JPEG or PNG, OS/2 Huffman and RLE24) are refused: they cannot be verified here. BMP has no
/// checksum: changed pixel bytes are not detected.
/// </summary>
internal static class BmpStructure
{
    /// <summary>Verifies the BMP that starts at <paramref name="start"/>, whose header declared <paramref name="width"/>×<paramref name="height"/>.</summary>
    /// <exception cref="InvalidDataException">Truncated, corrupt or unsupported; the message names <paramref name="name"/> and the fault.</exception>
    public static void Verify(Stream stream, long start, long width, long height, string name)
    {
        using var reader = new EncodedReader(stream, start);
        Span<byte> head = stackalloc byte[38];
        if (!reader.TryRead(head[..26])) throw Truncated(name, reader, "in its headers");
        uint offset = BinaryPrimitives.ReadUInt32LittleEndian(head[10..]);
        uint dib = BinaryPrimitives.ReadUInt32LittleEndian(head[14..]);
        int bitCount;
        uint compression = 0;
        if (dib == 12) bitCount = BinaryPrimitives.ReadUInt16LittleEndian(head[24..]);
        else
        {
            if (!reader.TryRead(head[26..])) throw Truncated(name, reader, "in its headers");
            bitCount = BinaryPrimitives.ReadUInt16LittleEndian(head[28..]);
            compression = BinaryPrimitives.ReadUInt32LittleEndian(head[30..]);
        }
        if (offset < 14 + dib || offset > reader.Length)
            throw Corrupt(name, $"its pixel data offset {offset} is not between the end of its headers ({14 + dib}) and the end of the file ({reader.Length})");
        bool os2 = dib == 64 && compression is 3 or 4;
        switch (compression)
        {
            case 0 or 3 or 6 when !os2:
                if (bitCount is not (1 or 2 or 4 or 8 or 16 or 24 or 32))
                    throw Corrupt(name, $"it declares {bitCount} bits per pixel (1, 2, 4, 8, 16, 24 or 32 are read)");
                long rowBytes = (width * bitCount + 31) / 32 * 4, needed = rowBytes * height;
                if (offset + needed > reader.Length)
                    throw new InvalidDataException($"'{name}' is a truncated BMP: its {width}×{height} pixels at {bitCount} bits need {needed} bytes from byte {offset}, but the file ends at byte {reader.Length}; the file was cut short. Re-export or re-download the image.");
                return;
            case 1 or 2:
                if (bitCount != (compression == 1 ? 8 : 4))
                    throw Corrupt(name, $"it declares RLE{(compression == 1 ? 8 : 4)} compression at {bitCount} bits per pixel");
                reader.TrySkip(offset - reader.Position);
                WalkRle(reader, fourBit: compression == 2, name);
                return;
            default:
                throw new InvalidDataException($"'{name}' is a BMP with compression method {compression}{(os2 ? " (OS/2)" : "")}, which is not read (uncompressed, bit-field and RLE BMPs are). Convert it to PNG first.");
        }
    }

    /// <summary>Walks RLE commands (two bytes each, plus absolute-mode data padded to 2 bytes) to end-of-bitmap.</summary>
    private static void WalkRle(EncodedReader reader, bool fourBit, string name)
    {
        Span<byte> pair = stackalloc byte[2];
        while (reader.TryRead(pair))
        {
            if (pair[0] != 0) continue; // a run: count, value
            switch (pair[1])
            {
                case 0: continue; // end of line
                case 1: return;   // end of bitmap
                case 2:           // delta: dx, dy
                    if (!reader.TrySkip(2)) break;
                    continue;
                default:          // absolute: n pixels follow, padded to a 16-bit boundary
                    int bytes = fourBit ? (pair[1] + 1) / 2 : pair[1];
                    if (!reader.TrySkip(bytes + (bytes & 1))) break;
                    continue;
            }
            break;
        }
        throw new InvalidDataException($"'{name}' is a truncated BMP: its RLE pixel data ends at byte {reader.Length} without the end-of-bitmap code (00 01); the file was cut short. Re-export or re-download the image.");
    }

    private static InvalidDataException Corrupt(string name, string what) =>
        new($"'{name}' is a corrupt BMP: {what}. Re-export or re-download the image.");

    private static InvalidDataException Truncated(string name, EncodedReader reader, string where) =>
        new($"'{name}' is a truncated BMP: its data ends at byte {reader.Length} {where}; the file was cut short. Re-export or re-download the image.");
}

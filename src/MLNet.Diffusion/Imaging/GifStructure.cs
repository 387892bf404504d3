namespace MLNet.Diffusion.Imaging;

/// <summary>
/// Verifies a GIF's block structure before it is decoded (GIF89a specification, sections 17–27): after the logical
/// screen descriptor and its colour table, every block is an extension (label and data sub-blocks), an image
/// (descriptor, local colour table, LZW code size, data sub-blocks) or the trailer 0x3B, which must come after at
/// least one image. A file cut short ends before the trailer, which the decoder behind <c>MLImage</c> does not
/// notice. GIF has no checksum: changed bytes inside the LZW data are not detected. Bytes after the trailer are ignored.
/// </summary>
internal static class GifStructure
{
    /// <summary>Verifies the GIF that starts at <paramref name="start"/>; the stream's position is moved.</summary>
    /// <exception cref="InvalidDataException">Truncated or corrupt; the message names <paramref name="name"/> and the fault.</exception>
    public static void Verify(Stream stream, long start, string name)
    {
        using var reader = new EncodedReader(stream, start);
        Span<byte> head = stackalloc byte[13];
        Span<byte> descriptor = stackalloc byte[9];
        if (!reader.TryRead(head)) throw Truncated(name, reader, "in its header");
        if (!reader.TrySkip(ColourTableBytes(head[10]))) throw Truncated(name, reader, "in its global colour table");
        bool image = false;
        while (true)
        {
            long at = reader.Position;
            switch (reader.ReadByte())
            {
                case 0x3B:
                    if (!image) throw new InvalidDataException($"'{name}' is a GIF without an image (its trailer at byte {at} comes first). Re-export the image.");
                    return;
                case 0x21:
                    if (reader.ReadByte() < 0) throw Truncated(name, reader, $"in the extension at byte {at}");
                    SkipSubBlocks(reader, at, name);
                    break;
                case 0x2C:
                    if (!reader.TryRead(descriptor)) throw Truncated(name, reader, $"in the image descriptor at byte {at}");
                    if (!reader.TrySkip(ColourTableBytes(descriptor[8])) || reader.ReadByte() < 0)
                        throw Truncated(name, reader, $"in the image at byte {at}");
                    SkipSubBlocks(reader, at, name);
                    image = true;
                    break;
                case < 0:
                    throw Truncated(name, reader, "before its trailer (0x3B)");
                case var other:
                    throw new InvalidDataException($"'{name}' is a corrupt GIF: byte {at} is {other:X2}, where an extension (21), an image (2C) or the trailer (3B) belongs. Re-export or re-download the image.");
            }
        }
    }

    /// <summary>A colour table's size from a packed field: 3·2^(n+1) bytes when its top bit is set.</summary>
    private static int ColourTableBytes(byte packed) => (packed & 0x80) != 0 ? 3 << ((packed & 7) + 1) : 0;

    private static void SkipSubBlocks(EncodedReader reader, long blockStart, string name)
    {
        int size;
        while ((size = reader.ReadByte()) > 0)
            if (!reader.TrySkip(size)) throw Truncated(name, reader, $"inside the data of the block at byte {blockStart}");
        if (size < 0) throw Truncated(name, reader, $"inside the data of the block at byte {blockStart}");
    }

    private static InvalidDataException Truncated(string name, EncodedReader reader, string where) =>
        new($"'{name}' is a truncated GIF: its data ends at byte {reader.Length} {where}, without the trailer (3B); the file was cut short. Re-export or re-download the image.");
}

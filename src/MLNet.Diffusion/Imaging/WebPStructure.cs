using System.Buffers.Binary;

namespace MLNet.Diffusion.Imaging;

/// <summary>
/// Verifies a WebP's container before it is decoded (RFC 9649, section 2): the file must hold the RIFF size it declares,
/// and its chunks (four-character code, little-endian size, data padded to an even length) must tile that size exactly
/// and include image data (VP8, VP8L, or ANMF frames). A file cut short fails this. WebP has no checksum: changed bytes
/// inside the VP8/VP8L bitstream are not detected. Bytes after the RIFF size are ignored.
/// </summary>
internal static class WebPStructure
{
    /// <summary>Verifies the WebP that starts at <paramref name="start"/>; the stream's position is moved.</summary>
    /// <exception cref="InvalidDataException">Truncated or corrupt; the message names <paramref name="name"/> and the fault.</exception>
    public static void Verify(Stream stream, long start, string name)
    {
        using var reader = new EncodedReader(stream, start);
        Span<byte> head = stackalloc byte[12];
        if (!reader.TryRead(head)) throw Truncated(name, "in its RIFF header", reader.Length, 12);
        long end = 8L + BinaryPrimitives.ReadUInt32LittleEndian(head[4..]);
        if (end > reader.Length) throw Truncated(name, "before the end its RIFF header declares", reader.Length, end);
        bool image = false;
        Span<byte> chunk = stackalloc byte[8];
        while (reader.Position < end)
        {
            long at = reader.Position;
            if (end - at < 8 || !reader.TryRead(chunk))
                throw Corrupt(name, $"{end - at} bytes at byte {at} are too few for a chunk header, before the RIFF end at byte {end}");
            long size = BinaryPrimitives.ReadUInt32LittleEndian(chunk[4..]);
            long next = reader.Position + size + (size & 1);
            if (next > end)
                throw Corrupt(name, $"its '{System.Text.Encoding.ASCII.GetString(chunk[..4])}' chunk at byte {at} declares {size} bytes, past the RIFF end at byte {end}");
            image |= chunk[..4].SequenceEqual("VP8 "u8) || chunk[..4].SequenceEqual("VP8L"u8) || chunk[..4].SequenceEqual("ANMF"u8);
            reader.TrySkip(next - reader.Position);
        }
        if (!image) throw Corrupt(name, "it has no image data (no VP8, VP8L or ANMF chunk)");
    }

    private static InvalidDataException Corrupt(string name, string what) =>
        new($"'{name}' is a corrupt WebP: {what}. Re-export or re-download the image.");

    private static InvalidDataException Truncated(string name, string where, long length, long declared) =>
        new($"'{name}' is a truncated WebP: its data ends at byte {length} {where} ({declared} bytes); the file was cut short. Re-export or re-download the image.");
}

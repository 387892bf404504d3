using System.Buffers.Binary;

namespace MLNet.Diffusion.Imaging;

/// <summary>
/// Verifies a JPEG's structure before it is decoded (ITU-T T.81, annex B): from SOI, every marker segment must fit in
/// the data, a frame header (SOFn) must precede the first scan (SOS), each scan's entropy-coded data is followed to the
/// marker that ends it (a 0xFF byte there is followed by a stuffed 0x00, a restart marker, or a marker), restart
/// markers must count RST0…RST7 in order when DRI sets an interval, and the image must end with EOI (FF D9). A file
/// cut anywhere after its headers lacks EOI, which the decoder behind <c>MLImage</c> does not notice (it returns the
/// missing rows grey). JPEG has no checksum: a changed byte inside the entropy-coded data that keeps this structure is
/// not detected. Bytes after EOI are ignored (cameras append data there).
/// </summary>
internal static class JpegStructure
{
    /// <summary>Verifies the JPEG that starts at <paramref name="start"/>; the stream's position is moved.</summary>
    /// <exception cref="InvalidDataException">Truncated or corrupt; the message names <paramref name="name"/> and the fault.</exception>
    public static void Verify(Stream stream, long start, string name)
    {
        using var reader = new EncodedReader(stream, start);
        reader.TrySkip(2); // SOI, checked with the header
        Span<byte> two = stackalloc byte[2];
        bool frame = false, scanned = false;
        int restartInterval = 0;
        int marker = NextMarker(reader, name);
        while (true)
        {
            long at = reader.Position - 2;
            switch (marker)
            {
                case < 0:
                    throw Truncated(name, reader, scanned ? "after its scan data" : "before its scan data");
                case 0xD9:
                    if (!scanned) throw Corrupt(name, $"it ends (EOI at byte {at}) before any scan data");
                    return;
                case 0x01 or (>= 0xD0 and <= 0xD7):
                    marker = NextMarker(reader, name);
                    continue;
                case 0xD8 or 0x00:
                    throw Corrupt(name, $"it has marker FF {marker:X2} at byte {at}, which cannot appear there");
            }
            if (!reader.TryRead(two)) throw Truncated(name, reader, $"in the length of the FF {marker:X2} segment at byte {at}");
            int length = BinaryPrimitives.ReadUInt16BigEndian(two);
            if (length < 2) throw Corrupt(name, $"the FF {marker:X2} segment at byte {at} declares length {length}");
            if (marker == 0xDD)
            {
                if (length != 4 || !reader.TryRead(two)) throw Corrupt(name, $"its restart interval segment (DRI) at byte {at} is malformed");
                restartInterval = BinaryPrimitives.ReadUInt16BigEndian(two);
                marker = NextMarker(reader, name);
                continue;
            }
            if (!reader.TrySkip(length - 2))
                throw Truncated(name, reader, $"inside the FF {marker:X2} segment of {length} bytes at byte {at}");
            if (marker is >= 0xC0 and <= 0xCF and not 0xC4 and not 0xC8 and not 0xCC) frame = true;
            if (marker != 0xDA)
            {
                marker = NextMarker(reader, name);
                continue;
            }
            if (!frame) throw Corrupt(name, $"its scan (SOS at byte {at}) comes before any frame header (SOFn)");
            scanned = true;
            marker = SkipScan(reader, restartInterval, at, name);
        }
    }

    /// <summary>Reads FF (fill FFs allowed) and the marker byte after a segment; −1 at the end of the data.</summary>
    private static int NextMarker(EncodedReader reader, string name)
    {
        int b = reader.ReadByte();
        if (b < 0) return -1;
        if (b != 0xFF) throw Corrupt(name, $"byte {reader.Position - 1} should start a marker (FF) but is {b:X2}");
        do b = reader.ReadByte(); while (b == 0xFF);
        return b;
    }

    /// <summary>Follows entropy-coded data to the marker after it and returns that marker (−1 if the data ends first).</summary>
    private static int SkipScan(EncodedReader reader, int restartInterval, long scanStart, string name)
    {
        int restarts = 0;
        while (reader.Fill())
        {
            var data = reader.Available;
            int k = data.IndexOf((byte)0xFF);
            if (k < 0)
            {
                reader.Advance(data.Length);
                continue;
            }
            reader.Advance(k + 1);
            int b;
            do b = reader.ReadByte(); while (b == 0xFF);
            if (b < 0) break;
            if (b == 0) continue; // a stuffed 0xFF data byte
            if (b is >= 0xD0 and <= 0xD7)
            {
                if (restartInterval > 0 && b != 0xD0 + (restarts & 7))
                    throw Corrupt(name, $"restart marker RST{b - 0xD0} at byte {reader.Position - 2} comes where RST{restarts & 7} belongs: its scan data is damaged");
                restarts++;
                continue;
            }
            return b;
        }
        throw new InvalidDataException($"'{name}' is a truncated JPEG: its scan data (from byte {scanStart}) ends at byte {reader.Length} without the end-of-image marker (EOI, FF D9); the file was cut short. Re-export or re-download the image.");
    }

    private static InvalidDataException Corrupt(string name, string what) =>
        new($"'{name}' is a corrupt JPEG: {what}. Re-export or re-download the image.");

    private static InvalidDataException Truncated(string name, EncodedReader reader, string where) =>
        new($"'{name}' is a truncated JPEG: its data ends at byte {reader.Length} {where}, without the end-of-image marker (EOI, FF D9); the file was cut short. Re-export or re-download the image.");
}

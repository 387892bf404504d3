using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace MLNet.Diffusion.Imaging;

/// <summary>
/// Verifies a PNG before it is decoded, in one forward pass that allocates nothing in proportion to the image
/// (PNG specification, 3rd edition, W3C 2025; the checks are those libpng makes as errors, made here because the
/// decoder behind <c>MLImage</c> returns a partial picture instead): the chunks are walked from IHDR to IEND with each
/// chunk's CRC-32 compared; IHDR's bit depth, colour type, compression, filter and interlace method must be defined
/// ones; PLTE must precede the image data of a palette image; the IDAT chunks must be consecutive, their
/// concatenation must be one zlib stream (its Adler-32 checked by the inflater) that inflates to exactly the declared
/// image's size, <c>Σ rows · (1 + row bytes)</c> over the pass or the seven Adam7 passes, and each row must start with
/// a filter type from 0 to 4. Ancillary chunks are checked for their CRC only; bytes after IEND are ignored.
/// </summary>
internal static class PngStructure
{
    /// <summary>Adam7's passes: first column, first row, column step, row step.</summary>
    private static ReadOnlySpan<byte> Adam7 => [0, 0, 8, 8, 4, 0, 8, 8, 0, 4, 4, 8, 2, 0, 4, 4, 0, 2, 2, 4, 1, 0, 2, 2, 0, 1, 1, 2];

    /// <summary>Verifies the PNG that starts at <paramref name="start"/>; the stream's position is moved.</summary>
    /// <exception cref="InvalidDataException">Truncated or corrupt; the message names <paramref name="name"/> and the fault.</exception>
    public static void Verify(Stream stream, long start, string name)
    {
        using var reader = new EncodedReader(stream, start);
        reader.TrySkip(8); // the signature, checked with the header
        Span<byte> type = stackalloc byte[4];
        Span<byte> ihdr = stackalloc byte[13];
        if (!NextChunk(reader, type, out long length, name) || !type.SequenceEqual("IHDR"u8) || length != 13)
            throw Corrupt(name, "it does not start with a 13-byte IHDR chunk");
        if (!reader.TryRead(ihdr)) throw Truncated(name, reader, "in its IHDR chunk");
        CheckCrc(reader, Crc32.Append(Crc32.Append(0, type), ihdr), type, name);
        var layout = RowLayout.FromHeader(ihdr, name);

        bool palette = false, imageData = false;
        if (!NextChunk(reader, type, out length, name)) throw Truncated(name, reader, "after its IHDR chunk, before any image data");
        while (true)
        {
            if (type.SequenceEqual("IDAT"u8))
            {
                if (imageData) throw Corrupt(name, $"its IDAT chunks are not consecutive (another IDAT chunk at byte {reader.Position - 8})");
                if (layout.ColourType == 3 && !palette) throw Corrupt(name, "it is a palette image without a PLTE chunk before its image data");
                imageData = true;
                if (!Inflate(reader, length, layout, type, out length, name)) throw Truncated(name, reader, "after its image data (IDAT)");
                continue; // Inflate read the header of the chunk after the last IDAT
            }
            if (type.SequenceEqual("IEND"u8))
            {
                if (!imageData) throw Corrupt(name, "it has no image data (no IDAT chunk before IEND)");
                CheckData(reader, type, length, name);
                return;
            }
            if (type.SequenceEqual("IHDR"u8)) throw Corrupt(name, $"it has a second IHDR chunk at byte {reader.Position - 8}");
            if (type.SequenceEqual("PLTE"u8)) palette = true;
            else if (char.IsAsciiLetterUpper((char)type[0]))
                throw Corrupt(name, $"it has a critical chunk '{Encoding.ASCII.GetString(type)}' at byte {reader.Position - 8} that PNG does not define");
            CheckData(reader, type, length, name);
            if (!NextChunk(reader, type, out length, name)) throw Truncated(name, reader, $"after its {Encoding.ASCII.GetString(type)} chunk");
        }
    }

    /// <summary>Reads a chunk header; false at the end of the data. A length above 2³¹ − 1 or a type that is not four letters is corruption.</summary>
    private static bool NextChunk(EncodedReader reader, Span<byte> type, out long length, string name)
    {
        Span<byte> head = stackalloc byte[8];
        length = 0;
        if (!reader.TryRead(head)) return false;
        length = BinaryPrimitives.ReadUInt32BigEndian(head);
        head[4..].CopyTo(type);
        foreach (byte b in type)
            if (!char.IsAsciiLetter((char)b))
                throw Corrupt(name, $"the chunk header at byte {reader.Position - 8} has type bytes {Convert.ToHexString(type)}, not four letters");
        if (length > int.MaxValue)
            throw Corrupt(name, $"the {Encoding.ASCII.GetString(type)} chunk at byte {reader.Position - 8} declares {length} bytes (at most 2³¹ − 1 are allowed)");
        return true;
    }

    /// <summary>Reads a chunk's data and CRC and compares the CRC.</summary>
    private static void CheckData(EncodedReader reader, ReadOnlySpan<byte> type, long length, string name)
    {
        uint crc = Crc32.Append(0, type);
        for (long left = length; left > 0;)
        {
            if (!reader.Fill()) throw Truncated(name, reader, $"inside a {Encoding.ASCII.GetString(type)} chunk of {length} bytes");
            var data = reader.Available;
            int n = (int)Math.Min(data.Length, left);
            crc = Crc32.Append(crc, data[..n]);
            reader.Advance(n);
            left -= n;
        }
        CheckCrc(reader, crc, type, name);
    }

    private static void CheckCrc(EncodedReader reader, uint computed, ReadOnlySpan<byte> type, string name)
    {
        Span<byte> stored = stackalloc byte[4];
        if (!reader.TryRead(stored)) throw Truncated(name, reader, $"in the CRC of a {Encoding.ASCII.GetString(type)} chunk");
        uint expected = BinaryPrimitives.ReadUInt32BigEndian(stored);
        if (expected != computed)
            throw Corrupt(name, $"the CRC of its {Encoding.ASCII.GetString(type)} chunk ending at byte {reader.Position} does not match its data (stored {expected:X8}, computed {computed:X8}): the bytes were changed after the file was written");
    }

    /// <summary>
    /// Inflates the run of IDAT chunks that starts with one of <paramref name="firstLength"/> bytes, checking every
    /// CRC, the zlib stream, the filter types and the inflated size; then reads the next chunk's header into
    /// <paramref name="type"/> (false when the data ends first). When the inflated data is at fault, the rest of the run
    /// is read first: a CRC mismatch or a cut there is the better reason, and is the one reported.
    /// </summary>
    private static bool Inflate(EncodedReader reader, long firstLength, RowLayout layout, Span<byte> type, out long nextLength, string name)
    {
        var idat = new IdatStream(reader, firstLength, name);
        long total = 0;
        var rows = layout.Start();
        InvalidDataException? fault = null;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(64 << 10);
        try
        {
            using (var zlib = new ZLibStream(idat, CompressionMode.Decompress, leaveOpen: true))
            {
                while (fault is null)
                {
                    int n;
                    try
                    {
                        n = zlib.Read(buffer, 0, buffer.Length);
                    }
                    catch (InvalidDataException e)
                    {
                        fault = idat.Failure ?? Corrupt(name, $"its image data (IDAT, from byte {idat.StartPosition}) is not a valid zlib stream: the inflater stopped on invalid compressed data or a wrong Adler-32 checksum", e);
                        break;
                    }
                    if (n == 0) break;
                    if (total + n > layout.Expected)
                        fault = Corrupt(name, $"its image data (IDAT) inflates to more than the {layout.Expected} bytes that {layout.Describe()} needs");
                    else fault = rows.Check(buffer.AsSpan(0, n), name);
                    total += n;
                }
            }
            if (fault is null && total < layout.Expected)
                fault = Corrupt(name, $"its image data (IDAT) is short: the zlib stream ends after {total} inflated bytes, where {layout.Describe()} needs {layout.Expected}; the image data was cut short or damaged");
            if (idat.Failure is null)
            {
                try { idat.Drain(buffer); }
                catch (InvalidDataException) { } // kept in idat.Failure
            }
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
        if (idat.Failure is not null) throw idat.Failure;
        if (fault is not null) throw fault;
        nextLength = idat.NextLength;
        idat.NextType.CopyTo(type);
        return !idat.AtEnd;
    }

    internal static InvalidDataException Corrupt(string name, string what, Exception? inner = null) =>
        new($"'{name}' is a corrupt PNG: {what}. Re-export or re-download the image.", inner);

    private static InvalidDataException Truncated(string name, EncodedReader reader, string where) =>
        new($"'{name}' is a truncated PNG: its data ends at byte {reader.Length} {where}, without the IEND chunk that ends every PNG; the file was cut short. Re-export or re-download the image.");

    /// <summary>The concatenated data of a run of IDAT chunks, CRCs checked as each chunk ends.</summary>
    private sealed class IdatStream(EncodedReader reader, long firstLength, string name) : Stream
    {
        private long _left = firstLength;
        private uint _crc = Crc32.Append(0, "IDAT"u8);
        private readonly byte[] _nextType = new byte[4];
        private bool _ended;

        /// <summary>Where the first IDAT's data starts.</summary>
        public long StartPosition { get; } = reader.Position;
        /// <summary>A fault found while reading (raised here, and again by the caller, since the inflater may wrap it).</summary>
        public InvalidDataException? Failure { get; private set; }
        /// <summary>The data ended before a chunk after the IDAT run.</summary>
        public bool AtEnd { get; private set; }
        /// <summary>The chunk after the run.</summary>
        public ReadOnlySpan<byte> NextType => _nextType;
        public long NextLength { get; private set; }

        public override int Read(Span<byte> destination)
        {
            while (!_ended)
            {
                if (_left > 0)
                {
                    if (!reader.Fill()) throw Fail(Truncated(name, reader, "inside its image data (IDAT)"));
                    var data = reader.Available;
                    int n = (int)Math.Min(Math.Min(data.Length, _left), destination.Length);
                    data[..n].CopyTo(destination);
                    _crc = Crc32.Append(_crc, data[..n]);
                    reader.Advance(n);
                    _left -= n;
                    return n;
                }
                try { CheckCrc(reader, _crc, "IDAT"u8, name); }
                catch (InvalidDataException e) { throw Fail(e); }
                bool more;
                long length;
                try { more = NextChunk(reader, _nextType, out length, name); }
                catch (InvalidDataException e) { throw Fail(e); }
                if (!more) { AtEnd = true; _ended = true; break; }
                if (_nextType.AsSpan().SequenceEqual("IDAT"u8))
                {
                    _left = length;
                    _crc = Crc32.Append(0, "IDAT"u8);
                    continue;
                }
                NextLength = length;
                _ended = true;
            }
            return 0;
        }

        /// <summary>Reads to the end of the run (compressed bytes after the zlib stream's end are allowed, as libpng allows them).</summary>
        public void Drain(byte[] scratch)
        {
            while (Read(scratch.AsSpan()) > 0) { }
        }

        private InvalidDataException Fail(InvalidDataException e) => Failure = e;

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>The rows of filtered image data that IHDR declares: one pass, or Adam7's seven (empty passes have no rows).</summary>
    private sealed class RowLayout
    {
        private readonly long[] _rowBytes = new long[7];  // 1 + bytes of a row, per pass
        private readonly long[] _rows = new long[7];
        private readonly long _width, _height;
        private readonly int _bitDepth;
        private readonly bool _interlaced;

        public int ColourType { get; }
        /// <summary>Inflated bytes the image data must have.</summary>
        public long Expected { get; }

        private RowLayout(long width, long height, int bitDepth, int colourType, bool interlaced)
        {
            (_width, _height, _bitDepth, ColourType, _interlaced) = (width, height, bitDepth, colourType, interlaced);
            int channels = colourType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, _ => 4 };
            long bitsPerPixel = channels * bitDepth;
            for (int p = 0; p < (interlaced ? 7 : 1); p++)
            {
                var (x0, y0, dx, dy) = interlaced ? (Adam7[4 * p], Adam7[4 * p + 1], Adam7[4 * p + 2], Adam7[4 * p + 3]) : (0, 0, 1, 1);
                long w = width > x0 ? (width - x0 + dx - 1) / dx : 0, h = height > y0 ? (height - y0 + dy - 1) / dy : 0;
                if (w == 0 || h == 0) continue;
                _rowBytes[p] = 1 + (w * bitsPerPixel + 7) / 8;
                _rows[p] = h;
                Expected += h * _rowBytes[p];
            }
        }

        /// <summary>Reads IHDR's fields and refuses combinations PNG does not define.</summary>
        public static RowLayout FromHeader(ReadOnlySpan<byte> ihdr, string name)
        {
            long width = BinaryPrimitives.ReadUInt32BigEndian(ihdr), height = BinaryPrimitives.ReadUInt32BigEndian(ihdr[4..]);
            int bitDepth = ihdr[8], colourType = ihdr[9];
            bool depthOk = colourType switch
            {
                0 => bitDepth is 1 or 2 or 4 or 8 or 16,
                3 => bitDepth is 1 or 2 or 4 or 8,
                2 or 4 or 6 => bitDepth is 8 or 16,
                _ => throw Corrupt(name, $"its IHDR declares colour type {colourType} (0, 2, 3, 4 and 6 are defined)"),
            };
            if (!depthOk) throw Corrupt(name, $"its IHDR declares bit depth {bitDepth} for colour type {colourType}, a combination PNG does not define");
            if (ihdr[10] != 0 || ihdr[11] != 0)
                throw Corrupt(name, $"its IHDR declares compression method {ihdr[10]} and filter method {ihdr[11]} (only 0 and 0 are defined)");
            if (ihdr[12] > 1) throw Corrupt(name, $"its IHDR declares interlace method {ihdr[12]} (0 and 1 are defined)");
            if (width is 0 or > int.MaxValue || height is 0 or > int.MaxValue)
                throw Corrupt(name, $"its IHDR declares {width}×{height} (each side must be from 1 to 2³¹ − 1)");
            return new RowLayout(width, height, bitDepth, colourType, ihdr[12] == 1);
        }

        /// <summary>For messages: "a 256×256 8-bit colour-type-2 image (not interlaced)".</summary>
        public string Describe() =>
            $"a {_width}×{_height} {_bitDepth}-bit colour-type-{ColourType} image ({(_interlaced ? "Adam7-interlaced" : "not interlaced")})";

        public RowCursor Start() => new(this);

        /// <summary>Follows the inflated bytes row by row to check each row's filter type byte.</summary>
        public struct RowCursor(RowLayout layout)
        {
            private int _pass = -1;
            private long _rowsLeft, _offset, _row;

            /// <summary>Follows <paramref name="data"/>; the fault found, or null.</summary>
            public InvalidDataException? Check(ReadOnlySpan<byte> data, string name)
            {
                int i = 0;
                while (i < data.Length)
                {
                    if (_rowsLeft == 0) // the next non-empty pass (the caller never passes more than Expected bytes)
                    {
                        do _pass++; while (layout._rows[_pass] == 0);
                        _rowsLeft = layout._rows[_pass];
                    }
                    if (_offset == 0 && data[i] > 4)
                        return Corrupt(name, $"row {_row} of its image data{(layout._interlaced ? $" (Adam7 pass {_pass + 1})" : "")} has filter type {data[i]} (0 to 4 are defined)");
                    long step = Math.Min(layout._rowBytes[_pass] - _offset, data.Length - i);
                    i += (int)step;
                    _offset += step;
                    if (_offset == layout._rowBytes[_pass])
                    {
                        _offset = 0;
                        _row++;
                        _rowsLeft--;
                    }
                }
                return null;
            }
        }
    }
}

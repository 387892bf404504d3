using System.Buffers.Binary;
using Microsoft.ML.Data;

namespace MLNet.Diffusion.Imaging;

/// <summary>The format and size an encoded image declares in its header.</summary>
/// <param name="Format">"png", "jpeg", "gif", "bmp" or "webp".</param>
/// <param name="Width">Declared width in pixels.</param>
/// <param name="Height">Declared height in pixels.</param>
public readonly record struct ImageHeader(string Format, long Width, long Height);

/// <summary>
/// Loads init images and masks from files, streams or bytes that may be anything: the header is read first, and an
/// image that is not PNG, JPEG, GIF, BMP or WebP, declares no pixels, or declares more than <see cref="MaxPixels"/>
/// is refused before it is decoded (so nothing proportional to its pixel count is allocated); one that fails to
/// decode is refused with the decoder's reason. Every refusal is an <see cref="InvalidDataException"/> that names
/// the source.
/// </summary>
public static class ImageLoader
{
    /// <summary>The most pixels an init image or mask may have: 64 Mi (8192 × 8192). The pipeline refuses larger
    /// <see cref="MLImage"/>s too, before converting them.</summary>
    public const long MaxPixels = 8192L * 8192;

    /// <summary>The largest encoded image read from a stream that cannot seek (256 MiB); seekable streams and files are not copied.</summary>
    public const long MaxEncodedBytes = 256L << 20;

    /// <summary>Reads an image file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">It is not a supported image, is empty, too large or corrupt; the message names it.</exception>
    public static MLImage Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Image file '{path}' does not exist.", path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return Load(stream, path);
    }

    /// <summary>Reads an encoded image from bytes.</summary>
    /// <exception cref="InvalidDataException">Not a supported image, empty, too large or corrupt.</exception>
    public static MLImage Load(byte[] encoded, string name = "image bytes")
    {
        ArgumentNullException.ThrowIfNull(encoded);
        using var stream = new MemoryStream(encoded, writable: false);
        return Load(stream, name);
    }

    /// <summary>Reads an encoded image from a stream (from its current position).</summary>
    /// <param name="stream">The stream; one that cannot seek is copied first, up to <see cref="MaxEncodedBytes"/>.</param>
    /// <param name="name">What to call the image in messages.</param>
    /// <exception cref="InvalidDataException">Not a supported image, empty, too large or corrupt.</exception>
    public static MLImage Load(Stream stream, string name = "image stream")
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanSeek)
        {
            var copy = new MemoryStream();
            var buffer = new byte[81920];
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                if (copy.Length + read > MaxEncodedBytes)
                    throw new InvalidDataException($"'{name}' is larger than {MaxEncodedBytes} bytes; it is refused rather than read.");
                copy.Write(buffer, 0, read);
            }
            copy.Position = 0;
            using (copy) return Load(copy, name);
        }
        long start = stream.Position;
        var header = ReadHeader(stream, name);
        CheckSize(header.Width, header.Height, name);
        stream.Position = start;
        CheckComplete(stream, start, header, name);
        stream.Position = start;
        MLImage image;
        try
        {
            image = MLImage.CreateFromStream(stream);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"'{name}' declares a {header.Width}×{header.Height} {header.Format.ToUpperInvariant()} image but cannot be decoded (truncated or corrupt): {e.Message}", e);
        }
        if ((long)image.Width * image.Height > MaxPixels)
        {
            image.Dispose();
            CheckSize(image.Width, image.Height, name);
        }
        return image;
    }

    /// <summary>Reads the format and declared size from the header, without decoding.</summary>
    /// <param name="stream">A readable, seekable stream positioned at the image's start (the position is moved).</param>
    /// <param name="name">What to call the image in messages.</param>
    /// <exception cref="InvalidDataException">Empty, not a supported format, or the header is cut short or corrupt.</exception>
    public static ImageHeader ReadHeader(Stream stream, string name = "image")
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanSeek) throw new ArgumentException("The stream must be seekable.", nameof(stream));
        long start = stream.Position;
        Span<byte> head = stackalloc byte[32];
        int n = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        head = head[..n];
        if (n == 0) throw new InvalidDataException($"'{name}' is empty (0 bytes); expected an image.");
        InvalidDataException Short(string format) => new($"'{name}' starts like a {format} image but its header is cut short or corrupt.");

        if (head.StartsWith((ReadOnlySpan<byte>)[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        {
            if (n < 24 || !head[12..16].SequenceEqual("IHDR"u8)) throw Short("PNG");
            return new("png", BinaryPrimitives.ReadUInt32BigEndian(head[16..]), BinaryPrimitives.ReadUInt32BigEndian(head[20..]));
        }
        if (head.StartsWith("GIF87a"u8) || head.StartsWith("GIF89a"u8))
        {
            if (n < 10) throw Short("GIF");
            return new("gif", BinaryPrimitives.ReadUInt16LittleEndian(head[6..]), BinaryPrimitives.ReadUInt16LittleEndian(head[8..]));
        }
        if (head.StartsWith("BM"u8))
        {
            if (n < 26) throw Short("BMP");
            uint dib = BinaryPrimitives.ReadUInt32LittleEndian(head[14..]);
            if (dib == 12) return new("bmp", BinaryPrimitives.ReadUInt16LittleEndian(head[18..]), BinaryPrimitives.ReadUInt16LittleEndian(head[20..]));
            if (dib < 40) throw Short("BMP");
            return new("bmp", Math.Abs((long)BinaryPrimitives.ReadInt32LittleEndian(head[18..])), Math.Abs((long)BinaryPrimitives.ReadInt32LittleEndian(head[22..])));
        }
        if (head.StartsWith("RIFF"u8) && n >= 16 && head[8..12].SequenceEqual("WEBP"u8))
        {
            if (n < 30) throw Short("WebP");
            var chunk = head[12..16];
            if (chunk.SequenceEqual("VP8 "u8))
                return new("webp", BinaryPrimitives.ReadUInt16LittleEndian(head[26..]) & 0x3FFF, BinaryPrimitives.ReadUInt16LittleEndian(head[28..]) & 0x3FFF);
            if (chunk.SequenceEqual("VP8L"u8))
            {
                uint bits = BinaryPrimitives.ReadUInt32LittleEndian(head[21..]);
                return new("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1);
            }
            if (chunk.SequenceEqual("VP8X"u8))
                return new("webp", (head[24] | head[25] << 8 | head[26] << 16) + 1L, (head[27] | head[28] << 8 | head[29] << 16) + 1L);
            throw Short("WebP");
        }
        if (n >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF)
            return JpegHeader(stream, start, name, Short("JPEG"));
        throw new InvalidDataException($"'{name}' is not a PNG, JPEG, GIF, BMP or WebP image (it starts with bytes {Convert.ToHexString(head[..Math.Min(n, 8)])}).");
    }

    /// <summary>
    /// Refuses a truncated PNG (its chunks, walked by seeking, end before IEND) or WebP (the file is shorter than its
    /// RIFF size): the decoder would otherwise return the missing part as black without complaint. JPEG and GIF are
    /// not checked this way (files often carry data after their end marker); the decoder refuses what it cannot read.
    /// </summary>
    private static void CheckComplete(Stream stream, long start, ImageHeader header, string name)
    {
        Span<byte> b = stackalloc byte[8];
        if (header.Format == "png")
        {
            stream.Position = start + 8;
            while (true)
            {
                if (stream.ReadAtLeast(b, 8, throwOnEndOfStream: false) < 8)
                    throw new InvalidDataException($"'{name}' is a truncated PNG: its data ends before the IEND chunk.");
                long length = BinaryPrimitives.ReadUInt32BigEndian(b);
                if (b[4..8].SequenceEqual("IEND"u8)) return;
                if (stream.Position + length + 4 > stream.Length)
                    throw new InvalidDataException($"'{name}' is a truncated PNG: a {System.Text.Encoding.ASCII.GetString(b[4..8])} chunk of {length} bytes runs past the end of the data.");
                stream.Position += length + 4; // data and CRC
            }
        }
        if (header.Format == "webp")
        {
            stream.Position = start + 4;
            if (stream.ReadAtLeast(b[..4], 4, throwOnEndOfStream: false) < 4) return;
            long riff = BinaryPrimitives.ReadUInt32LittleEndian(b);
            if (start + 8 + riff > stream.Length)
                throw new InvalidDataException($"'{name}' is a truncated WebP: its RIFF header says {riff + 8} bytes but there are {stream.Length - start}.");
        }
    }

    /// <summary>Walks JPEG segments (seeking over their payloads) to the first start-of-frame marker.</summary>
    private static ImageHeader JpegHeader(Stream stream, long start, string name, InvalidDataException cutShort)
    {
        Span<byte> b = stackalloc byte[7];
        stream.Position = start + 2;
        for (int segments = 0; segments < 10_000; segments++)
        {
            if (stream.ReadAtLeast(b[..2], 2, throwOnEndOfStream: false) < 2) throw cutShort;
            if (b[0] != 0xFF) throw cutShort;
            byte marker = b[1];
            if (marker == 0xFF) { stream.Position -= 1; continue; } // fill bytes
            if (marker is 0x01 or (>= 0xD0 and <= 0xD7)) continue; // no payload
            if (marker is 0xD9 or 0xDA) break; // end of image, or the scan began before any frame header
            if (stream.ReadAtLeast(b[..2], 2, throwOnEndOfStream: false) < 2) throw cutShort;
            int length = BinaryPrimitives.ReadUInt16BigEndian(b);
            if (length < 2) throw cutShort;
            bool frame = marker is >= 0xC0 and <= 0xCF and not 0xC4 and not 0xC8 and not 0xCC;
            if (frame)
            {
                if (stream.ReadAtLeast(b[..5], 5, throwOnEndOfStream: false) < 5) throw cutShort;
                return new("jpeg", BinaryPrimitives.ReadUInt16BigEndian(b[3..]), BinaryPrimitives.ReadUInt16BigEndian(b[1..]));
            }
            if (stream.Position + length - 2 > stream.Length) throw cutShort;
            stream.Position += length - 2;
        }
        throw new InvalidDataException($"'{name}' is a JPEG without a frame header; it cannot be decoded.");
    }

    /// <summary>Refuses sizes with no pixels or above <see cref="MaxPixels"/>.</summary>
    internal static void CheckSize(long width, long height, string name)
    {
        if (width < 1 || height < 1)
            throw new InvalidDataException($"'{name}' declares a {width}×{height} image, which has no pixels.");
        if (width > MaxPixels / height)
            throw new InvalidDataException($"'{name}' declares a {width}×{height} image ({width * height} pixels); at most {MaxPixels} ({Math.Sqrt(MaxPixels)}×{Math.Sqrt(MaxPixels)}) are accepted. Downscale it first.");
    }
}

using System.Buffers.Binary;
using Microsoft.ML.Data;
using MLNet.Diffusion.Imaging;

namespace MLNet.Diffusion;

/// <summary>The format and size an encoded image declares in its header.</summary>
/// <param name="Format">"png", "jpeg", "gif", "bmp" or "webp".</param>
/// <param name="Width">Declared width in pixels.</param>
/// <param name="Height">Declared height in pixels.</param>
internal readonly record struct ImageHeader(string Format, long Width, long Height);

/// <summary>
/// Loads init images and masks from files, streams or bytes that may be anything, and is the one place where they are
/// decoded. In order: the header is read, and an image that is not PNG, JPEG, GIF, BMP or WebP, declares no pixels,
/// or declares more pixels than the limit (<see cref="DefaultMaxPixels"/>, or <see cref="MaxPixelsFor"/> the
/// generation size) is refused before anything proportional to its size is allocated; then its structure is verified
/// in one forward pass, so that a truncated or corrupt file is refused with the reason instead of decoding to a
/// partial picture (the decoder behind <see cref="MLImage"/> returns the missing part blank); then it is decoded, and
/// a decoder error is refused with the decoder's reason. Every refusal is an <see cref="InvalidDataException"/> that
/// names the source and says how to fix it.
/// <para>What the structure check covers, per format (the decoder checks the rest):</para>
/// <list type="bullet">
/// <item><b>PNG</b>, fully: every chunk's CRC-32, IHDR's fields, the IDAT zlib stream (with its Adler-32), the exact
/// inflated size for the declared size, colour type, bit depth and interlacing, each row's filter type, and IEND.</item>
/// <item><b>JPEG</b>: the marker segments, the entropy-coded data to the end-of-image marker (FF D9) and the order of
/// restart markers. JPEG has no checksum, so a changed byte inside the scan data that keeps this structure passes.</item>
/// <item><b>GIF</b>: the block structure to the trailer (3B). <b>BMP</b>: the pixel data's length (uncompressed) or
/// the RLE commands to end-of-bitmap; other BMP compressions are refused. <b>WebP</b>: the RIFF size and chunk tiling.
/// None of the three has a checksum: truncation is detected, changed pixel bytes are not.</item>
/// </list>
/// </summary>
public static class ImageLoader
{
    /// <summary>The most pixels an init image or mask may have at all: 64 Mi (8192 × 8192). The pipeline refuses larger
    /// <see cref="MLImage"/>s too, before converting them; <see cref="MaxPixelsFor"/> never exceeds it.</summary>
    public const long MaxPixels = 8192L * 8192;

    /// <summary>
    /// The most pixels decoded when the generation size is not known, and the least <see cref="MaxPixelsFor"/> allows
    /// for any generation: 16 Mi (4096 × 4096). A 12-megapixel photo or a 4K frame loads as it is, and an image at this
    /// limit decodes in about 0.1 GB and under a second, a quarter of the cost of <see cref="MaxPixels"/>, which a 200 KB
    /// PNG or a 3 KB JPEG can declare (and which costs over 1 GB once converted for the pipeline).
    /// </summary>
    public const long DefaultMaxPixels = 4096L * 4096;

    /// <summary>
    /// Decoded pixels allowed per generated pixel: 16 (4× each side). An init image is stretched to the generation
    /// size, so detail beyond this is averaged away; the limit grows with the generation above
    /// <see cref="DefaultMaxPixels"/> (a 2048 × 2048 generation takes up to 8192 × 8192).
    /// </summary>
    public const int MaxPixelsPerGeneratedPixel = 16;

    /// <summary>The largest encoded image read from a stream that cannot seek (256 MiB); seekable streams and files are not copied.</summary>
    public const long MaxEncodedBytes = 256L << 20;

    /// <summary>
    /// The decoding limit for an init image or mask of a <paramref name="width"/>×<paramref name="height"/>
    /// generation: <see cref="MaxPixelsPerGeneratedPixel"/> × its pixels, at least <see cref="DefaultMaxPixels"/> and at
    /// most <see cref="MaxPixels"/>. Pass it to <c>Load</c>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public static long MaxPixelsFor(int width, int height)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        return Math.Clamp(MaxPixelsPerGeneratedPixel * (long)width * height, DefaultMaxPixels, MaxPixels);
    }

    /// <summary>Reads an image file.</summary>
    /// <param name="path">The file.</param>
    /// <param name="maxPixels">The most pixels it may declare: <see cref="MaxPixelsFor"/> the generation size, or <see cref="DefaultMaxPixels"/>.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">It is not a supported image, is empty, too large, truncated or corrupt; the message names it.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxPixels"/> is not from 1 to <see cref="MaxPixels"/>.</exception>
    public static MLImage Load(string path, long maxPixels = DefaultMaxPixels)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        CheckLimit(maxPixels);
        if (!File.Exists(path)) throw new FileNotFoundException($"Image file '{path}' does not exist.", path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return Load(stream, path, maxPixels);
    }

    /// <summary>Reads an encoded image from bytes.</summary>
    /// <param name="encoded">The encoded image.</param>
    /// <param name="name">What to call the image in messages.</param>
    /// <param name="maxPixels">The most pixels it may declare: <see cref="MaxPixelsFor"/> the generation size, or <see cref="DefaultMaxPixels"/>.</param>
    /// <exception cref="InvalidDataException">Not a supported image, empty, too large, truncated or corrupt.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxPixels"/> is not from 1 to <see cref="MaxPixels"/>.</exception>
    public static MLImage Load(byte[] encoded, string name = "image bytes", long maxPixels = DefaultMaxPixels)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        using var stream = new MemoryStream(encoded, writable: false);
        return Load(stream, name, maxPixels);
    }

    /// <summary>Reads an encoded image from a stream (from its current position).</summary>
    /// <param name="stream">The stream; one that cannot seek is copied first, up to <see cref="MaxEncodedBytes"/>.</param>
    /// <param name="name">What to call the image in messages.</param>
    /// <param name="maxPixels">The most pixels it may declare: <see cref="MaxPixelsFor"/> the generation size, or <see cref="DefaultMaxPixels"/>.</param>
    /// <exception cref="InvalidDataException">Not a supported image, empty, too large, truncated or corrupt.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxPixels"/> is not from 1 to <see cref="MaxPixels"/>.</exception>
    public static MLImage Load(Stream stream, string name = "image stream", long maxPixels = DefaultMaxPixels)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CheckLimit(maxPixels);
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
            using (copy) return Load(copy, name, maxPixels);
        }
        long start = stream.Position;
        var header = ReadHeader(stream, name);
        CheckSize(header.Width, header.Height, maxPixels, name);
        VerifyStructure(stream, start, header, name);
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
        if ((long)image.Width * image.Height > maxPixels)
        {
            image.Dispose();
            CheckSize(image.Width, image.Height, maxPixels, name);
        }
        return image;
    }

    /// <summary>Reads the format and declared size from the header, without decoding.</summary>
    /// <param name="stream">A readable, seekable stream positioned at the image's start (the position is moved).</param>
    /// <param name="name">What to call the image in messages.</param>
    /// <exception cref="InvalidDataException">Empty, not a supported format, or the header is cut short or corrupt.</exception>
    internal static ImageHeader ReadHeader(Stream stream, string name = "image")
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

    /// <summary>The format's structure check (see the class summary); the stream's position is moved.</summary>
    private static void VerifyStructure(Stream stream, long start, ImageHeader header, string name)
    {
        switch (header.Format)
        {
            case "png": PngStructure.Verify(stream, start, name); break;
            case "jpeg": JpegStructure.Verify(stream, start, name); break;
            case "gif": GifStructure.Verify(stream, start, name); break;
            case "bmp": BmpStructure.Verify(stream, start, header.Width, header.Height, name); break;
            case "webp": WebPStructure.Verify(stream, start, name); break;
            default: throw new InvalidOperationException($"No structure check for format '{header.Format}'.");
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

    /// <summary>Refuses sizes with no pixels or above <paramref name="maxPixels"/>.</summary>
    internal static void CheckSize(long width, long height, long maxPixels, string name)
    {
        if (width < 1 || height < 1)
            throw new InvalidDataException($"'{name}' declares a {width}×{height} image, which has no pixels.");
        if (width > maxPixels / height)
        {
            string limit = Square(maxPixels) is { } side ? $"{maxPixels} pixels ({side}×{side})" : $"{maxPixels} pixels";
            throw new InvalidDataException($"'{name}' declares an image of {width}×{height} ({width * height} pixels); at most {limit} are decoded, since an init image or mask is stretched to the generation size anyway. Resize it first, e.g. to the generation size.");
        }
    }

    /// <summary>The side of a square number of pixels, or null.</summary>
    private static long? Square(long pixels)
    {
        long side = (long)Math.Round(Math.Sqrt(pixels));
        return side * side == pixels ? side : null;
    }

    private static void CheckLimit(long maxPixels)
    {
        if (maxPixels < 1 || maxPixels > MaxPixels)
            throw new ArgumentOutOfRangeException(nameof(maxPixels), maxPixels, $"The pixel limit must be from 1 to {MaxPixels}; use ImageLoader.MaxPixelsFor(width, height) or ImageLoader.DefaultMaxPixels.");
    }
}

using System.Buffers;

namespace MLNet.Diffusion.Imaging;

/// <summary>
/// Forward reading of an encoded image for the structure checks, through one pooled 64 KiB buffer: a walk over a file
/// of any size allocates nothing in proportion to it. Positions are counted from the image's first byte.
/// </summary>
internal sealed class EncodedReader : IDisposable
{
    private const int BufferSize = 64 << 10;
    private readonly Stream _stream;
    private readonly long _origin;
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
    private long _bufferStart;
    private int _pos, _end;

    /// <summary>Starts reading <paramref name="stream"/> (seekable) at <paramref name="origin"/>.</summary>
    public EncodedReader(Stream stream, long origin)
    {
        _stream = stream;
        _origin = origin;
        stream.Position = origin;
    }

    /// <summary>Bytes from the image's start to the next byte to read.</summary>
    public long Position => _bufferStart + _pos;

    /// <summary>Bytes from the image's start to the end of the stream.</summary>
    public long Length => _stream.Length - _origin;

    /// <summary>The bytes read ahead and not yet consumed (empty at the end: call <see cref="Fill"/> first).</summary>
    public ReadOnlySpan<byte> Available => _buffer.AsSpan(_pos, _end - _pos);

    /// <summary>Makes <see cref="Available"/> non-empty if the stream has more; false at its end.</summary>
    public bool Fill()
    {
        if (_pos < _end) return true;
        _bufferStart += _end;
        _pos = _end = 0;
        _end = _stream.Read(_buffer, 0, _buffer.Length);
        return _end > 0;
    }

    /// <summary>Consumes <paramref name="count"/> bytes of <see cref="Available"/>.</summary>
    public void Advance(int count) => _pos += count;

    /// <summary>The next byte, or −1 at the end.</summary>
    public int ReadByte() => Fill() ? _buffer[_pos++] : -1;

    /// <summary>Fills <paramref name="destination"/>; false (and the end reached) when the stream is shorter.</summary>
    public bool TryRead(Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            int n = Read(destination);
            if (n == 0) return false;
            destination = destination[n..];
        }
        return true;
    }

    /// <summary>Copies up to <paramref name="destination"/>'s length; 0 only at the end.</summary>
    public int Read(Span<byte> destination)
    {
        if (destination.IsEmpty || !Fill()) return 0;
        int n = Math.Min(destination.Length, _end - _pos);
        _buffer.AsSpan(_pos, n).CopyTo(destination);
        _pos += n;
        return n;
    }

    /// <summary>Skips <paramref name="count"/> bytes (seeking past what is not buffered); false, at the end, when fewer remain.</summary>
    public bool TrySkip(long count)
    {
        int buffered = _end - _pos;
        if (count <= buffered)
        {
            _pos += (int)count;
            return true;
        }
        long target = Position + count;
        bool fits = target <= Length;
        _bufferStart = fits ? target : Length;
        _pos = _end = 0;
        _stream.Position = _origin + _bufferStart;
        return fits;
    }

    /// <summary>Returns the buffer to the pool.</summary>
    public void Dispose()
    {
        if (_buffer.Length == 0) return;
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }
}

namespace MLNet.Diffusion.Tokenization;

/// <summary>
/// A strict forward reader of the protocol-buffer wire format (varints, 32/64-bit fixed fields and length-delimited
/// fields), enough to read a SentencePiece model without a protobuf package. Every length is checked against the
/// bytes left, so a truncated or hostile file fails with <see cref="InvalidDataException"/> instead of reading past
/// its end.
/// </summary>
internal ref struct ProtobufReader
{
    private readonly ReadOnlySpan<byte> _data;
    private readonly string _source;
    private int _position;

    public ProtobufReader(ReadOnlySpan<byte> data, string source)
    {
        _data = data;
        _source = source;
        _position = 0;
    }

    /// <summary>Whether every byte has been read.</summary>
    public readonly bool AtEnd => _position >= _data.Length;

    /// <summary>Reads the next field's number and wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).</summary>
    public (int Field, int WireType) ReadTag()
    {
        ulong tag = ReadVarint();
        int field = (int)(tag >> 3), wire = (int)(tag & 7);
        if (field < 1 || tag >> 3 > int.MaxValue) throw Malformed($"field number {tag >> 3}");
        return (field, wire);
    }

    /// <summary>Reads a base-128 varint (at most ten bytes).</summary>
    public ulong ReadVarint()
    {
        ulong value = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            if (_position >= _data.Length) throw Malformed("a varint that runs past the end");
            byte b = _data[_position++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return value;
        }
        throw Malformed("a varint longer than ten bytes");
    }

    /// <summary>Reads an <c>int32</c> field's varint (negative values are sign-extended to ten bytes on the wire).</summary>
    public int ReadInt32() => unchecked((int)ReadVarint());

    /// <summary>Reads a little-endian 32-bit float (<c>float</c> fields, wire type 5).</summary>
    public float ReadFloat() => BitConverter.Int32BitsToSingle(System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(Take(4)));

    /// <summary>Reads a length-delimited field's bytes (strings, bytes and nested messages).</summary>
    public ReadOnlySpan<byte> ReadBytes()
    {
        ulong length = ReadVarint();
        if (length > (ulong)(_data.Length - _position)) throw Malformed($"a field of {length} bytes with {_data.Length - _position} left");
        return Take((int)length);
    }

    /// <summary>Skips a field of the given wire type.</summary>
    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0: ReadVarint(); break;
            case 1: Take(8); break;
            case 2: ReadBytes(); break;
            case 5: Take(4); break;
            default: throw Malformed($"wire type {wireType}");
        }
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count > _data.Length - _position) throw Malformed($"{count} bytes wanted with {_data.Length - _position} left");
        var span = _data.Slice(_position, count);
        _position += count;
        return span;
    }

    private readonly InvalidDataException Malformed(string what) =>
        new($"'{_source}' is not a valid protocol-buffer file: {what} at byte {_position}. Is it a SentencePiece .model file?");
}

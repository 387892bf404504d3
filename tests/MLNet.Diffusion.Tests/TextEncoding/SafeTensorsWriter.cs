using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace MLNet.Diffusion.Tests.TextEncoding;

/// <summary>
/// Writes safetensors files for the reader's tests, as the format's reference writer lays them out: the header JSON
/// padded with spaces to a multiple of 8 bytes, the tensors' bytes back to back in the order given.
/// </summary>
public sealed class SafeTensorsWriter
{
    private readonly List<(string Name, string DType, long[] Shape, byte[] Bytes)> _tensors = [];
    private readonly Dictionary<string, string> _metadata = [];

    public SafeTensorsWriter F32(string name, long[] shape, params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), values[i]);
        return Raw(name, "F32", shape, bytes);
    }

    public SafeTensorsWriter F16(string name, long[] shape, params float[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * i), (Half)values[i]);
        return Raw(name, "F16", shape, bytes);
    }

    /// <summary>BF16 by truncating each float32 to its upper 16 bits (exact for the values the tests use).</summary>
    public SafeTensorsWriter BF16(string name, long[] shape, params float[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), (ushort)(BitConverter.SingleToUInt32Bits(values[i]) >> 16));
        return Raw(name, "BF16", shape, bytes);
    }

    public SafeTensorsWriter Raw(string name, string dtype, long[] shape, byte[] bytes)
    {
        _tensors.Add((name, dtype, shape, bytes));
        return this;
    }

    public SafeTensorsWriter Meta(string key, string value)
    {
        _metadata[key] = value;
        return this;
    }

    public string Save(string path)
    {
        var header = new Dictionary<string, object>();
        if (_metadata.Count > 0) header["__metadata__"] = _metadata;
        long offset = 0;
        foreach (var (name, dtype, shape, bytes) in _tensors)
        {
            header[name] = new { dtype, shape, data_offsets = new[] { offset, offset + bytes.Length } };
            offset += bytes.Length;
        }
        string json = JsonSerializer.Serialize(header);
        json += new string(' ', (8 - Encoding.UTF8.GetByteCount(json) % 8) % 8);
        return WriteFile(path, Encoding.UTF8.GetBytes(json), _tensors.SelectMany(t => t.Bytes).ToArray());
    }

    /// <summary>A file of the given header bytes and data, with the header's true length.</summary>
    public static string WriteFile(string path, byte[] header, byte[] data) =>
        WriteFile(path, (ulong)header.Length, header, data);

    /// <summary>A file whose length field says <paramref name="declaredLength"/>, whatever follows.</summary>
    public static string WriteFile(string path, ulong declaredLength, byte[] header, byte[] data)
    {
        using var stream = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, declaredLength);
        stream.Write(length);
        stream.Write(header);
        stream.Write(data);
        return path;
    }

    /// <summary>A file with <paramref name="json"/> as its header and <paramref name="dataLength"/> zero bytes of data.</summary>
    public static string WriteHeader(string path, string json, int dataLength) =>
        WriteFile(path, Encoding.UTF8.GetBytes(json), new byte[dataLength]);
}

/// <summary>A temporary folder removed with its files.</summary>
internal sealed class TempFolder : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("mlnd-st-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

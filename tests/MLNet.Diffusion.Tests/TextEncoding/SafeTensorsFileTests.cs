using System.Text;
using MLNet.Diffusion.TextEncoding;

namespace MLNet.Diffusion.Tests.TextEncoding;

/// <summary>
/// The strict safetensors reader (issue 16, textual inversion): files written here in the format's layout read back
/// exactly, and every malformed file is refused with an <see cref="InvalidDataException"/> naming the file and the reason.
/// </summary>
public sealed class SafeTensorsFileTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void F32TensorsAndMetadataReadBackExactly()
    {
        float[] a = [0.1f, -2.5f, 3.14159f, float.Epsilon, -0f, 1e30f];
        float[] b = [7f, 8f];
        string path = new SafeTensorsWriter().Meta("format", "pt").Meta("name", "cat-toy")
            .F32("a", [2, 3], a).F32("b", [2], b).Save(_folder.File("f32.safetensors"));

        var file = SafeTensorsFile.Open(path);

        Assert.Equal(["a", "b"], file.Tensors.Select(t => t.Name));
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt", ["name"] = "cat-toy" }, file.Metadata);
        var info = file.Find("a")!;
        Assert.Equal(SafeTensorsDType.F32, info.DType);
        Assert.Equal([2L, 3L], info.Shape);
        Assert.Equal(6, info.ElementCount);
        Assert.Equal((0L, 24L), (info.Begin, info.End));
        Assert.Equal(a, file.ReadFloat32(info));
        Assert.Equal(b, file.ReadFloat32(file.Find("b")!));
        Assert.Equal(0, file.DataStart % 8); // the writer pads the header to 8 bytes, as the reference does
    }

    [Fact]
    public void F16AndBF16TensorsConvertExactly()
    {
        float[] values = [0.5f, -1.25f, 65504f, 6.1035156e-5f, 5.9604645e-8f, -0f, 1024.5f, 3f];
        string path = new SafeTensorsWriter().F16("h", [2, 4], values).BF16("bf", [8], values)
            .Save(_folder.File("half.safetensors"));

        var file = SafeTensorsFile.Open(path);

        Assert.Equal(values.Select(v => (float)(Half)v), file.ReadFloat32(file.Find("h")!));
        Assert.Equal(values.Select(v => BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(v) & 0xFFFF0000)),
            file.ReadFloat32(file.Find("bf")!));
        Assert.Equal(65504f, file.ReadFloat32(file.Find("h")!)[2]); // F16's largest value, exact
    }

    [Fact]
    public void AnEmptyObjectWithNoDataIsAValidFile()
    {
        var file = SafeTensorsFile.Open(SafeTensorsWriter.WriteHeader(_folder.File("empty.safetensors"), "{}      ", 0));
        Assert.Empty(file.Tensors);
        Assert.Empty(file.Metadata);
    }

    public static TheoryData<string, string, int, string> MalformedHeaders => new()
    {
        { "not-json", "{\"a\": ", 0, "not valid JSON" },
        { "array", "[1, 2]", 0, "a JSON array, not an object" },
        { "entry-not-object", "{\"a\": 3}", 0, "the entry of tensor 'a' is a JSON number" },
        { "no-dtype", "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "the entry of tensor 'a' has no \"dtype\"" },
        { "no-shape", "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, "has no \"shape\"" },
        { "no-offsets", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "has no \"data_offsets\"" },
        { "dtype-number", "{\"a\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "\"dtype\" as a JSON number; it must be a string" },
        { "shape-string", "{\"a\": {\"dtype\": \"F32\", \"shape\": \"1\", \"data_offsets\": [0, 4]}}", 4, "\"shape\" as a JSON string; it must be an array" },
        { "unknown-dtype", "{\"a\": {\"dtype\": \"F17\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "unknown dtype \"F17\"" },
        { "fractional-dim", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4, "shape entry 0 = 1.5; dimensions must be integers" },
        { "negative-dim", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}", 4, "negative dimension -1 at axis 1" },
        { "count-overflow", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 4]}}", 4, "element count overflows" },
        { "bytes-overflow", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 4]}}", 4, "byte length overflows" },
        { "three-offsets", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8, "3 data_offsets; it needs two" },
        { "negative-offset", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4, "data_offsets begin -4" },
        { "begin-after-end", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8, "begin is after end" },
        { "outside-buffer", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 8, "outside the data buffer of 8 bytes" },
        { "wrong-byte-length", "{\"a\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16, "spans 16 bytes but its shape [4] of F16 needs 8" },
        { "overlap", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12, "tensors 'a' [0, 8] and 'b' [4, 12] overlap" },
        { "hole", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, "bytes [0, 4) of the data buffer belong to no tensor" },
        { "trailing", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 12, "the tensors end at byte 4 of the data buffer but it has 12 bytes" },
        { "duplicate", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "names 'a' twice" },
        { "metadata-number", "{\"__metadata__\": {\"epochs\": 3}}", 0, "'__metadata__' entry 'epochs' is a JSON number; metadata values must be strings" },
        { "metadata-array", "{\"__metadata__\": []}", 0, "'__metadata__' is a JSON array" },
    };

    [Theory]
    [MemberData(nameof(MalformedHeaders))]
    public void AMalformedHeaderIsRefusedWithItsReason(string name, string json, int dataLength, string reason)
    {
        string path = SafeTensorsWriter.WriteHeader(_folder.File(name + ".safetensors"), json, dataLength);
        AssertRefused(path, reason);
    }

    [Fact]
    public void AFileShorterThanTheLengthFieldIsRefused()
    {
        string path = _folder.File("short.safetensors");
        File.WriteAllBytes(path, [1, 0, 0]);
        AssertRefused(path, "the file has 3 bytes, fewer than the 8-byte header length");
    }

    [Fact]
    public void AZeroHeaderLengthIsRefused() =>
        AssertRefused(SafeTensorsWriter.WriteFile(_folder.File("zero.safetensors"), 0, [], "{}"u8.ToArray()), "the header length is 0");

    [Fact]
    public void AHeaderLongerThanTheFileIsRefused() =>
        AssertRefused(SafeTensorsWriter.WriteFile(_folder.File("long.safetensors"), 64, "{}"u8.ToArray(), []),
            "the header length is 64 bytes but only 2 bytes follow it");

    [Fact]
    public void A100MegabyteHeaderIsRefusedBeforeItIsRead()
    {
        // The file is small: were the declared length trusted, the reader would try to allocate and read 100 MB.
        string path = SafeTensorsWriter.WriteFile(_folder.File("huge.safetensors"), 100_000_000, "{}"u8.ToArray(), []);
        AssertRefused(path, "the header length is 100000000 bytes, over the 16 MiB this reader accepts");
    }

    [Fact]
    public void AHeaderOfInvalidUtf8IsRefused() =>
        AssertRefused(SafeTensorsWriter.WriteFile(_folder.File("latin1.safetensors"), [(byte)'{', (byte)'"', 0xE9, (byte)'"', (byte)':', (byte)'1', (byte)'}'], []),
            "the header is not valid UTF-8");

    [Fact]
    public void DataTruncatedAfterTheHeaderIsRefused()
    {
        string whole = new SafeTensorsWriter().F32("a", [4], 1, 2, 3, 4).Save(_folder.File("whole.safetensors"));
        byte[] bytes = File.ReadAllBytes(whole);
        string cut = _folder.File("cut.safetensors");
        File.WriteAllBytes(cut, bytes[..^6]);
        AssertRefused(cut, "tensor 'a' has data_offsets [0, 16], outside the data buffer of 10 bytes");
    }

    [Fact]
    public void ATensorOfAnotherDtypeIsNotReadAsFloat32()
    {
        string path = new SafeTensorsWriter().Raw("ids", "I64", [2], new byte[16]).Save(_folder.File("ids.safetensors"));
        var file = SafeTensorsFile.Open(path);
        var error = Assert.Throws<InvalidDataException>(() => file.ReadFloat32(file.Find("ids")!));
        Assert.Contains(path, error.Message);
        Assert.Contains("'ids' holds I64 values; only F32, F16 and BF16 are read as float32", error.Message);
    }

    [Fact]
    public void AFileThatChangedSinceItWasOpenedIsNotRead()
    {
        string path = new SafeTensorsWriter().F32("a", [2], 1, 2).Save(_folder.File("changed.safetensors"));
        var file = SafeTensorsFile.Open(path);
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..^4]);
        var error = Assert.Throws<InvalidDataException>(() => file.ReadFloat32(file.Find("a")!));
        Assert.Contains("length changed", error.Message);
    }

    private static void AssertRefused(string path, string reason)
    {
        var error = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(path));
        Assert.Contains($"'{path}' is not a valid safetensors file", error.Message);
        Assert.Contains(reason, error.Message);
    }
}

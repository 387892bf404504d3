using System.Buffers.Binary;

namespace MLNet.Diffusion.Transforms;

/// <summary>
/// The entry that <see cref="DiffusionModelSaver"/> adds to its zips so that <c>MLContext.Model.Load</c>, given one,
/// fails naming <see cref="DiffusionModelSaver.Load(Microsoft.ML.MLContext, string, out Microsoft.ML.DataViewSchema?, string?, Action{DiffusionOptions}?)"/>
/// instead of saying only "Could not load legacy format model".
/// </summary>
/// <remarks>
/// <para>What ML.NET does (Microsoft.ML 6.0.0's <c>ModelOperationsCatalog.Load</c>, <c>ModelLoadContext</c> and
/// <c>ModelHeader</c>): with no <c>Schema</c> entry it first loads the root <c>Model.key</c>, if there is one, and no
/// handler around that step rewrites its exceptions. Loading reads the entry's <c>ModelHeader</c> and, before looking up
/// the loader class, calls <c>Assembly.Load</c> on the loader assembly name that the header carries. The entry written
/// here is a valid header with an empty model whose loader assembly name is <see cref="Message"/>; no assembly has that
/// name, so the load fails with .NET's <see cref="FileNotFoundException"/>, "Could not load file or assembly
/// '<see cref="Message"/>, Culture=neutral, PublicKeyToken=null'", which names the call to use. (ML.NET's loader registry
/// is internal, so a third-party transformer cannot be loaded through it at all: dotnet/machinelearning#4911.)</para>
/// <para>The header's layout, from ML.NET's <c>ModelHeader</c>: 256 bytes of little-endian fields (signature, format
/// versions, the model block's position and size, the string table's, the model's own signature and versions, two
/// 24-character loader signatures, the tail's position, the end, and the loader assembly name's position and size),
/// then the model block (empty here), the assembly name in UTF-16, and an 8-byte tail signature.</para>
/// </remarks>
internal static class ModelLoadRedirect
{
    /// <summary>The entry ML.NET reads first: the root model stream.</summary>
    public const string EntryName = "Model.key";

    /// <summary>
    /// What the failure of <c>MLContext.Model.Load</c> shows. An assembly name: no comma, equals sign or quote, which would
    /// make it a malformed name and the message .NET's "The given assembly name was invalid".
    /// </summary>
    public const string Message =
        "MLNet.Diffusion.DiffusionModelSaver.Load - this model file was written by DiffusionModelSaver.Save and MLContext.Model.Load cannot read it";

    private const int HeaderSize = 0x100;
    private const ulong Signature = 0x4C45444F4D004C4DUL;     // "ML\0MODEL"
    private const ulong TailSignature = 0x4D4C004D4F44454CUL; // "LEDOM\0LM"
    private const uint FormatVersion = 0x00010002;            // the first version that carries a loader assembly name
    private const string LoaderSignature = "DiffusionModelSaver.Load"; // 24 characters, the most a header holds

    /// <summary>The entry's bytes.</summary>
    public static byte[] Create()
    {
        int nameBytes = Message.Length * sizeof(char);
        long tail = HeaderSize + nameBytes;
        var bytes = new byte[tail + sizeof(ulong)];
        var h = bytes.AsSpan();
        BinaryPrimitives.WriteUInt64LittleEndian(h[0x00..], Signature);
        BinaryPrimitives.WriteUInt32LittleEndian(h[0x08..], FormatVersion); // written
        BinaryPrimitives.WriteUInt32LittleEndian(h[0x0C..], FormatVersion); // readable
        BinaryPrimitives.WriteInt64LittleEndian(h[0x10..], HeaderSize);     // model block: right after the header, 0 bytes
        // 0x20–0x3F: no string table. 0x40–0x4F: the model's own signature and versions, never read (the load fails first).
        for (int i = 0; i < LoaderSignature.Length; i++) h[0x50 + i] = (byte)LoaderSignature[i];
        BinaryPrimitives.WriteInt64LittleEndian(h[0x80..], tail);                    // tail
        BinaryPrimitives.WriteInt64LittleEndian(h[0x88..], tail + sizeof(ulong));    // end
        BinaryPrimitives.WriteInt64LittleEndian(h[0x90..], HeaderSize);              // loader assembly name: after the (empty) model
        BinaryPrimitives.WriteUInt32LittleEndian(h[0x98..], (uint)nameBytes);
        for (int i = 0; i < Message.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(h[(HeaderSize + 2 * i)..], Message[i]);
        BinaryPrimitives.WriteUInt64LittleEndian(h[(int)tail..], TailSignature);
        return bytes;
    }
}

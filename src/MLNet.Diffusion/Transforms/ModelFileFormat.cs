using System.Buffers.Binary;
using System.IO.Compression;
using System.Reflection;
using System.Text;
using Microsoft.ML;

namespace MLNet.Diffusion.Transforms;

/// <summary>What <see cref="DiffusionModelSaver"/> writes for one diffusion transformer: its stage, settings and column names.</summary>
internal sealed class SavedTransformer
{
    public string Stage { get; set; } = "";

    public DiffusionOptions Options { get; set; } = new();

    public Dictionary<string, string?> Columns { get; set; } = [];
}

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

/// <summary>
/// Removes the file that <c>MLContext.Model.Save</c> had started when a diffusion transformer refuses to be saved, so that
/// the refusal leaves no broken zip behind.
/// </summary>
/// <remarks>
/// <para><c>ModelOperationsCatalog.Save(model, schema, path)</c> creates the file (<c>File.Create</c>), starts a zip in it
/// (the entry <c>TrainingInfo/Version.txt</c> first) and only then asks each transformer to save itself; on our refusal its
/// <c>using</c> blocks close the zip and the file, which stays. ML.NET keeps the stream internal, so it is found by
/// reflection, along the path that Microsoft.ML 6.0.0's source has: <c>ModelSaveContext.Repository</c> (a
/// <c>RepositoryWriter</c>), its <c>_archive</c> (a <see cref="ZipArchive"/>), and the archive's <c>_archiveStream</c>.</para>
/// <para>The file is removed only when that stream is a readable, seekable <see cref="FileStream"/> whose content starts,
/// at offset 0, with ML.NET's first entry: then the file holds nothing but this failed save (also when a caller passed
/// such a stream to the <see cref="Stream"/> overload). The stream is closed first, since Windows cannot delete a file
/// that is open; ML.NET's own clean-up then fails to finish the zip, and swallows that failure
/// (<c>RepositoryWriter.Dispose</c> ignores exceptions from the archive's <c>Dispose</c>), so the caller still sees the
/// refusal. When any step does not hold (another ML.NET, another stream), nothing is touched and the refusal says that
/// the file may remain.</para>
/// </remarks>
internal static class AbandonedModelFile
{
    private const string FirstEntry = "TrainingInfo/Version.txt";
    private const uint LocalHeaderSignature = 0x04034b50; // "PK\x03\x04", the zip format's local file header
    private const BindingFlags Instance = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;

    /// <summary>Removes the file behind <paramref name="context"/> when it holds only the save in progress.</summary>
    /// <returns>The full path of the removed file, or null with <paramref name="problem"/> saying why nothing was removed.</returns>
    public static string? Remove(ModelSaveContext context, out string? problem)
    {
        problem = null;
        try
        {
            if (Field(context, "Repository") is not { } repository)
                return Fail(out problem, "the model is not being saved as a zip");
            if (Field(repository, "_archive") is not ZipArchive archive)
                return Fail(out problem, "the save context holds no zip archive");
            if (Field(archive, "_archiveStream") is not FileStream file)
                return Fail(out problem, "the model is being written to a stream, not a file");
            if (!file.CanRead || !file.CanSeek || !StartsWithFirstEntry(file))
                return Fail(out problem, $"'{file.Name}' holds more than this save");
            string path = file.Name;
            file.Dispose();
            File.Delete(path);
            return path;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or MissingFieldException or NotSupportedException)
        {
            return Fail(out problem, e.Message);
        }
    }

    private static string? Fail(out string? problem, string why)
    {
        problem = why;
        return null;
    }

    /// <summary>The value of the instance field <paramref name="name"/>, declared on <paramref name="owner"/>'s type or a base type.</summary>
    private static object? Field(object? owner, string name)
    {
        for (var type = owner?.GetType(); type is not null; type = type.BaseType)
            if (type.GetField(name, Instance | BindingFlags.DeclaredOnly) is { } field)
                return field.GetValue(owner);
        throw new MissingFieldException($"{owner?.GetType().FullName ?? "null"} has no field '{name}' in this version of Microsoft.ML or .NET");
    }

    /// <summary>Whether the zip in <paramref name="file"/> starts at offset 0 with ML.NET's first entry.</summary>
    private static bool StartsWithFirstEntry(FileStream file)
    {
        Span<byte> header = stackalloc byte[30 + FirstEntry.Length];
        file.Position = 0;
        if (file.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < header.Length) return false;
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != LocalHeaderSignature) return false;
        if (BinaryPrimitives.ReadUInt16LittleEndian(header[26..]) != FirstEntry.Length) return false;
        // ML.NET names entries with the system's separator: '\' on Windows.
        return Encoding.ASCII.GetString(header[30..]).Replace('\\', '/') == FirstEntry;
    }
}

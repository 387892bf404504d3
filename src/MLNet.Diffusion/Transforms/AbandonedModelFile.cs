using System.Buffers.Binary;
using System.IO.Compression;
using System.Reflection;
using System.Text;
using Microsoft.ML;

namespace MLNet.Diffusion.Transforms;

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

using System.Text.Encodings.Web;
using System.Text.Json;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>Writes JSON files byte-for-byte reproducibly: properties in the order written, "\n" line ends,
/// numbers in invariant shortest round-trip form, non-ASCII text as UTF-8 (no BOM).</summary>
internal static class DemoJson
{
    public static void Write(string path, Action<Utf8JsonWriter> write, bool indented = true)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions
        {
            Indented = indented,
            NewLine = "\n",
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        }))
        {
            write(writer);
        }
        if (indented) stream.WriteByte((byte)'\n');
        File.WriteAllBytes(path, stream.ToArray());
    }
}

using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.Transforms;

namespace MLNet.Diffusion;

/// <summary>
/// Saves and loads fitted models that contain diffusion transformers, which <c>MLContext.Model.Save</c> cannot
/// (ML.NET's model registry loads only its own transformer classes).
/// </summary>
/// <remarks>
/// The file is a zip: <c>mlnet-diffusion.json</c> lists the model's transformers in order; each diffusion transformer is
/// written there as its stage, <see cref="DiffusionOptions"/> and column names (the model folder is referenced by its full
/// path, its weights are not copied); each run of standard ML.NET transformers between them is saved with
/// <c>MLContext.Model.Save</c> into an entry of its own, and the input schema likewise. Loading rebuilds the same chain
/// (as a <see cref="TransformerChain{TLastTransformer}"/>) and loads the model folder, which must still exist — or pass
/// <c>modelPath</c> to point at where it is now. The zip also holds a root <c>Model.key</c> that only
/// <c>MLContext.Model.Load</c> reads: it makes that call fail with a message naming
/// <see cref="Load(MLContext, string, out DataViewSchema, string, Action{DiffusionOptions})"/> (a
/// <see cref="FileNotFoundException"/> for an "assembly" of that name; see <c>ModelLoadRedirect</c>).
/// <code>
/// DiffusionModelSaver.Save(mlContext, model, data.Schema, "model.zip");
/// using var loaded = (TransformerChain&lt;ITransformer&gt;)DiffusionModelSaver.Load(mlContext, "model.zip", out var inputSchema);
/// </code>
/// </remarks>
public static class DiffusionModelSaver
{
    /// <summary>The zip entry that lists the model's parts.</summary>
    public const string ManifestEntry = "mlnet-diffusion.json";

    private const string Format = "MLNet.Diffusion model";
    private const string InputSchemaEntry = "input-schema.zip";

    private static readonly JsonSerializerOptions s_json = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Saves <paramref name="model"/> (a diffusion transformer, or a chain holding diffusion and standard ML.NET transformers) to a file.</summary>
    /// <param name="context">The ML.NET context (saves the standard transformers).</param>
    /// <param name="model">The fitted model.</param>
    /// <param name="inputSchema">The schema of the data the model takes (restored by <see cref="Load(MLContext, string, out DataViewSchema, string, Action{DiffusionOptions})"/>); may be null.</param>
    /// <param name="path">The file to write (a zip).</param>
    public static void Save(MLContext context, ITransformer model, DataViewSchema? inputSchema, string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        using var file = File.Create(path);
        Save(context, model, inputSchema, file);
    }

    /// <summary>Saves <paramref name="model"/> to a stream (see <see cref="Save(MLContext, ITransformer, DataViewSchema, string)"/>).</summary>
    public static void Save(MLContext context, ITransformer model, DataViewSchema? inputSchema, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stream);
        var manifest = new Manifest();
        using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
        if (inputSchema is not null)
        {
            WriteEntry(zip, InputSchemaEntry, s => context.Model.Save(new TransformerChain<ITransformer>(), inputSchema, s));
            manifest.InputSchema = InputSchemaEntry;
        }
        var standard = new List<ITransformer>();
        void FlushStandard()
        {
            if (standard.Count == 0) return;
            string entry = $"mlnet-{manifest.Parts.Count}.zip";
            var chain = new TransformerChain<ITransformer>(standard.ToArray());
            WriteEntry(zip, entry, s => context.Model.Save(chain, null, s));
            manifest.Parts.Add(new Part { Entry = entry });
            standard.Clear();
        }
        foreach (var transformer in Flatten(model))
        {
            if (transformer is DiffusionTransformerBase diffusion)
            {
                FlushStandard();
                manifest.Parts.Add(new Part { Diffusion = diffusion.ToSaved() });
            }
            else
            {
                standard.Add(transformer);
            }
        }
        FlushStandard();
        WriteEntry(zip, ManifestEntry, s => JsonSerializer.Serialize(s, manifest, s_json));
        WriteEntry(zip, ModelLoadRedirect.EntryName, s => s.Write(ModelLoadRedirect.Create()));
    }

    /// <summary>Loads a model saved by <see cref="Save(MLContext, ITransformer, DataViewSchema, string)"/>.</summary>
    /// <param name="context">The ML.NET context the transformers will use (device settings and log).</param>
    /// <param name="path">The saved file.</param>
    /// <param name="inputSchema">The input schema saved with the model, or null if none was.</param>
    /// <param name="modelPath">Where the Stable Diffusion model folder is now; null for the path it was saved with.</param>
    /// <param name="configure">Called with each diffusion transformer's saved options before it is created: set what
    /// is not saved (<see cref="DiffusionOptions.Progress"/>, <see cref="DiffusionOptions.CancellationToken"/>, <see cref="DiffusionOptions.ImageGenerator"/>) or change
    /// run-time settings such as <see cref="DiffusionOptions.BatchSize"/> or the device; null changes nothing.</param>
    /// <returns>A <see cref="TransformerChain{TLastTransformer}"/> of <see cref="ITransformer"/>; dispose it to unload the model.</returns>
    /// <exception cref="InvalidDataException">The file is not a saved MLNet.Diffusion model.</exception>
    public static ITransformer Load(MLContext context, string path, out DataViewSchema? inputSchema, string? modelPath = null,
        Action<DiffusionOptions>? configure = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        using var file = File.OpenRead(path);
        return Load(context, file, out inputSchema, modelPath, configure);
    }

    /// <summary>Loads a model from a stream (see <see cref="Load(MLContext, string, out DataViewSchema, string, Action{DiffusionOptions})"/>).</summary>
    public static ITransformer Load(MLContext context, Stream stream, out DataViewSchema? inputSchema, string? modelPath = null,
        Action<DiffusionOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(stream);
        using var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
        var manifestEntry = zip.GetEntry(ManifestEntry)
            ?? throw new InvalidDataException($"This file has no '{ManifestEntry}': it was not written by DiffusionModelSaver.Save. (A model saved with MLContext.Model.Save loads with MLContext.Model.Load.)");
        Manifest manifest;
        using (var s = manifestEntry.Open())
            manifest = JsonSerializer.Deserialize<Manifest>(s, s_json) ?? throw new InvalidDataException($"'{ManifestEntry}' is empty.");
        if (manifest.Format != Format || manifest.Version != 1)
            throw new InvalidDataException($"'{ManifestEntry}' is '{manifest.Format}' version {manifest.Version}; this library reads '{Format}' version 1.");

        inputSchema = null;
        if (manifest.InputSchema is { } schemaEntry)
        {
            var empty = ReadEntry(zip, schemaEntry, s => context.Model.Load(s, out var schema) is var t ? (t, schema) : default);
            inputSchema = empty.schema;
            (empty.t as IDisposable)?.Dispose();
        }
        var transformers = new List<ITransformer>();
        try
        {
            foreach (var part in manifest.Parts)
            {
                if (part.Diffusion is { } saved)
                {
                    if (modelPath is not null) saved.Options.ModelPath = modelPath;
                    configure?.Invoke(saved.Options);
                    transformers.Add(Create(DiffusionHost.From(context), saved));
                }
                else if (part.Entry is { } entry)
                {
                    transformers.AddRange(Flatten(ReadEntry(zip, entry, s => context.Model.Load(s, out _))));
                }
                else
                {
                    throw new InvalidDataException($"'{ManifestEntry}' has a part that is neither a diffusion transformer nor an ML.NET model entry.");
                }
            }
        }
        catch
        {
            foreach (var t in transformers) (t as IDisposable)?.Dispose();
            throw;
        }
        return new TransformerChain<ITransformer>(transformers.ToArray());
    }

    private static DiffusionTransformerBase Create(DiffusionHost host, SavedTransformer saved) => saved.Stage switch
    {
        nameof(DiffusionTransformer) => DiffusionTransformer.FromSaved(host, saved),
        nameof(TextEncodingTransformer) => TextEncodingTransformer.FromSaved(host, saved),
        nameof(DenoisingTransformer) => DenoisingTransformer.FromSaved(host, saved),
        nameof(VaeDecodingTransformer) => VaeDecodingTransformer.FromSaved(host, saved),
        _ => throw new InvalidDataException($"'{ManifestEntry}' names an unknown diffusion stage '{saved.Stage}'."),
    };

    /// <summary>The transformers of a model in order, with chains (nested or not) opened up.</summary>
    private static IEnumerable<ITransformer> Flatten(ITransformer model)
    {
        if (model is DiffusionTransformerBase || model is not IEnumerable<ITransformer> chain)
        {
            yield return model;
            yield break;
        }
        foreach (var inner in chain)
            foreach (var t in Flatten(inner))
                yield return t;
    }

    private static void WriteEntry(ZipArchive zip, string name, Action<Stream> write)
    {
        // ML.NET writes a zip of its own, which needs a seekable stream.
        using var buffer = new MemoryStream();
        write(buffer);
        using var entry = zip.CreateEntry(name, CompressionLevel.Optimal).Open();
        buffer.Position = 0;
        buffer.CopyTo(entry);
    }

    private static T ReadEntry<T>(ZipArchive zip, string name, Func<Stream, T> read)
    {
        var entry = zip.GetEntry(name) ?? throw new InvalidDataException($"The saved model lacks the entry '{name}' that '{ManifestEntry}' names.");
        using var buffer = new MemoryStream();
        using (var s = entry.Open()) s.CopyTo(buffer);
        buffer.Position = 0;
        return read(buffer);
    }

    private sealed class Manifest
    {
        public string Format { get; set; } = DiffusionModelSaver.Format;
        public int Version { get; set; } = 1;
        public string? InputSchema { get; set; }
        public List<Part> Parts { get; set; } = [];
    }

    private sealed class Part
    {
        public string? Entry { get; set; }
        public SavedTransformer? Diffusion { get; set; }
    }
}

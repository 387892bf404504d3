using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.TextEncoding;

/// <summary>
/// The textual-inversion embedding files a model is loaded with (<see cref="DiffusionRuntimeOptions.TextualInversions"/>):
/// read and checked once, then given to each text encoder as added tokens and an extended token-embedding table
/// (<see cref="ForEncoder"/>).
/// </summary>
/// <remarks>
/// <para>Each text encoder takes the vectors of its own width: an SDXL file's <c>clip_l</c> (768) goes to
/// <c>text_encoder</c> and its <c>clip_g</c> (1280) to <c>text_encoder_2</c>, each tokenizer numbering the new ids from its
/// own vocabulary size. A file with no vectors of an encoder's width (an SD 1.x embedding with an SDXL model) is refused.</para>
/// <para>Pooled embeddings: CLIP exports made from configurations with <c>eos_token_id</c> 2 (SD 1.x's and SDXL's
/// published ones) pool at the position of the largest id, as transformers' <c>CLIPTextTransformer</c> does for them; with
/// added ids above the vocabulary that is the last trigger's position rather than the end token's. diffusers'
/// <c>load_textual_inversion</c> on the same PyTorch models does the same, and transformers' source says so; SDXL's pooled
/// <c>text_embeds</c> therefore follow diffusers, not A1111 (which keeps the original ids and replaces vectors after the
/// lookup).</para>
/// </remarks>
internal sealed class TextualInversionSet
{
    /// <summary>The largest embedding file accepted (32 MiB; real ones are kilobytes, the largest SDXL ones about a megabyte).</summary>
    public const long MaxFileBytes = 32L << 20;

    /// <summary>The extension embedding files must have.</summary>
    public const string Extension = ".safetensors";

    private TextualInversionSet(IReadOnlyList<TextualInversionFile> files) => Files = files;

    /// <summary>The files, in the order given.</summary>
    public IReadOnlyList<TextualInversionFile> Files { get; }

    /// <summary>Every trigger word of every file.</summary>
    public IEnumerable<TextualInversionEmbedding> Embeddings => Files.SelectMany(f => f.Embeddings);

    /// <summary>Reads and checks the files of <paramref name="entries"/> (path → trigger word, or null for the file's own);
    /// null when there are none.</summary>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    /// <exception cref="InvalidDataException">A file is a pickle, not <c>.safetensors</c>, too large or malformed, or two
    /// files give the same trigger word; the message names the file.</exception>
    public static TextualInversionSet? Load(IEnumerable<KeyValuePair<string, string?>>? entries)
    {
        if (entries is null) return null;
        var files = new List<TextualInversionFile>();
        var triggers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (path, token) in entries)
        {
            if (string.IsNullOrWhiteSpace(path))
                throw new InvalidDataException("A textual-inversion entry has an empty path; give the .safetensors file of each embedding.");
            string full = Path.GetFullPath(path);
            if (!File.Exists(full))
                throw new FileNotFoundException($"The textual-inversion embedding file '{path}' was not found.", full);
            string extension = Path.GetExtension(full);
            bool pickle = extension.ToLowerInvariant() is ".pt" or ".pth" or ".bin" or ".ckpt";
            if (!pickle && !extension.Equals(Extension, StringComparison.OrdinalIgnoreCase))
                throw new InvalidDataException($"'{path}' is not a textual-inversion embedding file: its extension is '{extension}', expected {Extension}.");
            long length = new FileInfo(full).Length;
            if (length > MaxFileBytes)
                throw new InvalidDataException($"'{path}' has {length} bytes, more than the {MaxFileBytes >> 20} MiB an embedding file may have; embeddings are kilobytes (is it a model checkpoint or a LoRA?).");
            var file = TextualInversionFile.Load(full, string.IsNullOrEmpty(token) ? null : token); // refuses pickles unopened
            foreach (var embedding in file.Embeddings)
            {
                string key = ClipTokenizer.Prepare(embedding.Token);
                if (!triggers.TryAdd(key, path))
                    throw new InvalidDataException(
                        $"The trigger word '{embedding.Token}' of '{path}' is also given by '{triggers[key]}' (prompts are matched without regard to case); give one of them another trigger word.");
            }
            files.Add(file);
        }
        return files.Count == 0 ? null : new TextualInversionSet(files);
    }

    /// <summary>
    /// What makes two lists of embedding files the same for sharing a loaded model: each file's full path, trigger word,
    /// length and last write time, in the order given; empty for none.
    /// </summary>
    public static string IdentityOf(IEnumerable<KeyValuePair<string, string?>>? entries)
    {
        if (entries is null) return "";
        var parts = new List<string>();
        foreach (var (path, token) in entries)
        {
            string full = string.IsNullOrWhiteSpace(path) ? "" : Path.GetFullPath(path);
            var info = new FileInfo(full.Length == 0 ? "." : full);
            string stamp = full.Length > 0 && info.Exists
                ? $"{info.Length.ToString(CultureInfo.InvariantCulture)}@{info.LastWriteTimeUtc.Ticks.ToString(CultureInfo.InvariantCulture)}" : "missing";
            parts.Add($"{full}\u0001{token}\u0001{stamp}");
        }
        return string.Join('\u0002', parts);
    }

    /// <summary>
    /// The text encoder <paramref name="component"/>'s share: its tokenizer with every trigger word added (ids from its
    /// vocabulary size on, n consecutive ids for n vectors, in file order) and its token-embedding table extended with the
    /// vectors, to hand to ONNX Runtime under <see cref="EncoderTable.InitializerName"/>.
    /// </summary>
    /// <exception cref="InvalidDataException">The encoder has no unambiguous token-embedding table, or an embedding has no
    /// vectors of its width.</exception>
    public EncoderTable ForEncoder(string component, string modelPath, ClipTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var table = TokenEmbeddingTable.Find(component, modelPath, tokenizer.VocabularySize, 0);
        var rows = new List<float>();
        var triggers = new List<(string, int[])>();
        int next = table.Rows;
        foreach (var file in Files)
        {
            foreach (var embedding in file.Embeddings)
            {
                var vectors = embedding.ForWidth(table.Width) ?? throw new InvalidDataException(
                    $"'{file.FilePath}' ({file.Layout} layout) gives '{embedding.Token}' vectors of width {string.Join(" and ", embedding.Vectors.Select(v => $"{v.Width} ('{v.Tensor}')"))}, " +
                    $"but the {component} model's token table '{table.Name}' is {table.Width} wide: the embedding was made for another model family " +
                    "(SD 1.x: 768; SD 2.x: 1024; SDXL: 768 and 1280). Use an embedding made for this model.");
                var ids = Enumerable.Range(next, vectors.Count).ToArray();
                next += vectors.Count;
                rows.AddRange(vectors.Values);
                triggers.Add((embedding.Token, ids));
            }
        }
        var added = new AddedTokens(triggers);
        var value = table.CreateExtended(rows.ToArray());
        return new EncoderTable(tokenizer.WithAddedTokens(added), table.Name, value);
    }

    /// <summary>One text encoder's added tokens and extended table.</summary>
    /// <param name="Tokenizer">The encoder's tokenizer with the trigger words added.</param>
    /// <param name="InitializerName">The token-embedding table's initializer name.</param>
    /// <param name="Table">The extended table; the session created with it owns it from then on.</param>
    internal sealed record EncoderTable(ClipTokenizer Tokenizer, string InitializerName, OrtValue Table);
}

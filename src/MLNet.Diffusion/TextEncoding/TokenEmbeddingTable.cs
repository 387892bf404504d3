using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Models;

namespace MLNet.Diffusion.TextEncoding;

/// <summary>
/// The token-embedding table of an ONNX CLIP text encoder (<c>text_model.embeddings.token_embedding.weight</c> in
/// PyTorch, an initializer of shape [vocabulary, width] that a <c>Gather</c> on <c>input_ids</c> reads), found by its
/// shape, and the extended copy that textual inversion gives ONNX Runtime in its place: the original rows, then one row
/// per added token, so ids from the vocabulary size on select the added vectors.
/// </summary>
/// <remarks>
/// <para>The model file is never rewritten: the extended table goes to ONNX Runtime through
/// <see cref="SessionOptions.AddInitializer"/>, which replaces the initializer of that name when the session is created.
/// ONNX Runtime 1.32 accepts a replacement with more rows than the file declares (checked by the textual-inversion tests
/// on the CPU provider, with and without external data, at every graph-optimisation level): <c>Gather</c> checks the ids
/// against the tensor it is given at run time, and the declared row count appears in no output shape. A graph that
/// computed a shape from the table's row count would not accept it; CLIP's does not. ONNX Runtime refuses a replacement
/// whose buffer it allocated itself ("Buffer containing the initializer must be owned by the user"), so the table is a
/// managed array pinned by its <see cref="OrtValue"/>, and it must outlive every session created with it (ONNX Runtime
/// reads it in place on the CPU).</para>
/// <para>The table is found by its shape alone (names differ between exporters and optimisers): exactly one float32 or
/// float16 initializer of rank 2 whose rows equal the tokenizer's vocabulary size and whose width equals the encoder's,
/// when the encoder declares it. None, or several, is refused with the candidates listed. The rows are read from the
/// file's <c>raw_data</c> or from its external-data file, byte for byte, so the original rows of the extended table are
/// the model's own.</para>
/// </remarks>
internal sealed class TokenEmbeddingTable
{
    private const int OnnxFloat = 1, OnnxFloat16 = 10;

    private readonly OnnxInitializer _initializer;

    private TokenEmbeddingTable(string modelPath, OnnxInitializer initializer)
    {
        ModelPath = modelPath;
        _initializer = initializer;
    }

    /// <summary>The ONNX file the table is in.</summary>
    public string ModelPath { get; }

    /// <summary>The initializer's name (what <see cref="SessionOptions.AddInitializer"/> replaces).</summary>
    public string Name => _initializer.Name;

    /// <summary>The number of rows: the vocabulary size; added tokens take ids from here on.</summary>
    public int Rows => (int)_initializer.Dimensions[0];

    /// <summary>The width of each row (the text encoder's hidden width).</summary>
    public int Width => (int)_initializer.Dimensions[1];

    /// <summary>float32 or float16, as the model stores it.</summary>
    public TensorElementType ElementType => _initializer.DataType == OnnxFloat16 ? TensorElementType.Float16 : TensorElementType.Float;

    private int ElementSize => _initializer.DataType == OnnxFloat16 ? 2 : 4;

    /// <summary>Finds the token-embedding table of the text encoder <paramref name="modelPath"/>.</summary>
    /// <param name="component">The component's name, for messages (<c>text_encoder</c>, <c>text_encoder_2</c>).</param>
    /// <param name="modelPath">The <c>.onnx</c> file.</param>
    /// <param name="vocabularySize">The tokenizer's vocabulary size: the table's row count.</param>
    /// <param name="width">The encoder's hidden width when its metadata fixes it, else 0 (any width).</param>
    /// <exception cref="InvalidDataException">No such table, or more than one; the message lists the rank-2 float
    /// initializers and the shape looked for.</exception>
    public static TokenEmbeddingTable Find(string component, string modelPath, int vocabularySize, int width)
    {
        var summary = OnnxExternalDataScanner.Scan(modelPath);
        string expected = $"[{vocabularySize}, {(width > 0 ? width.ToString(System.Globalization.CultureInfo.InvariantCulture) : "width")}] of float32 or float16";
        var tables = summary.Initializers.Where(i => i.DataType is OnnxFloat or OnnxFloat16 && i.Dimensions.Length == 2).ToList();
        var matches = tables.Where(i => i.Dimensions[0] == vocabularySize && (width <= 0 || i.Dimensions[1] == width) && i.Dimensions[1] > 0).ToList();
        if (matches.Count == 1) return new TokenEmbeddingTable(modelPath, matches[0]);
        string Describe(IEnumerable<OnnxInitializer> list, int most) =>
            string.Join(", ", list.Take(most).Select(i => $"'{i.Name}' [{string.Join(", ", i.Dimensions)}] {(i.DataType == OnnxFloat16 ? "float16" : "float32")}"))
            + (list.Count() > most ? $" and {list.Count() - most} more" : "");
        if (matches.Count == 0)
            throw new InvalidDataException(
                $"The {component} model '{modelPath}' has no token-embedding table for textual inversion: no initializer of shape {expected} " +
                $"(the tokenizer's vocabulary by the encoder's width). Its rank-2 float initializers: {(tables.Count == 0 ? "none" : Describe(tables, 12))}. " +
                "Textual inversion needs an export that keeps the table as an initializer (diffusers' and Optimum's do); load the model without embeddings, or export it again.");
        throw new InvalidDataException(
            $"The {component} model '{modelPath}' has {matches.Count} initializers of shape {expected}, so its token-embedding table cannot be told by its shape: " +
            $"{Describe(matches, 12)}. Load the model without embeddings.");
    }

    /// <summary>
    /// An ONNX Runtime tensor of [<see cref="Rows"/> + added rows, <see cref="Width"/>] in the table's element type: the
    /// table's own rows, read from the model's data, then <paramref name="addedRows"/> (float16 tables round each value to
    /// the nearest float16). The caller owns it and must keep it alive as long as any session created with it.
    /// </summary>
    /// <param name="addedRows">Row-major [n, <see cref="Width"/>] values.</param>
    /// <exception cref="InvalidDataException">The table's data cannot be read (typed fields instead of raw bytes, a
    /// missing or short external-data file).</exception>
    public OrtValue CreateExtended(ReadOnlySpan<float> addedRows)
    {
        if (addedRows.Length % Width != 0)
            throw new ArgumentException($"{addedRows.Length} values are not whole rows of {Width}.", nameof(addedRows));
        int added = addedRows.Length / Width;
        int total = checked((Rows + added) * Width);
        int originalBytes = checked(Rows * Width * ElementSize);
        // ONNX Runtime takes only initializers whose buffer its caller owns: a managed array, pinned by the OrtValue
        // until it is disposed.
        if (ElementType == TensorElementType.Float)
        {
            var values = new float[total];
            ReadOriginal(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())[..originalBytes]);
            addedRows.CopyTo(values.AsSpan(Rows * Width));
            return OrtValue.CreateTensorValueFromMemory(values, [Rows + added, Width]);
        }
        var halves = new Float16[total];
        ReadOriginal(System.Runtime.InteropServices.MemoryMarshal.AsBytes(halves.AsSpan())[..originalBytes]);
        for (int i = 0; i < addedRows.Length; i++) halves[Rows * Width + i] = (Float16)addedRows[i];
        return OrtValue.CreateTensorValueFromMemory(halves, [Rows + added, Width]);
    }

    /// <summary>Copies the table's bytes (little-endian, as ONNX stores them) from the model file or its external data.</summary>
    private void ReadOriginal(Span<byte> destination)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("Textual inversion reads ONNX tensors as stored (little-endian); this machine is big-endian.");
        string file;
        long offset;
        long available;
        if (_initializer.External is { } external)
        {
            if (Models.ModelFolderValidator.ExternalLocationProblem(external.Location) is { } problem)
                throw new InvalidDataException($"The token-embedding table '{Name}' of '{ModelPath}' keeps its data in '{external.Location}', which {problem}.");
            file = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(ModelPath))!, external.Location);
            offset = external.Offset;
            available = external.Length ?? destination.Length;
        }
        else if (_initializer.RawDataOffset >= 0)
        {
            file = ModelPath;
            offset = _initializer.RawDataOffset;
            available = _initializer.RawDataLength;
        }
        else
        {
            throw new InvalidDataException(
                $"The token-embedding table '{Name}' of '{ModelPath}' keeps its values in typed fields (float_data/int32_data) rather than raw_data; " +
                "textual inversion reads raw or external data only. Save the model again with onnx (which writes raw_data).");
        }
        if (available != destination.Length)
            throw new InvalidDataException($"The token-embedding table '{Name}' of '{ModelPath}' holds {available} bytes, but [{Rows}, {Width}] needs {destination.Length}.");
        if (!File.Exists(file))
            throw new FileNotFoundException($"The token-embedding table '{Name}' of '{ModelPath}' keeps its data in '{file}', which does not exist.", file);
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        if (offset > stream.Length || destination.Length > stream.Length - offset)
            throw new InvalidDataException($"The token-embedding table '{Name}' of '{ModelPath}' lies at bytes {offset} to {offset + destination.Length} of '{file}', which has {stream.Length}: the file is truncated.");
        stream.Seek(offset, SeekOrigin.Begin);
        stream.ReadExactly(destination);
    }
}

namespace MLNet.Diffusion.TextEncoding;

/// <summary>An embedding's vectors for one text-encoder width: <see cref="Count"/> rows of <see cref="Width"/> values.</summary>
/// <param name="Width">The text encoder's hidden width these vectors are for (768 SD 1.x and SDXL's first encoder, 1024
/// SD 2.x, 1280 SDXL's second).</param>
/// <param name="Values">Row-major [Count, Width] float32 values.</param>
/// <param name="Tensor">The tensor they were read from, for messages.</param>
internal sealed record TextualInversionVectors(int Width, float[] Values, string Tensor)
{
    /// <summary>How many token vectors the trigger word stands for.</summary>
    public int Count => Values.Length / Width;

    /// <summary>Row <paramref name="index"/>: one token's vector.</summary>
    public ReadOnlySpan<float> Row(int index) => Values.AsSpan(index * Width, Width);
}

/// <summary>One trigger word of an embedding file and its vectors per text-encoder width.</summary>
/// <param name="Token">The trigger word as a prompt writes it.</param>
/// <param name="Vectors">One entry per width: one for SD 1.x/2.x files, two (768 and 1280) for SDXL files.</param>
internal sealed record TextualInversionEmbedding(string Token, IReadOnlyList<TextualInversionVectors> Vectors)
{
    /// <summary>The vectors for a text encoder of <paramref name="width"/>, or null when the file has none for it.</summary>
    public TextualInversionVectors? ForWidth(int width) => Vectors.FirstOrDefault(v => v.Width == width);
}

/// <summary>
/// A textual-inversion embedding file in the safetensors format, interpreted in the three layouts in use:
/// <list type="bullet">
/// <item>AUTOMATIC1111's: one tensor <c>emb_params</c>, or one <c>string_to_param.*</c> (its <c>.pt</c> layout flattened),
/// [n, D] or [D]; the trigger word is the file name without its extension, as A1111 names it.</item>
/// <item>SDXL's (A1111 and diffusers): <c>clip_l</c> [n, 768] for the first text encoder and <c>clip_g</c> [n, 1280] for
/// the second, with the same n; the trigger word is the file name.</item>
/// <item>diffusers' <c>learned_embeds.safetensors</c>: <c>{token: [D] or [n, D]}</c>; each name is a trigger word.</item>
/// </list>
/// PyTorch pickles (<c>.pt</c>, <c>.bin</c>, <c>.ckpt</c>, <c>.pth</c>) are refused by their extension or their first
/// bytes and never opened as pickles: unpickling can run arbitrary code.
/// </summary>
/// <remarks>Layout rules read from A1111's <c>textual_inversion.py</c> (<c>create_embedding_from_data</c>) and diffusers'
/// <c>TextualInversionLoaderMixin</c>. As in A1111, an SDXL file's other tensors, and an A1111 file's tensors besides its
/// one <c>string_to_param</c>, are ignored.</remarks>
internal sealed class TextualInversionFile
{
    /// <summary>A1111's tensor name for a single embedding saved as safetensors.</summary>
    public const string A1111TensorName = "emb_params";

    /// <summary>The prefix of A1111's <c>string_to_param</c> dictionary, flattened into safetensors names.</summary>
    public const string A1111ParamPrefix = "string_to_param.";

    /// <summary>SDXL's tensor for the first (CLIP ViT-L, 768-wide) text encoder.</summary>
    public const string SdxlFirstEncoderTensor = "clip_l";

    /// <summary>SDXL's tensor for the second (OpenCLIP bigG, 1280-wide) text encoder.</summary>
    public const string SdxlSecondEncoderTensor = "clip_g";

    private static readonly string[] PickleExtensions = [".pt", ".pth", ".bin", ".ckpt"];

    private TextualInversionFile(string path, string layout, IReadOnlyList<TextualInversionEmbedding> embeddings)
    {
        FilePath = path;
        Layout = layout;
        Embeddings = embeddings;
    }

    /// <summary>The file as it was loaded.</summary>
    public string FilePath { get; }

    /// <summary>Which layout the file was read as: "A1111", "SDXL" or "diffusers".</summary>
    public string Layout { get; }

    /// <summary>The file's trigger words with their vectors (one for A1111 and SDXL files).</summary>
    public IReadOnlyList<TextualInversionEmbedding> Embeddings { get; }

    /// <summary>Reads the embedding file at <paramref name="path"/>.</summary>
    /// <param name="path">A <c>.safetensors</c> file.</param>
    /// <param name="token">The trigger word for a one-embedding file, in place of the file name (A1111, SDXL) or the tensor
    /// name (diffusers); null keeps those.</param>
    /// <exception cref="InvalidDataException">A pickle, a malformed file, or no layout fits; the message names the file and
    /// says what to do.</exception>
    public static TextualInversionFile Load(string path, string? token = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (PickleExtensions.Contains(Path.GetExtension(path), StringComparer.OrdinalIgnoreCase) || StartsLikePyTorchFile(path))
            throw new InvalidDataException(
                $"'{path}' is a PyTorch pickle; convert it to .safetensors (for example with the safetensors package's " +
                "torch.load/save_file, in a trusted environment). Pickles are never loaded, since they can run code.");

        var file = SafeTensorsFile.Open(path);
        if (file.Tensors.Count == 0)
            throw Refuse(path, "it holds no tensors");
        string stem = Path.GetFileNameWithoutExtension(path);

        string layout;
        List<TextualInversionEmbedding> embeddings;
        var clipL = file.Find(SdxlFirstEncoderTensor);
        var clipG = file.Find(SdxlSecondEncoderTensor);
        var a1111 = file.Tensors.Where(t => t.Name == A1111TensorName || t.Name.StartsWith(A1111ParamPrefix, StringComparison.Ordinal)).ToList();
        if (clipL is not null && clipG is not null)
        {
            layout = "SDXL";
            var l = ReadVectors(file, clipL);
            var g = ReadVectors(file, clipG);
            if (l.Count != g.Count)
                throw Refuse(path, $"'{SdxlFirstEncoderTensor}' has {l.Count} vectors but '{SdxlSecondEncoderTensor}' has {g.Count}; an SDXL embedding gives both text encoders the same number");
            embeddings = [new(token ?? stem, [l, g])];
        }
        else if (clipL is not null || clipG is not null)
        {
            throw Refuse(path, $"it has '{(clipL ?? clipG)!.Name}' without '{(clipL is null ? SdxlFirstEncoderTensor : SdxlSecondEncoderTensor)}'; an SDXL embedding needs both");
        }
        else if (a1111.Count > 0)
        {
            if (a1111.Count != 1)
                throw Refuse(path, $"it has {a1111.Count} A1111 embedding tensors ({string.Join(", ", a1111.Select(t => t.Name))}); A1111's layout holds one");
            layout = "A1111";
            embeddings = [new(token ?? stem, [ReadVectors(file, a1111[0])])];
        }
        else
        {
            layout = "diffusers";
            if (token is not null && file.Tensors.Count != 1)
                throw Refuse(path, $"a trigger word was given but the file holds {file.Tensors.Count} embeddings, each named by its tensor");
            embeddings = file.Tensors.Select(t => new TextualInversionEmbedding(token ?? t.Name, [ReadVectors(file, t)])).ToList();
        }

        foreach (var embedding in embeddings)
        {
            if (embedding.Token.Length == 0 || embedding.Token.Any(char.IsWhiteSpace))
                throw Refuse(path, $"the trigger word '{embedding.Token}' is empty or contains white space; a trigger word is one word (pass another)");
        }
        var duplicate = embeddings.GroupBy(e => e.Token, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw Refuse(path, $"the trigger word '{duplicate.Key}' appears twice");
        return new TextualInversionFile(path, layout, embeddings);
    }

    /// <summary>
    /// Whether the file starts as PyTorch writes: a zip archive ("PK\x03\x04", <c>torch.save</c> since 1.6) or a pickle
    /// (0x80 then protocol 2-5). Neither can start a safetensors file this reader accepts: both read as a header length
    /// far over <see cref="SafeTensorsFile.MaxHeaderBytes"/>, whose upper bytes are zero.
    /// </summary>
    private static bool StartsLikePyTorchFile(string path)
    {
        Span<byte> head = stackalloc byte[8];
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1))
        {
            if (stream.Length < head.Length) return false;
            stream.ReadExactly(head);
        }
        bool zip = head[0] == (byte)'P' && head[1] == (byte)'K' && head[2] == 3 && head[3] == 4;
        bool pickle = head[0] == 0x80 && head[1] is >= 2 and <= 5;
        bool headerLengthTooLarge = head[3] != 0 || head[4] != 0 || head[5] != 0 || head[6] != 0 || head[7] != 0;
        return (zip || pickle) && headerLengthTooLarge;
    }

    private static TextualInversionVectors ReadVectors(SafeTensorsFile file, SafeTensorInfo tensor)
    {
        if (tensor.Shape.Length is not (1 or 2))
            throw Refuse(file.FilePath, $"the tensor '{tensor.Name}' has shape {tensor.ShapeText}; an embedding is [width] or [vectors, width]");
        long width = tensor.Shape[^1];
        long count = tensor.Shape.Length == 2 ? tensor.Shape[0] : 1;
        if (width == 0 || count == 0)
            throw Refuse(file.FilePath, $"the tensor '{tensor.Name}' has shape {tensor.ShapeText}, with no values");
        if (width > int.MaxValue)
            throw Refuse(file.FilePath, $"the tensor '{tensor.Name}' has the width {width}, larger than any text encoder's");
        if (tensor.DType is not (SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16))
            throw Refuse(file.FilePath, $"the tensor '{tensor.Name}' holds {SafeTensorsFile.NameOf(tensor.DType)} values; embedding vectors are F32, F16 or BF16");
        var values = file.ReadFloat32(tensor);
        int bad = Array.FindIndex(values, v => !float.IsFinite(v));
        if (bad >= 0)
            throw Refuse(file.FilePath, $"the tensor '{tensor.Name}' holds the value {values[bad]} at vector {bad / width}, element {bad % width}; embedding values must be finite");
        return new TextualInversionVectors((int)width, values, tensor.Name);
    }

    private static InvalidDataException Refuse(string path, string reason) =>
        new($"'{path}' is not a usable textual-inversion embedding: {reason}.");
}

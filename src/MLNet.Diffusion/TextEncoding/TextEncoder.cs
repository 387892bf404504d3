using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.TextEncoding;

/// <summary>
/// A CLIP text encoder (<c>text_encoder/model.onnx</c>, or SDXL's <c>text_encoder_2/model.onnx</c>): prompts → token ids →
/// per-token embeddings [N, 77·k, D] (k chunks of 77 positions) that condition every UNet call, and, when the model has one, a pooled embedding [N, P].
/// The id input may be int32 (diffusers' export) or int64 (Optimum's); D is 768 for SD 1.x, 1024 for SD 2.x, 768 and 1280
/// for SDXL's two encoders.
/// </summary>
/// <remarks>
/// <para>Which per-token embeddings: <see cref="TextEncoderLayer.Last"/> reads <c>last_hidden_state</c> (SD 1.x and 2.x);
/// <see cref="TextEncoderLayer.Penultimate"/> reads <c>hidden_states.{L−1}</c>, the output of the last layer but one, of an
/// encoder exported with <c>hidden_states.0</c> … <c>hidden_states.L</c> (SDXL: diffusers'
/// <c>encode_prompt</c> takes <c>hidden_states[-2]</c>); an encoder without those outputs is refused with the list of
/// what it has. Pooled: <c>text_embeds</c> (CLIPTextModelWithProjection), else <c>pooler_output</c>, else none.</para>
/// </remarks>
/// <remarks>
/// Prompts longer than the tokenizer's 77 positions (BOS + 75 tokens + EOS) are split into chunks of 77 as AUTOMATIC1111
/// does (<see cref="PromptChunker"/>), each encoded as a row of its own, and a note names the prompt. An image prompt with no tokens (empty, or only spaces) is encoded as the empty prompt, which makes the
/// image unconditional; that is logged too (Information), since it is usually a missing value rather than a choice.
/// Both notes name each text by its <see cref="TextOwner"/>: the caller's words for it (a data row, an image), so that
/// this is the one place where prompts are checked and the messages are made.
/// </remarks>
/// <remarks>
/// Textual inversion (<see cref="TextualInversionSet"/>): the encoder is then created with its tokenizer's trigger words
/// added (ids from the vocabulary size on) and its token-embedding table replaced, in the session only, by one extended
/// with the embeddings' vectors; the model file is not changed. A trigger's ids count towards the 75 content tokens.
/// </remarks>
internal sealed class TextEncoder : OnnxModelComponent
{
    private readonly TensorSpec _ids;
    private readonly string _hiddenName;
    private readonly string? _pooledName;
    private readonly string[] _outputNames;

    /// <summary>Loads an SD 1.x/2.x encoder (<c>text_encoder</c>, last hidden state) and checks its contract.</summary>
    /// <exception cref="InvalidDataException">The model does not have <c>input_ids</c> (int32/int64, rank 2) or a float output of rank 3.</exception>
    public TextEncoder(string modelPath, ClipTokenizer tokenizer, OnnxSessionFactory sessions)
        : this("text_encoder", modelPath, tokenizer, sessions, TextEncoderLayer.Last)
    {
    }

    /// <summary>Loads the encoder <paramref name="componentName"/> and checks its contract.</summary>
    /// <exception cref="InvalidDataException">The model does not have <c>input_ids</c> (int32/int64, rank 2), or lacks the
    /// hidden state <paramref name="layer"/> asks for; the message lists its outputs.</exception>
    public TextEncoder(string componentName, string modelPath, ClipTokenizer tokenizer, OnnxSessionFactory sessions, TextEncoderLayer layer)
        : this(componentName, modelPath, tokenizer, sessions, layer, null)
    {
    }

    /// <summary>Loads the encoder <paramref name="componentName"/> with textual-inversion <paramref name="embeddings"/>: its
    /// tokenizer gets their trigger words and its session an extended token-embedding table (see
    /// <see cref="TextualInversionSet.ForEncoder"/>); null or none loads it as it is.</summary>
    /// <exception cref="InvalidDataException">As the other constructor; also when the embeddings cannot be given to this
    /// encoder (no unambiguous token table, vectors of another width).</exception>
    public TextEncoder(string componentName, string modelPath, ClipTokenizer tokenizer, OnnxSessionFactory sessions, TextEncoderLayer layer,
        TextualInversionSet? embeddings)
        : this(componentName, modelPath, sessions, layer, tokenizer,
            embeddings is null || !File.Exists(modelPath) ? null : embeddings.ForEncoder(componentName, modelPath, tokenizer)) // a missing file is reported by the base
    {
    }

    private TextEncoder(string componentName, string modelPath, OnnxSessionFactory sessions, TextEncoderLayer layer, ClipTokenizer tokenizer,
        TextualInversionSet.EncoderTable? table)
        : base(componentName, modelPath, sessions, false, table is null ? null : [new(table.InitializerName, table.Table)])
    {
        try
        {
            ArgumentNullException.ThrowIfNull(tokenizer);
            Tokenizer = table?.Tokenizer ?? tokenizer;
            Layer = layer;
            _ids = Require(true, "input_ids", [TensorElementType.Int32, TensorElementType.Int64], 2);
            CheckDimension(_ids, 1, tokenizer.MaxLength, "sequence length");
            _hiddenName = layer == TextEncoderLayer.Penultimate ? PenultimateHiddenState()
                : FirstOutput("last_hidden_state") ?? Outputs.Values.FirstOrDefault(o => o.Rank == 3)?.Name
                ?? throw new InvalidDataException($"The {componentName} model '{modelPath}' has no 'last_hidden_state' output of rank 3 (it declares {string.Join(", ", Outputs.Values)}).");
            var hidden = Require(false, _hiddenName, [TensorElementType.Float, TensorElementType.Float16], 3);
            EmbeddingWidth = hidden.Dimensions[2] > 0 ? hidden.Dimensions[2] : 0;
            _pooledName = FirstOutput("text_embeds") ?? FirstOutput("pooler_output");
            if (_pooledName is not null)
            {
                var pooled = Require(false, _pooledName, [TensorElementType.Float, TensorElementType.Float16], 2);
                PooledWidth = pooled.Dimensions[1] > 0 ? pooled.Dimensions[1] : 0;
            }
            _outputNames = _pooledName is null ? [_hiddenName] : [_hiddenName, _pooledName];
            foreach (var extra in Inputs.Keys.Where(k => k != "input_ids"))
                if (extra != "attention_mask")
                    throw new InvalidDataException($"The {componentName} model '{modelPath}' needs an input '{extra}' that the SD contract does not have (only input_ids).");
        }
        catch
        {
            Dispose(); // release the session now rather than at finalization
            throw;
        }
    }

    /// <summary>
    /// The name of the penultimate hidden state: <c>hidden_states.{L−1}</c> where <c>hidden_states.L</c> is the highest
    /// numbered output of that form.
    /// </summary>
    private string PenultimateHiddenState()
    {
        const string prefix = "hidden_states.";
        int last = -1;
        foreach (var name in Outputs.Keys)
            if (name.StartsWith(prefix, StringComparison.Ordinal) && int.TryParse(name.AsSpan(prefix.Length), System.Globalization.NumberStyles.None, null, out int k))
                last = Math.Max(last, k);
        string penultimate = prefix + (last - 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (last < 1 || !Outputs.ContainsKey(penultimate))
            throw new InvalidDataException(
                $"The {ComponentName} model '{ModelPath}' has no penultimate hidden state: SDXL-family models condition on the output of " +
                $"the last encoder layer but one, which an export names hidden_states.0 … hidden_states.L (this model declares {string.Join(", ", Outputs.Values)}). " +
                "Export the text encoders with their hidden states (Optimum does so for SDXL).");
        return penultimate;
    }

    /// <summary>Which hidden state this encoder gives as its per-token embeddings.</summary>
    public TextEncoderLayer Layer { get; }

    /// <summary>The output read as the per-token embeddings.</summary>
    public string HiddenStateName => _hiddenName;

    /// <summary>The pooled output (<c>text_embeds</c> or <c>pooler_output</c>), or null when the model has none.</summary>
    public string? PooledName => _pooledName;

    /// <summary>The pooled width P when the model fixes it, else 0 (also 0 without a pooled output).</summary>
    public int PooledWidth { get; private set; }

    /// <summary>The tokenizer that turns prompts into ids.</summary>
    public ClipTokenizer Tokenizer { get; }

    /// <summary>Token positions per prompt (77).</summary>
    public int SequenceLength => Tokenizer.MaxLength;

    /// <summary>The embedding width D, or 0 until the first run when the model leaves it symbolic.</summary>
    public int EmbeddingWidth { get; private set; }

    private long _runs, _rows;

    /// <summary>Text-encoder runs so far (one per <see cref="Encode"/> call with prompts); for diagnostics and tests.</summary>
    public long RunCount => Interlocked.Read(ref _runs);

    /// <summary>Prompts encoded so far, over all runs.</summary>
    public long EncodedPromptCount => Interlocked.Read(ref _rows);

    /// <summary>Encodes prompts into [N, 77·k, D] embeddings, flattened (the pooled output is not read).</summary>
    public float[] Encode(IReadOnlyList<string> prompts, CancellationToken cancellationToken = default, ILogger? logger = null,
        IReadOnlyList<TextOwner>? owners = null) => EncodeWithPooled(prompts, cancellationToken, logger, owners).Hidden;

    /// <summary>
    /// Tokenizes prompts into chunks (<see cref="PromptChunker"/>): a plain prompt as one run, a prompt in the attention
    /// syntax as its parsed runs.
    /// </summary>
    /// <param name="prompts">The prompts; null entries are not allowed.</param>
    /// <param name="owners">Whose each prompt is (null: by position), for the messages.</param>
    /// <param name="logger">Receives a note (Information) for each prompt of more than one chunk and for each image
    /// prompt that has no tokens, and a warning for each prompt cut at <see cref="PromptChunker.MaxChunks"/> chunks; null for none.</param>
    /// <param name="checkChunks">Called with each prompt's chunks before anything runs; it throws to refuse them (the UNet's
    /// sequence axis); null for none.</param>
    /// <param name="oneChunk">Cut every prompt to one chunk of 77 positions instead of splitting it, as diffusers' SD3 and FLUX
    /// pipelines truncate their CLIP prompts (the T5 encoder reads the rest); a note names each prompt cut.</param>
    /// <exception cref="ArgumentException"><paramref name="owners"/> does not have one entry per prompt, or <paramref name="checkChunks"/> refuses a prompt.</exception>
    public PromptChunks[] Tokenize(IReadOnlyList<string> prompts, IReadOnlyList<TextOwner>? owners, ILogger? logger = null,
        Action<TextOwner, PromptChunks>? checkChunks = null, bool oneChunk = false)
    {
        if (oneChunk) return TokenizeOneChunk(prompts, owners, logger);
        ArgumentNullException.ThrowIfNull(prompts);
        if (owners is not null && owners.Count != prompts.Count)
            throw new ArgumentException($"{owners.Count} owners for {prompts.Count} prompts.", nameof(owners));
        var chunks = new PromptChunks[prompts.Count];
        for (int i = 0; i < chunks.Length; i++)
        {
            var owner = owners?[i] ?? TextOwner.InBatch(i);
            var prompt = prompts[i] ?? throw new ArgumentNullException(nameof(prompts), $"{owner.SentenceStart} is null.");
            var fragments = PromptAttention.IsPlain(prompt) ? [new PromptFragment(prompt, 1.0)] : PromptAttention.Parse(prompt);
            chunks[i] = PromptChunker.Split(Tokenizer, fragments);
            checkChunks?.Invoke(owner, chunks[i]);
            if (logger is not null) Note(logger, prompt, chunks[i], owner);
        }
        return chunks;
    }

    /// <summary>
    /// Each prompt as one chunk: a plain prompt as <see cref="ClipTokenizer.Encode(string, Span{int}, out bool)"/> cuts it (the
    /// first 75 tokens, as the tokenizer's truncation in diffusers), a prompt in the attention syntax as its first chunk.
    /// </summary>
    private PromptChunks[] TokenizeOneChunk(IReadOnlyList<string> prompts, IReadOnlyList<TextOwner>? owners, ILogger? logger)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        var chunks = new PromptChunks[prompts.Count];
        int length = SequenceLength;
        for (int i = 0; i < chunks.Length; i++)
        {
            var owner = owners?[i] ?? TextOwner.InBatch(i);
            var prompt = prompts[i] ?? throw new ArgumentNullException(nameof(prompts), $"{owner.SentenceStart} is null.");
            bool cut;
            if (PromptAttention.IsPlain(prompt))
            {
                var ids = new int[length];
                int tokens = Tokenizer.Encode(prompt, ids, out cut);
                chunks[i] = new PromptChunks(ids, null, 1, tokens);
            }
            else
            {
                var all = PromptChunker.Split(Tokenizer, PromptAttention.Parse(prompt));
                cut = all.ChunkCount > 1;
                chunks[i] = new PromptChunks(all.Ids[..length], all.Weights?[..length], 1, all.TokenCount);
            }
            if (logger is null) continue;
            if (cut)
                logger.LogWarning("{Owner} has more than {Kept} tokens; {Component} reads only the first {Kept} (the T5 encoder reads the whole prompt): \"{Prompt}\"",
                    owner.SentenceStart, length - 2, ComponentName, length - 2, prompt.Length > 80 ? prompt[..80] + "…" : prompt);
            else if (chunks[i].TokenCount == 0 && owner.IsImagePrompt)
                Note(logger, prompt, chunks[i], owner);
        }
        return chunks;
    }

    /// <summary>
    /// Encodes prompts into per-token embeddings and, when the model has a pooled output, pooled embeddings, flattened:
    /// each prompt's k chunks (<see cref="PromptChunker"/>) are encoded as k rows of one run, each chunk's emphasis applied
    /// to its own [77, D] block, and the chunks' hidden states follow each other ([77·k, D], AUTOMATIC1111's
    /// <c>torch.hstack(zs)</c>); the pooled embedding [P] is the first chunk's (A1111's <c>zs[0].pooled</c>). A plain
    /// prompt of at most 75 tokens is one chunk, encoded exactly as before chunking.
    /// </summary>
    /// <param name="prompts">The prompts; null entries are not allowed, empty ones are (the unconditional prompt).</param>
    /// <param name="cancellationToken">Checked before the run, and terminates a running one.</param>
    /// <param name="logger">Receives the notes of <see cref="Tokenize"/>; null for none.</param>
    /// <param name="owners">Whose each prompt is, for those messages (one per prompt); null names them by their 1-based
    /// position in the batch and takes none for an image's prompt.</param>
    /// <param name="checkChunks">See <see cref="Tokenize"/>.</param>
    /// <exception cref="ArgumentException"><paramref name="owners"/> does not have one entry per prompt, or <paramref name="checkChunks"/> refuses a prompt.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public EncodedTexts EncodeWithPooled(IReadOnlyList<string> prompts, CancellationToken cancellationToken = default, ILogger? logger = null,
        IReadOnlyList<TextOwner>? owners = null, Action<TextOwner, PromptChunks>? checkChunks = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) return new EncodedTexts([], null, []);
        ThrowIfDisposed();
        return EncodeChunks(Tokenize(prompts, owners, logger, checkChunks), cancellationToken);
    }

    /// <summary>Encodes tokenized prompts (<see cref="Tokenize"/>) in one run of Σk rows; see <see cref="EncodeWithPooled"/>.</summary>
    public EncodedTexts EncodeChunks(IReadOnlyList<PromptChunks> prompts, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) return new EncodedTexts([], null, []);
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        int len = SequenceLength, rows = 0;
        var chunkCounts = new int[prompts.Count];
        bool weighted = false;
        for (int i = 0; i < chunkCounts.Length; i++)
        {
            chunkCounts[i] = prompts[i].ChunkCount;
            rows += chunkCounts[i];
            weighted |= prompts[i].Weights is not null;
        }
        var ids = new int[rows * len];
        float[]? weights = weighted ? CreateUnitWeights(rows * len) : null; // per token, only when a prompt has a weight other than 1
        for (int i = 0, offset = 0; i < chunkCounts.Length; offset += prompts[i++].Ids.Length)
        {
            prompts[i].Ids.CopyTo(ids, offset);
            prompts[i].Weights?.CopyTo(weights!, offset);
        }
        using var input = OrtTensor.Create(_ids.ElementType, rows, len);
        input.Write(ids);
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        Interlocked.Increment(ref _runs);
        Interlocked.Add(ref _rows, prompts.Count);
        IDisposableReadOnlyCollection<OrtValue> outputs;
        try
        {
            outputs = Run(runOptions, ["input_ids"], [input.Value], _outputNames);
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            // A run stopped through RunOptions.Terminate fails with ONNX Runtime's own exception; callers expect
            // cancellation to look like cancellation, as the UNet loop and the VAE decoding already report it.
            throw new OperationCanceledException("Text encoding was cancelled.", cancellationToken);
        }
        using var _ = outputs;
        var info = outputs[0].GetTensorTypeAndShape();
        var shape = info.Shape;
        if (shape.Length != 3 || shape[0] != rows || shape[1] != len)
            throw new InvalidDataException($"The {ComponentName} model '{ModelPath}' returned {_hiddenName} of shape [{string.Join(", ", shape)}], expected [{rows}, {len}, D].");
        EmbeddingWidth = (int)shape[2];
        var result = new float[rows * len * EmbeddingWidth];
        OrtTensor.ReadFloats(outputs[0], info.ElementDataType, result);
        if (weights is not null) ApplyEmphasis(result, weights, rows, len, EmbeddingWidth);
        float[]? pooled = null;
        if (_pooledName is not null)
        {
            var pooledInfo = outputs[1].GetTensorTypeAndShape();
            var pooledShape = pooledInfo.Shape;
            if (pooledShape.Length != 2 || pooledShape[0] != rows)
                throw new InvalidDataException($"The {ComponentName} model '{ModelPath}' returned {_pooledName} of shape [{string.Join(", ", pooledShape)}], expected [{rows}, P].");
            PooledWidth = (int)pooledShape[1];
            var all = new float[rows * PooledWidth];
            OrtTensor.ReadFloats(outputs[1], pooledInfo.ElementDataType, all);
            pooled = rows == prompts.Count ? all : FirstChunkRows(all, chunkCounts, PooledWidth);
        }
        return new EncodedTexts(result, pooled, chunkCounts);
    }

    /// <summary>Each prompt's first chunk's row of <paramref name="all"/> (one row of <paramref name="width"/> per chunk).</summary>
    private static float[] FirstChunkRows(float[] all, int[] chunkCounts, int width)
    {
        var first = new float[chunkCounts.Length * width];
        for (int i = 0, row = 0; i < chunkCounts.Length; row += chunkCounts[i++])
            all.AsSpan(row * width, width).CopyTo(first.AsSpan(i * width, width));
        return first;
    }

    private static float[] CreateUnitWeights(int length)
    {
        var weights = new float[length];
        Array.Fill(weights, 1f);
        return weights;
    }

    /// <summary>
    /// AUTOMATIC1111's emphasis (<c>FrozenCLIPEmbedderWithCustomWordsBase.process_tokens</c>): each position's hidden state is
    /// multiplied by its token's weight, then the prompt's whole [77, D] block is scaled back to its original mean. Rows
    /// whose weights are all 1 are left exactly as the encoder gave them; a block whose weighted mean is 0 (every weight 0)
    /// keeps the weighted values, since there is no scale that restores the mean.
    /// </summary>
    internal static void ApplyEmphasis(Span<float> hidden, ReadOnlySpan<float> weights, int rows, int length, int width)
    {
        for (int r = 0; r < rows; r++)
        {
            var w = weights.Slice(r * length, length);
            if (!w.ContainsAnyExcept(1f)) continue;
            var block = hidden.Slice(r * length * width, length * width);
            double before = Sum(block);
            for (int p = 0; p < length; p++)
                System.Numerics.Tensors.TensorPrimitives.Multiply(block.Slice(p * width, width), w[p], block.Slice(p * width, width));
            double after = Sum(block);
            if (after != 0 && double.IsFinite(after)) System.Numerics.Tensors.TensorPrimitives.Multiply(block, (float)(before / after), block);
        }

        static double Sum(ReadOnlySpan<float> values)
        {
            double sum = 0;
            foreach (float v in values) sum += v;
            return sum;
        }
    }

    /// <summary>The notes on one prompt: cut at the chunk limit (Warning), more than one chunk (Information), or an image
    /// prompt with no tokens (Information).</summary>
    private void Note(ILogger logger, string prompt, PromptChunks chunks, TextOwner owner)
    {
        int kept = PromptChunker.MaxChunks * (SequenceLength - 2);
        if (chunks.Truncated)
            logger.LogWarning("{Owner} has more than {Kept} tokens; only the first {Chunks} chunks ({Kept} tokens at most) are used: \"{Prompt}\"",
                owner.SentenceStart, kept, PromptChunker.MaxChunks, kept, prompt.Length > 80 ? prompt[..80] + "…" : prompt);
        else if (chunks.ChunkCount > 1)
            logger.LogInformation("{Owner} has {Tokens} tokens in {Chunks} chunks (each at most {Kept} tokens, split at BREAK and, as AUTOMATIC1111 does, after a comma near a chunk's end); each chunk is encoded with its own start and end tokens and the embeddings are concatenated: \"{Prompt}\"",
                owner.SentenceStart, chunks.TokenCount, chunks.ChunkCount, SequenceLength - 2, prompt.Length > 80 ? prompt[..80] + "…" : prompt);
        else if (chunks.TokenCount == 0 && owner.IsImagePrompt)
            logger.LogInformation("{Owner} is {What}, so its image is unconditional: generated with no prompt to follow.",
                owner.SentenceStart, prompt.Length == 0 ? "empty" : "only spaces");
    }
}

/// <summary>Which hidden state of a CLIP text encoder conditions the UNet.</summary>
internal enum TextEncoderLayer
{
    /// <summary><c>last_hidden_state</c>: SD 1.x and 2.x.</summary>
    Last,

    /// <summary><c>hidden_states[-2]</c>, the last layer but one: SDXL's two encoders.</summary>
    Penultimate,
}

/// <summary>
/// One encoder run's outputs: per-token embeddings, prompt i's [77·kᵢ·D] after prompt i − 1's, and, when the model has them,
/// pooled embeddings [N·P] (each prompt's first chunk's); <paramref name="ChunkCounts"/> gives each kᵢ.
/// </summary>
internal sealed record EncodedTexts(float[] Hidden, float[]? Pooled, int[] ChunkCounts);

using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.TextEncoding;

/// <summary>
/// A CLIP text encoder (<c>text_encoder/model.onnx</c>, or SDXL's <c>text_encoder_2/model.onnx</c>): prompts → token ids →
/// per-token embeddings [N, 77, D] that condition every UNet call, and, when the model has one, a pooled embedding [N, P].
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
/// Prompts longer than the tokenizer's 77 positions (BOS + 75 tokens + EOS) are truncated, as diffusers'
/// pipelines do, and a warning names the prompt; chunking is not done because CLIP's position embeddings
/// stop at 77. An image prompt with no tokens (empty, or only spaces) is encoded as the empty prompt, which makes the
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

    /// <summary>Encodes prompts into [N, 77, D] embeddings, flattened (the pooled output is not read).</summary>
    public float[] Encode(IReadOnlyList<string> prompts, CancellationToken cancellationToken = default, ILogger? logger = null,
        IReadOnlyList<TextOwner>? owners = null) => EncodeWithPooled(prompts, cancellationToken, logger, owners).Hidden;

    /// <summary>Encodes prompts into [N, 77, D] embeddings and, when the model has a pooled output, [N, P] pooled embeddings, flattened.</summary>
    /// <param name="prompts">The prompts; null entries are not allowed, empty ones are (the unconditional prompt).</param>
    /// <param name="cancellationToken">Checked before the run, and terminates a running one.</param>
    /// <param name="logger">Receives a warning for each prompt that is truncated, and a note (Information) for each image
    /// prompt that has no tokens; null for none.</param>
    /// <param name="owners">Whose each prompt is, for those messages (one per prompt); null names them by their 1-based
    /// position in the batch and takes none for an image's prompt.</param>
    /// <exception cref="ArgumentException"><paramref name="owners"/> does not have one entry per prompt.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public EncodedTexts EncodeWithPooled(IReadOnlyList<string> prompts, CancellationToken cancellationToken = default, ILogger? logger = null,
        IReadOnlyList<TextOwner>? owners = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (owners is not null && owners.Count != prompts.Count)
            throw new ArgumentException($"{owners.Count} owners for {prompts.Count} prompts.", nameof(owners));
        if (prompts.Count == 0) return new EncodedTexts([], null);
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        int n = prompts.Count, len = SequenceLength;
        var ids = new int[n * len];
        float[]? weights = null; // per token, only when a prompt uses the attention syntax
        for (int i = 0; i < n; i++)
        {
            var prompt = prompts[i] ?? throw new ArgumentNullException(nameof(prompts), $"{(owners?[i] ?? TextOwner.InBatch(i)).SentenceStart} is null.");
            int tokens;
            bool truncated;
            if (PromptAttention.IsPlain(prompt))
                tokens = Tokenizer.Encode(prompt, ids.AsSpan(i * len, len), out truncated);
            else
            {
                weights ??= CreateUnitWeights(n * len);
                tokens = Tokenizer.EncodeWeighted(PromptAttention.Parse(prompt), ids.AsSpan(i * len, len), weights.AsSpan(i * len, len), out truncated);
            }
            if (logger is not null) Note(logger, prompt, tokens, truncated, owners?[i] ?? TextOwner.InBatch(i));
        }
        using var input = OrtTensor.Create(_ids.ElementType, n, len);
        input.Write(ids);
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        Interlocked.Increment(ref _runs);
        Interlocked.Add(ref _rows, n);
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
        if (shape.Length != 3 || shape[0] != n || shape[1] != len)
            throw new InvalidDataException($"The {ComponentName} model '{ModelPath}' returned {_hiddenName} of shape [{string.Join(", ", shape)}], expected [{n}, {len}, D].");
        EmbeddingWidth = (int)shape[2];
        var result = new float[n * len * EmbeddingWidth];
        OrtTensor.ReadFloats(outputs[0], info.ElementDataType, result);
        if (weights is not null) ApplyEmphasis(result, weights, n, len, EmbeddingWidth);
        float[]? pooled = null;
        if (_pooledName is not null)
        {
            var pooledInfo = outputs[1].GetTensorTypeAndShape();
            var pooledShape = pooledInfo.Shape;
            if (pooledShape.Length != 2 || pooledShape[0] != n)
                throw new InvalidDataException($"The {ComponentName} model '{ModelPath}' returned {_pooledName} of shape [{string.Join(", ", pooledShape)}], expected [{n}, P].");
            PooledWidth = (int)pooledShape[1];
            pooled = new float[n * PooledWidth];
            OrtTensor.ReadFloats(outputs[1], pooledInfo.ElementDataType, pooled);
        }
        return new EncodedTexts(result, pooled);
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

    /// <summary>The notes on one prompt: truncated (Warning), or an image prompt with no tokens (Information).</summary>
    private void Note(ILogger logger, string prompt, int tokens, bool truncated, TextOwner owner)
    {
        int kept = SequenceLength - 2;
        if (truncated)
            logger.LogWarning("{Owner} has more than {Kept} tokens; only the first {Kept} are used (CLIP reads {Positions} positions): \"{Prompt}\"",
                owner.SentenceStart, kept, kept, SequenceLength, prompt.Length > 80 ? prompt[..80] + "…" : prompt);
        else if (tokens == 0 && owner.IsImagePrompt)
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

/// <summary>One encoder run's outputs: per-token embeddings [N·77·D] and, when the model has them, pooled embeddings [N·P].</summary>
internal sealed record EncodedTexts(float[] Hidden, float[]? Pooled);

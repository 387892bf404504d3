using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.TextEncoding;

/// <summary>
/// CLIP text encoder (<c>text_encoder/model.onnx</c>): prompts → token ids → per-token embeddings
/// <c>last_hidden_state</c> [N, 77, D] that condition every UNet call. The id input may be int32 (diffusers'
/// export) or int64 (Optimum's); D is 768 for SD 1.x and 1024 for SD 2.x.
/// </summary>
/// <remarks>
/// Prompts longer than the tokenizer's 77 positions (BOS + 75 tokens + EOS) are truncated, as diffusers'
/// pipelines do, and a warning names the prompt; chunking is not done because CLIP's position embeddings
/// stop at 77. An image prompt with no tokens (empty, or only spaces) is encoded as the empty prompt, which makes the
/// image unconditional; that is logged too (Information), since it is usually a missing value rather than a choice.
/// Both notes name each text by its <see cref="TextOwner"/>: the caller's words for it (a data row, an image), so that
/// this is the one place where prompts are checked and the messages are made.
/// </remarks>
internal sealed class TextEncoder : OnnxModelComponent
{
    private readonly TensorSpec _ids;
    private readonly string _hiddenName;

    /// <summary>Loads the encoder and checks its contract.</summary>
    /// <exception cref="InvalidDataException">The model does not have <c>input_ids</c> (int32/int64, rank 2) or a float output of rank 3.</exception>
    public TextEncoder(string modelPath, ClipTokenizer tokenizer, OnnxSessionFactory sessions)
        : base("text_encoder", modelPath, sessions)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(tokenizer);
            Tokenizer = tokenizer;
            _ids = Require(true, "input_ids", [TensorElementType.Int32, TensorElementType.Int64], 2);
            CheckDimension(_ids, 1, tokenizer.MaxLength, "sequence length");
            _hiddenName = FirstOutput("last_hidden_state") ?? Outputs.Values.FirstOrDefault(o => o.Rank == 3)?.Name
                ?? throw new InvalidDataException($"The text_encoder model '{modelPath}' has no 'last_hidden_state' output of rank 3 (it declares {string.Join(", ", Outputs.Values)}).");
            var hidden = Require(false, _hiddenName, [TensorElementType.Float, TensorElementType.Float16], 3);
            EmbeddingWidth = hidden.Dimensions[2] > 0 ? hidden.Dimensions[2] : 0;
            foreach (var extra in Inputs.Keys.Where(k => k != "input_ids"))
                if (extra != "attention_mask")
                    throw new InvalidDataException($"The text_encoder model '{modelPath}' needs an input '{extra}' that the SD contract does not have (only input_ids).");
        }
        catch
        {
            Dispose(); // release the session now rather than at finalization
            throw;
        }
    }

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

    /// <summary>Encodes prompts into [N, 77, D] embeddings, flattened.</summary>
    /// <param name="prompts">The prompts; null entries are not allowed, empty ones are (the unconditional prompt).</param>
    /// <param name="cancellationToken">Checked before the run, and terminates a running one.</param>
    /// <param name="logger">Receives a warning for each prompt that is truncated, and a note (Information) for each image
    /// prompt that has no tokens; null for none.</param>
    /// <param name="owners">Whose each prompt is, for those messages (one per prompt); null names them by their 1-based
    /// position in the batch and takes none for an image's prompt.</param>
    /// <exception cref="ArgumentException"><paramref name="owners"/> does not have one entry per prompt.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public float[] Encode(IReadOnlyList<string> prompts, CancellationToken cancellationToken = default, ILogger? logger = null,
        IReadOnlyList<TextOwner>? owners = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (owners is not null && owners.Count != prompts.Count)
            throw new ArgumentException($"{owners.Count} owners for {prompts.Count} prompts.", nameof(owners));
        if (prompts.Count == 0) return [];
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        int n = prompts.Count, len = SequenceLength;
        var ids = new int[n * len];
        for (int i = 0; i < n; i++)
        {
            var prompt = prompts[i] ?? throw new ArgumentNullException(nameof(prompts), $"{(owners?[i] ?? TextOwner.InBatch(i)).SentenceStart} is null.");
            int tokens = Tokenizer.Encode(prompt, ids.AsSpan(i * len, len), out bool truncated);
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
            outputs = Run(runOptions, ["input_ids"], [input.Value], [_hiddenName]);
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
            throw new InvalidDataException($"The text_encoder model '{ModelPath}' returned {_hiddenName} of shape [{string.Join(", ", shape)}], expected [{n}, {len}, D].");
        EmbeddingWidth = (int)shape[2];
        var result = new float[n * len * EmbeddingWidth];
        OrtTensor.ReadFloats(outputs[0], info.ElementDataType, result);
        return result;
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

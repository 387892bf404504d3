using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.TextEncoding;

/// <summary>
/// A T5 encoder (T5-XXL for SD3's <c>text_encoder_3/model.onnx</c> and FLUX.1's <c>text_encoder_2/model.onnx</c>): prompts →
/// SentencePiece ids (<see cref="T5Tokenizer"/>) → per-token embeddings [N, T, D] (<c>last_hidden_state</c>; D = 4096 for
/// T5-XXL), T the pipeline's maximum sequence length (256 or 512 in diffusers).
/// </summary>
/// <remarks>
/// <para>Tokenized as diffusers' SD3 and FLUX pipelines ask <c>T5TokenizerFast</c> (<c>padding="max_length"</c>,
/// <c>max_length=T</c>, <c>truncation=True</c>): the content ids, the end-of-sequence id 1, then the padding id 0 up to T;
/// a longer prompt keeps its first T − 1 ids and the end id, and a warning names its owner and how many tokens were
/// dropped (diffusers warns the same way). Every prompt is one row of one run, and no attention mask is given
/// (diffusers' <c>_get_t5_prompt_embeds</c> passes none): a model that declares <c>attention_mask</c> gets all ones,
/// which is what T5 assumes without one.</para>
/// <para>Contract, checked at load: <c>input_ids</c> int32 or int64 of rank 2 [B, T] (T fixed or symbolic); the output
/// <c>last_hidden_state</c>, or the model's single output, float or float16 of rank 3 [B, T, D]. float16 outputs are
/// converted to float; NaN or ±∞ in the output is refused (<see cref="NonFiniteLatentsException"/>).</para>
/// </remarks>
internal sealed class T5TextEncoder : OnnxModelComponent
{
    /// <summary>The longest sequence accepted: diffusers' SD3 and FLUX pipelines refuse a <c>max_sequence_length</c> above 512.</summary>
    public const int MaxSequenceLength = Pipeline.SettingLimits.MaxT5Tokens;

    private const string IdsName = "input_ids", MaskName = "attention_mask";
    private readonly TensorSpec _ids;
    private readonly TensorSpec? _mask;
    private readonly string _hiddenName;
    private readonly int _declaredWidth;
    private long _runs;

    /// <summary>Loads the encoder <paramref name="componentName"/> (<c>text_encoder_3</c> or <c>text_encoder_2</c>) and checks its contract.</summary>
    /// <exception cref="FileNotFoundException">The model file does not exist.</exception>
    /// <exception cref="InvalidDataException">The model does not have the contract above; the message names the file and what it declares.</exception>
    public T5TextEncoder(string componentName, string modelPath, T5Tokenizer tokenizer, OnnxSessionFactory sessions)
        : base(componentName, modelPath, sessions)
    {
        try
        {
            ArgumentNullException.ThrowIfNull(tokenizer);
            Tokenizer = tokenizer;
            _ids = Require(true, IdsName, [TensorElementType.Int32, TensorElementType.Int64], 2);
            FixedSequenceLength = Math.Max(_ids.Dimensions[1], 0);
            if (Inputs.ContainsKey(MaskName)) _mask = Require(true, MaskName, [TensorElementType.Int32, TensorElementType.Int64], 2);
            foreach (var extra in Inputs.Keys)
                if (extra is not (IdsName or MaskName))
                    throw new InvalidDataException($"The {componentName} model '{modelPath}' needs an input '{extra}' that the T5 encoder contract does not have (only input_ids, and optionally attention_mask).");
            _hiddenName = FirstOutput("last_hidden_state") ?? (Outputs.Count == 1 ? Outputs.Keys.First()
                : throw new InvalidDataException($"The {componentName} model '{modelPath}' has no 'last_hidden_state' output and more than one other ({string.Join(", ", Outputs.Values)}); expected T5's last_hidden_state [B, T, D]."));
            var hidden = Require(false, _hiddenName, [TensorElementType.Float, TensorElementType.Float16], 3);
            EmbeddingWidth = _declaredWidth = Math.Max(hidden.Dimensions[2], 0);
        }
        catch
        {
            Dispose(); // release the session now rather than at finalization
            throw;
        }
    }

    /// <summary>The tokenizer that turns prompts into ids.</summary>
    public T5Tokenizer Tokenizer { get; }

    /// <summary>The embedding width D, or 0 until the first run when the model leaves it symbolic.</summary>
    public int EmbeddingWidth { get; private set; }

    /// <summary>The sequence length T the model fixes on <c>input_ids</c>, or 0 when it is dynamic.</summary>
    public int FixedSequenceLength { get; }

    /// <summary>Encoder runs so far (one per <see cref="Encode"/> call with prompts); for diagnostics and tests.</summary>
    public long RunCount => Interlocked.Read(ref _runs);

    /// <summary>
    /// Encodes prompts into [N, T, D] embeddings, flattened, T = <paramref name="maxSequenceLength"/>, in one run.
    /// </summary>
    /// <param name="prompts">The prompts; null entries are not allowed, empty ones are (the end id and padding).</param>
    /// <param name="maxSequenceLength">T: token positions per prompt, 1 to <see cref="MaxSequenceLength"/>, and the model's
    /// own when it fixes one.</param>
    /// <param name="cancellationToken">Checked before the run, and terminates a running one.</param>
    /// <param name="logger">Receives a warning for each prompt cut to T positions; null for none.</param>
    /// <param name="owners">Whose each prompt is, for those warnings (one per prompt); null names them by their 1-based position.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxSequenceLength"/> is outside 1 to 512.</exception>
    /// <exception cref="ArgumentException">The model fixes another sequence length, or <paramref name="owners"/> does not have one entry per prompt.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <exception cref="NonFiniteLatentsException">The model returned NaN or ±Infinity.</exception>
    public float[] Encode(IReadOnlyList<string> prompts, int maxSequenceLength, CancellationToken cancellationToken = default, ILogger? logger = null,
        IReadOnlyList<TextOwner>? owners = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ThrowIfDisposed();
        CheckSequenceLength(maxSequenceLength);
        if (owners is not null && owners.Count != prompts.Count)
            throw new ArgumentException($"{owners.Count} owners for {prompts.Count} prompts.", nameof(owners));
        if (prompts.Count == 0) return [];
        cancellationToken.ThrowIfCancellationRequested();

        int rows = prompts.Count, length = maxSequenceLength;
        var ids = new int[rows * length];
        for (int i = 0; i < rows; i++)
        {
            var owner = owners?[i] ?? TextOwner.InBatch(i);
            var prompt = prompts[i] ?? throw new ArgumentNullException(nameof(prompts), $"{owner.SentenceStart} is null.");
            int dropped = Tokenizer.Encode(prompt, ids.AsSpan(i * length, length));
            if (dropped > 0 && logger is not null)
                logger.LogWarning("{Owner} has {Tokens} T5 tokens, more than the {Kept} that fit in a sequence of {Length} with its end token; the last {Dropped} are dropped (raise the maximum sequence length, at most {Max}): \"{Prompt}\"",
                    owner.SentenceStart, length - 1 + dropped, length - 1, length, dropped, MaxSequenceLength, prompt.Length > 80 ? prompt[..80] + "…" : prompt);
        }

        using var input = OrtTensor.Create(_ids.ElementType, rows, length);
        input.Write(ids);
        using var mask = _mask is null ? null : OrtTensor.Create(_mask.ElementType, rows, length);
        mask?.Fill(1);
        string[] names = mask is null ? [IdsName] : [IdsName, MaskName];
        OrtValue[] values = mask is null ? [input.Value] : [input.Value, mask.Value];
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        Interlocked.Increment(ref _runs);
        IDisposableReadOnlyCollection<OrtValue> outputs;
        try
        {
            outputs = Run(runOptions, names, values, [_hiddenName]);
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("Text encoding was cancelled.", cancellationToken);
        }
        using var _ = outputs;
        var info = outputs[0].GetTensorTypeAndShape();
        var shape = info.Shape;
        if (shape.Length != 3 || shape[0] != rows || shape[1] != length || shape[2] <= 0 || (_declaredWidth > 0 && shape[2] != _declaredWidth))
            throw new InvalidDataException($"The {ComponentName} model '{ModelPath}' returned {_hiddenName} of shape [{string.Join(", ", shape)}], expected [{rows}, {length}, {(_declaredWidth > 0 ? _declaredWidth : "D")}].");
        EmbeddingWidth = (int)shape[2];
        var result = new float[rows * length * EmbeddingWidth];
        OrtTensor.ReadFloats(outputs[0], info.ElementDataType, result);
        NonFiniteLatentsException.ThrowIfNonFinite(result, DiffusionStage.EncodingText, "T5 text encoder output", 0, rows, null, length * EmbeddingWidth,
            source: new NonFiniteSource(this, inputIsIds: true));
        return result;
    }

    /// <summary>Refuses a sequence length outside 1 to 512, or other than the one the model fixes.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Outside 1 to 512.</exception>
    /// <exception cref="ArgumentException">The model fixes another length.</exception>
    public void CheckSequenceLength(int maxSequenceLength)
    {
        if (maxSequenceLength is < 1 or > MaxSequenceLength)
            throw new ArgumentOutOfRangeException(nameof(maxSequenceLength), maxSequenceLength,
                $"The maximum sequence length of the {ComponentName} model '{ModelPath}' (T5) must be from 1 to {MaxSequenceLength} tokens (diffusers allows at most {MaxSequenceLength}); got {maxSequenceLength}.");
        if (FixedSequenceLength > 0 && maxSequenceLength != FixedSequenceLength)
            throw new ArgumentException(
                $"The {ComponentName} model '{ModelPath}' fixes input_ids axis 1 (the sequence length) to {FixedSequenceLength}, but a maximum sequence length of {maxSequenceLength} was asked for. " +
                $"Use --max-sequence-length {FixedSequenceLength} (DiffusionRuntimeOptions.MaxSequenceLength), the model's value, or an export with a dynamic sequence axis.",
                nameof(maxSequenceLength));
    }
}

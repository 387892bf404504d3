using Microsoft.Extensions.Logging;

namespace MLNet.Diffusion.TextEncoding;

/// <summary>
/// A model's text conditioning: one text encoder (SD 1.x and 2.x; the SDXL refiner's <c>text_encoder_2</c>) or two
/// (SDXL base and Turbo), each with its own tokenizer, and for the flow-matching transformers a T5 encoder; how their
/// outputs are assembled is the model's <see cref="ConditioningLayout"/>. For the CLIP layout every prompt is tokenized and
/// encoded by each; the per-token embeddings are concatenated on the last axis in folder order ([N, 77·k, D₁ + D₂] for
/// prompts of k chunks), and the pooled embedding is the last encoder's (SDXL: <c>text_encoder_2</c>'s <c>text_embeds</c>),
/// as diffusers' <c>StableDiffusionXLPipeline.encode_prompt</c> builds <c>prompt_embeds</c> and <c>pooled_prompt_embeds</c>.
/// </summary>
/// <remarks>
/// Only the first encoder writes the notes on a prompt (truncation, an empty image prompt): the tokenizers share CLIP's
/// vocabulary and length, so a second note would say the same thing twice.
/// </remarks>
internal sealed class PromptEncoder : IDisposable
{
    /// <summary>Takes ownership of <paramref name="encoders"/> and <paramref name="t5"/> (disposed with this).</summary>
    /// <param name="encoders">The CLIP encoders, in concatenation order.</param>
    /// <param name="layout">How their outputs are assembled.</param>
    /// <param name="t5">The T5 encoder (SD3, FLUX.1), or null (SD3 without T5: zeros take its place).</param>
    /// <param name="jointWidth">The transformer's conditioning width J (<c>joint_attention_dim</c>) when the model fixes it,
    /// else 0 (then T5's width); SD3 without T5 needs it.</param>
    /// <exception cref="InvalidDataException">The encoders' tokenizers have different lengths.</exception>
    public PromptEncoder(IReadOnlyList<TextEncoder> encoders, ConditioningLayout layout = ConditioningLayout.Clip, T5TextEncoder? t5 = null, int jointWidth = 0)
    {
        if (encoders is not { Count: 1 or 2 }) throw new ArgumentException("One or two text encoders are needed.", nameof(encoders));
        Encoders = encoders;
        Layout = layout;
        T5 = t5;
        _jointWidth = jointWidth;
        if (encoders.Count == 2 && encoders[0].SequenceLength != encoders[1].SequenceLength)
            throw new InvalidDataException(
                $"The text encoders read different lengths ({encoders[0].ComponentName}: {encoders[0].SequenceLength} tokens, {encoders[1].ComponentName}: {encoders[1].SequenceLength}); their embeddings cannot be concatenated.");
        if (layout == ConditioningLayout.Flux && t5 is null) throw new ArgumentException("FLUX.1 conditions on T5: the T5 encoder is needed.", nameof(t5));
        if (layout == ConditioningLayout.StableDiffusion3 && encoders.Count != 2)
            throw new InvalidDataException($"Stable Diffusion 3 conditions on two CLIP encoders (text_encoder and text_encoder_2); this folder has {encoders.Count}.");
    }

    private readonly int _jointWidth;

    /// <summary>How the encoders' outputs are assembled.</summary>
    public ConditioningLayout Layout { get; }

    /// <summary>The T5 encoder, or null.</summary>
    public T5TextEncoder? T5 { get; }

    /// <summary>The encoders, in concatenation order.</summary>
    public IReadOnlyList<TextEncoder> Encoders { get; }

    /// <summary>The first encoder: its tokenizer names the sequence length and writes the notes on prompts.</summary>
    public TextEncoder Primary => Encoders[0];

    /// <summary>CLIP's token positions per prompt chunk (77).</summary>
    public int SequenceLength => Primary.SequenceLength;

    /// <summary>
    /// The positions of one prompt's conditioning (one chunk of a CLIP prompt): 77 for the CLIP layout, 77 + T for SD3
    /// (without T5 too: zeros of T positions, as diffusers' <c>_get_t5_prompt_embeds</c> returns them since it sizes them by
    /// <c>max_sequence_length</c>), T for FLUX.1, with T = <paramref name="t5Length"/> T5 tokens.
    /// </summary>
    public int ConditioningLength(int t5Length) => Layout switch
    {
        ConditioningLayout.Clip => SequenceLength,
        ConditioningLayout.StableDiffusion3 => SequenceLength + t5Length,
        _ => t5Length,
    };

    /// <summary>
    /// The conditioning's width: the CLIP encoders' concatenated D₁ (+ D₂), or the joint width J of SD3 and FLUX.1 (the
    /// transformer's, else T5's); 0 while an encoder leaves its width symbolic and has not run.
    /// </summary>
    public int EmbeddingWidth => Layout != ConditioningLayout.Clip ? (_jointWidth > 0 ? _jointWidth : T5?.EmbeddingWidth ?? 0)
        : Encoders.Any(e => e.EmbeddingWidth == 0) ? 0 : Encoders.Sum(e => e.EmbeddingWidth);

    /// <summary>The pooled width P (the last encoder's; SD3: both encoders' together), or 0 when there is no pooled output or
    /// an encoder leaves it symbolic before its first run.</summary>
    public int PooledWidth => Layout == ConditioningLayout.StableDiffusion3
        ? Encoders.Any(e => e.PooledWidth == 0) ? 0 : Encoders.Sum(e => e.PooledWidth)
        : Encoders[^1].PooledWidth;

    /// <summary>Whether the conditioning has a pooled embedding (every encoder that contributes one has a pooled output).</summary>
    public bool HasPooled => Layout == ConditioningLayout.StableDiffusion3 ? Encoders.All(e => e.PooledName is not null) : Encoders[^1].PooledName is not null;

    /// <summary>
    /// Encodes prompts: per-token embeddings, prompt i's [77·kᵢ·(D₁ + D₂)] after prompt i − 1's (kᵢ chunks of 77 positions,
    /// <see cref="Tokenization.PromptChunker"/>), and, when the last encoder has them, [N·P] pooled ones (each prompt's
    /// first chunk's). Both encoders chunk a prompt alike (their tokenizers share CLIP's vocabulary); a difference is refused.
    /// </summary>
    /// <param name="prompts">The prompts.</param>
    /// <param name="cancellationToken">Checked before each encoder run and passed to it.</param>
    /// <param name="logger">Receives the first encoder's notes on prompts.</param>
    /// <param name="owners">Whose each prompt is, for those notes.</param>
    /// <param name="checkChunks">Called with each prompt's chunks before any encoder runs; it throws to refuse them.</param>
    /// <exception cref="ArgumentException">A prompt is too long, or <paramref name="checkChunks"/> refuses it.</exception>
    /// <param name="t5Length">T5's tokens per prompt (SD3 and FLUX.1: the max sequence length; ignored otherwise).</param>
    public EncodedTexts Encode(IReadOnlyList<string> prompts, CancellationToken cancellationToken = default, ILogger? logger = null,
        IReadOnlyList<TextOwner>? owners = null, Action<TextOwner, Tokenization.PromptChunks>? checkChunks = null, int t5Length = 0)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) return new EncodedTexts([], null, []);
        if (Layout != ConditioningLayout.Clip) return EncodeJoint(prompts, cancellationToken, logger, owners, t5Length);
        var tokens = Primary.Tokenize(prompts, owners, logger, checkChunks);
        var tokens2 = Encoders.Count == 2 ? Encoders[1].Tokenize(prompts, owners) : null;
        for (int i = 0; tokens2 is not null && i < tokens.Length; i++)
            if (tokens[i].ChunkCount != tokens2[i].ChunkCount)
                throw new InvalidDataException(
                    $"{(owners?[i] ?? TextOwner.InBatch(i)).SentenceStart} takes {tokens[i].ChunkCount} chunks with {Primary.ComponentName}'s tokenizer and {tokens2[i].ChunkCount} with " +
                    $"{Encoders[1].ComponentName}'s; their embeddings cannot be concatenated. The two tokenizers should share CLIP's vocabulary.");
        var first = Primary.EncodeChunks(tokens, cancellationToken);
        if (tokens2 is null) return first;
        var second = Encoders[1].EncodeChunks(tokens2, cancellationToken);
        int rows = first.ChunkCounts.Sum() * SequenceLength;
        int d1 = first.Hidden.Length / rows, d2 = second.Hidden.Length / rows;
        var hidden = new float[rows * (d1 + d2)];
        for (int r = 0; r < rows; r++)
        {
            first.Hidden.AsSpan(r * d1, d1).CopyTo(hidden.AsSpan(r * (d1 + d2), d1));
            second.Hidden.AsSpan(r * d2, d2).CopyTo(hidden.AsSpan(r * (d1 + d2) + d1, d2));
        }
        return new EncodedTexts(hidden, second.Pooled, first.ChunkCounts);
    }

    /// <summary>
    /// SD3's and FLUX.1's conditioning (<see cref="ConditioningLayout"/>): each prompt's CLIP tokens cut to one chunk, T5's
    /// to <paramref name="t5Length"/>; per prompt [L·J] hidden states (L = <see cref="ConditioningLength"/>) and the pooled
    /// embedding, every prompt one "chunk".
    /// </summary>
    private EncodedTexts EncodeJoint(IReadOnlyList<string> prompts, CancellationToken cancellationToken, ILogger? logger, IReadOnlyList<TextOwner>? owners, int t5Length)
    {
        int n = prompts.Count, clipLength = SequenceLength;
        var clip = new EncodedTexts[Encoders.Count];
        for (int e = 0; e < clip.Length; e++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var tokens = Encoders[e].Tokenize(prompts, owners, e == 0 ? logger : null, oneChunk: true);
            clip[e] = Encoders[e].EncodeChunks(tokens, cancellationToken);
        }
        float[]? t5 = T5?.Encode(prompts, t5Length, cancellationToken, logger, owners);
        int width = EmbeddingWidth > 0 ? EmbeddingWidth : t5 is null ? 0 : t5.Length / (n * t5Length);
        if (width == 0)
            throw new InvalidDataException("The conditioning width of this SD3 model is unknown: the transformer leaves encoder_hidden_states' width symbolic and there is no T5 encoder to measure it. " +
                "Add transformer/config.json with joint_attention_dim, or load the model with its T5 encoder.");
        if (t5 is not null && t5.Length != n * t5Length * width)
            throw new InvalidDataException($"The T5 encoder '{T5!.ModelPath}' gives {t5.Length / (n * t5Length)} values per token, but the transformer's conditioning width is {width}. The components come from different models.");
        int length = ConditioningLength(t5Length);
        var hidden = new float[n * length * width];
        float[] pooled;
        if (Layout == ConditioningLayout.Flux)
        {
            t5!.CopyTo(hidden, 0);
            pooled = clip[0].Pooled ?? throw new InvalidDataException($"The {Primary.ComponentName} model '{Primary.ModelPath}' has no pooler_output: FLUX.1 conditions on CLIP-L's pooled output.");
        }
        else
        {
            int d1 = clip[0].Hidden.Length / (n * clipLength), d2 = clip[1].Hidden.Length / (n * clipLength);
            if (d1 + d2 > width)
                throw new InvalidDataException($"The CLIP encoders' widths {d1} + {d2} exceed the transformer's conditioning width {width}: SD3 pads CLIP's [77, {d1 + d2}] with zeros to it. The components come from different models.");
            int p1 = clip[0].Pooled!.Length / n, p2 = clip[1].Pooled!.Length / n;
            pooled = new float[n * (p1 + p2)];
            for (int i = 0; i < n; i++)
            {
                var prompt = hidden.AsSpan(i * length * width, length * width);
                for (int p = 0; p < clipLength; p++)
                {
                    clip[0].Hidden.AsSpan((i * clipLength + p) * d1, d1).CopyTo(prompt.Slice(p * width, d1));
                    clip[1].Hidden.AsSpan((i * clipLength + p) * d2, d2).CopyTo(prompt.Slice(p * width + d1, d2)); // the rest of the row stays 0
                }
                t5?.AsSpan(i * t5Length * width, t5Length * width).CopyTo(prompt[(clipLength * width)..]);      // without T5: zeros
                clip[0].Pooled.AsSpan(i * p1, p1).CopyTo(pooled.AsSpan(i * (p1 + p2), p1));
                clip[1].Pooled.AsSpan(i * p2, p2).CopyTo(pooled.AsSpan(i * (p1 + p2) + p1, p2));
            }
        }
        var ones = new int[n];
        Array.Fill(ones, 1);
        return new EncodedTexts(hidden, pooled, ones);
    }

    /// <summary>Disposes every encoder.</summary>
    public void Dispose()
    {
        foreach (var encoder in Encoders) encoder.Dispose();
        T5?.Dispose();
    }
}

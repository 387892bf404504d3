using Microsoft.Extensions.Logging;

namespace MLNet.Diffusion.TextEncoding;

/// <summary>
/// A model's text conditioning: one text encoder (SD 1.x and 2.x; the SDXL refiner's <c>text_encoder_2</c>) or two
/// (SDXL base and Turbo), each with its own tokenizer. Every prompt is tokenized and encoded by each; the per-token
/// embeddings are concatenated on the last axis in folder order ([N, 77·k, D₁ + D₂] for prompts of k chunks), and the pooled embedding is the last
/// encoder's (SDXL: <c>text_encoder_2</c>'s <c>text_embeds</c>), as diffusers' <c>StableDiffusionXLPipeline.encode_prompt</c>
/// builds <c>prompt_embeds</c> and <c>pooled_prompt_embeds</c>.
/// </summary>
/// <remarks>
/// Only the first encoder writes the notes on a prompt (truncation, an empty image prompt): the tokenizers share CLIP's
/// vocabulary and length, so a second note would say the same thing twice.
/// </remarks>
internal sealed class PromptEncoder : IDisposable
{
    /// <summary>Takes ownership of <paramref name="encoders"/> (disposed with this).</summary>
    /// <exception cref="InvalidDataException">The encoders' tokenizers have different lengths.</exception>
    public PromptEncoder(IReadOnlyList<TextEncoder> encoders)
    {
        if (encoders is not { Count: 1 or 2 }) throw new ArgumentException("One or two text encoders are needed.", nameof(encoders));
        Encoders = encoders;
        if (encoders.Count == 2 && encoders[0].SequenceLength != encoders[1].SequenceLength)
            throw new InvalidDataException(
                $"The text encoders read different lengths ({encoders[0].ComponentName}: {encoders[0].SequenceLength} tokens, {encoders[1].ComponentName}: {encoders[1].SequenceLength}); their embeddings cannot be concatenated.");
    }

    /// <summary>The encoders, in concatenation order.</summary>
    public IReadOnlyList<TextEncoder> Encoders { get; }

    /// <summary>The first encoder: its tokenizer names the sequence length and writes the notes on prompts.</summary>
    public TextEncoder Primary => Encoders[0];

    /// <summary>Token positions per prompt (77).</summary>
    public int SequenceLength => Primary.SequenceLength;

    /// <summary>The concatenated width D₁ (+ D₂), or 0 while an encoder leaves its width symbolic and has not run.</summary>
    public int EmbeddingWidth => Encoders.Any(e => e.EmbeddingWidth == 0) ? 0 : Encoders.Sum(e => e.EmbeddingWidth);

    /// <summary>The pooled width P of the last encoder, or 0 when it has no pooled output or leaves it symbolic before its first run.</summary>
    public int PooledWidth => Encoders[^1].PooledWidth;

    /// <summary>Whether the last encoder has a pooled output.</summary>
    public bool HasPooled => Encoders[^1].PooledName is not null;

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
    public EncodedTexts Encode(IReadOnlyList<string> prompts, CancellationToken cancellationToken = default, ILogger? logger = null,
        IReadOnlyList<TextOwner>? owners = null, Action<TextOwner, Tokenization.PromptChunks>? checkChunks = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) return new EncodedTexts([], null, []);
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

    /// <summary>Disposes every encoder.</summary>
    public void Dispose()
    {
        foreach (var encoder in Encoders) encoder.Dispose();
    }
}

namespace MLNet.Diffusion.Tokenization;

/// <summary>
/// Settings of a <see cref="ClipTokenizer"/> that a diffusers <c>tokenizer/</c> folder describes in its
/// <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c>; <see cref="ClipTokenizer.Load(string)"/> fills
/// them from there, <see cref="ClipTokenizer.Create(string, string, ClipTokenizerOptions?)"/> takes them as given.
/// </summary>
internal sealed class ClipTokenizerOptions
{
    /// <summary>The context length of every CLIP text encoder that Stable Diffusion uses: 77 positions.</summary>
    public const int ClipContextLength = 77;

    /// <summary>The smallest usable <see cref="MaxLength"/>: the start token, one content token and the end token.</summary>
    public const int MinimumMaxLength = 3;

    /// <summary>CLIP's start-of-text token.</summary>
    public const string DefaultBosToken = "<|startoftext|>";

    /// <summary>CLIP's end-of-text token.</summary>
    public const string DefaultEosToken = "<|endoftext|>";

    /// <summary>
    /// The token that fills the sequence after the end token, or <see langword="null"/> for the end token itself
    /// (Stable Diffusion 1.x). Stable Diffusion 2.x and SDXL's second tokenizer use <c>"!"</c>.
    /// </summary>
    public string? PadToken { get; set; }

    /// <summary>The token that starts every sequence; <see cref="DefaultBosToken"/> unless set.</summary>
    public string BosToken { get; set; } = DefaultBosToken;

    /// <summary>The token that ends the content of every sequence; <see cref="DefaultEosToken"/> unless set.</summary>
    public string EosToken { get; set; } = DefaultEosToken;

    /// <summary>
    /// How many ids <see cref="ClipTokenizer.Encode(string)"/> gives: the start token, up to
    /// <c>MaxLength - 2</c> content tokens, the end token, then padding. At least <see cref="MinimumMaxLength"/>;
    /// <see cref="ClipContextLength"/> unless set.
    /// </summary>
    public int MaxLength { get; set; } = ClipContextLength;
}

using MLNet.Diffusion.Transforms;
namespace MLNet.Diffusion;

/// <summary>The default column names of the diffusion transforms.</summary>
public static class DiffusionColumnNames
{
    /// <summary>"Prompt": the text input.</summary>
    public const string Prompt = "Prompt";

    /// <summary>"Image": the generated <c>MLImage</c>.</summary>
    public const string Image = "Image";

    /// <summary>"PromptEmbedding": text embeddings of the prompt (Single vector of 77·D).</summary>
    public const string PromptEmbedding = "PromptEmbedding";

    /// <summary>"NegativePromptEmbedding": text embeddings of the negative prompt (Single vector of 77·D).</summary>
    public const string NegativePromptEmbedding = "NegativePromptEmbedding";

    /// <summary>"Latents": denoised latents (Single vector of 4·h·w).</summary>
    public const string Latents = "Latents";

    /// <summary>"ImageIndex": which of a row's images an output row holds, when a row gives several.</summary>
    public const string ImageIndex = "ImageIndex";
}

using Microsoft.ML.Data;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// One request's text conditioning: its prompt's embeddings [77·D] and, when its guidance is on, its negative prompt's
/// (null: the empty prompt's). Arrays may be shared between requests with equal texts: read-only.
/// </summary>
internal readonly record struct PromptEmbedding(float[] Conditional, float[]? Unconditional);

/// <summary>What one generation call produced, per request in request order: embeddings, final latents [4·h·w], and the
/// decoded images when asked (owned by the caller).</summary>
internal sealed record GenerationOutput(PromptEmbedding[] Embeddings, float[][] Latents, MLImage[]? Images)
{
    /// <summary>The output of a call without requests.</summary>
    public static GenerationOutput Empty { get; } = new([], [], []);
}

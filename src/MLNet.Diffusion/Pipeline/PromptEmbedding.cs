using Microsoft.ML.Data;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// One request's text conditioning: its prompt's embeddings [77·k·D] (k chunks of a long prompt, else 1) and, when its
/// guidance is on, its negative prompt's [77·k'·D] (the denoising pads the one of fewer chunks with the empty prompt's)
/// (null: the model's unconditional default, see <see cref="StableDiffusionPipeline"/>'s <c>UnconditionalEmbedding</c>); for
/// models whose UNet takes a pooled text embedding (SDXL), the pooled ones [P] too. Arrays may be shared between requests
/// with equal texts: read-only.
/// </summary>
internal readonly record struct PromptEmbedding(float[] Conditional, float[]? Unconditional)
{
    /// <summary>The prompt's pooled embedding [P], when the model has one.</summary>
    public float[]? ConditionalPooled { get; init; }

    /// <summary>The negative prompt's pooled embedding [P] (null with <see cref="Unconditional"/> null: the default's).</summary>
    public float[]? UnconditionalPooled { get; init; }

    /// <summary>The prompt's schedule when it uses prompt editing or alternation (<see cref="Conditional"/> and
    /// <see cref="ConditionalPooled"/> are then its first call's); null when one text conditions every call.</summary>
    public ConditioningSchedule? Schedule { get; init; }

    /// <summary>The negative prompt's schedule, likewise (<see cref="Unconditional"/> is then its first call's).</summary>
    public ConditioningSchedule? NegativeSchedule { get; init; }
}

/// <summary>One text's embeddings: per-token [77·k·D] (k chunks) and, when the model has one, pooled [P] (its first chunk's). Read-only; may be shared.</summary>
internal sealed record TextEmbedding(float[] Hidden, float[]? Pooled);

/// <summary>What one generation call produced, per request in request order: embeddings, final latents [4·h·w], and the
/// decoded images when asked (owned by the caller).</summary>
internal sealed record GenerationOutput(PromptEmbedding[] Embeddings, float[][] Latents, MLImage[]? Images)
{
    /// <summary>The output of a call without requests.</summary>
    public static GenerationOutput Empty { get; } = new([], [], []);
}

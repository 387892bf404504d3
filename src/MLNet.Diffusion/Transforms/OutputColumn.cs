using Microsoft.ML.Data;

namespace MLNet.Diffusion.Transforms;

/// <summary>What a diffusion transform writes to an output column.</summary>
internal enum OutputRole
{
    PromptEmbedding,
    NegativeEmbedding,
    Latents,
    Image,
    ImageIndex,
}

/// <summary>An output column: role, name and exact type.</summary>
internal sealed record OutputColumn(OutputRole Role, string Name, DataViewType Type)
{
    /// <summary>The generated value this column needs computed (none for <see cref="OutputRole.ImageIndex"/>).</summary>
    public OutputSet Needs => Role switch
    {
        OutputRole.PromptEmbedding => OutputSet.PromptEmbedding,
        OutputRole.NegativeEmbedding => OutputSet.NegativeEmbedding,
        OutputRole.Latents => OutputSet.Latents,
        OutputRole.Image => OutputSet.Image,
        _ => OutputSet.None,
    };
}

namespace MLNet.Diffusion.TextEncoding;

/// <summary>How a model's text encoders' outputs are assembled into the denoiser's conditioning (<see cref="PromptEncoder"/>).</summary>
internal enum ConditioningLayout
{
    /// <summary>
    /// SD 1.x, 2.x and SDXL: the CLIP encoders' per-token embeddings concatenated on the width axis, [77·k, D₁ + D₂]; the
    /// pooled embedding is the last encoder's.
    /// </summary>
    Clip,

    /// <summary>
    /// Stable Diffusion 3: CLIP-L's and CLIP-G's penultimate hidden states concatenated to [77, D₁ + D₂], zero-padded to the
    /// joint width J, then T5's [T, J] appended on the sequence axis: [77 + T, J] (without T5, zeros [T, J] take its
    /// place); pooled = CLIP-L's and CLIP-G's <c>text_embeds</c> concatenated (diffusers'
    /// <c>StableDiffusion3Pipeline.encode_prompt</c>).
    /// </summary>
    StableDiffusion3,

    /// <summary>FLUX.1: T5's hidden states [T, J] alone; pooled = CLIP-L's <c>pooler_output</c> (diffusers' <c>FluxPipeline.encode_prompt</c>).</summary>
    Flux,
}

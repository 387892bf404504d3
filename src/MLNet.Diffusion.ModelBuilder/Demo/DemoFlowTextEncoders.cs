namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The demo flow model's two CLIP encoders, Stable Diffusion 3's CLIPTextModelWithProjection pair (<c>text_encoder/</c>
/// CLIP-L, <c>text_encoder_2/</c> CLIP-G), built as <see cref="DemoXlTextEncoder"/> builds the demo XL model's: a token's demo
/// embedding restricted to the encoder's slots is its penultimate hidden state (the layer SD3 reads), the last layer its
/// negation, earlier layers its slots shifted, and <c>text_embeds</c> the sum over positions restricted to the encoder's
/// pooled slots.
/// </summary>
/// <remarks>
/// Every conditioning input carries its own attributes, so the transformer needs all of them to know the whole prompt:
/// CLIP-L's penultimate states the shape, CLIP-G's the colour, CLIP-L's <c>text_embeds</c> the size, CLIP-G's the
/// background, and T5 (<see cref="DemoT5TextEncoder"/>) the place.
/// </remarks>
public static class DemoFlowTextEncoders
{
    /// <summary>CLIP-L (<c>text_encoder/</c>): 3 layers, shape; <c>text_embeds</c>: size.</summary>
    public static DemoXlTextEncoder ClipL { get; } = new("demo_flow_text_encoder", 3, withProjection: true, ["shape"], ["size"]);

    /// <summary>CLIP-G (<c>text_encoder_2/</c>): 4 layers, colour; <c>text_embeds</c>: background.</summary>
    public static DemoXlTextEncoder ClipG { get; } = new("demo_flow_text_encoder_2", 4, withProjection: true, ["colour"], ["background"]);
}

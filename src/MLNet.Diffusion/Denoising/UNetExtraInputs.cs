using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Denoising;

/// <summary>What an extra UNet input carries, beyond <c>sample</c>, <c>timestep</c> and <c>encoder_hidden_states</c>.</summary>
internal enum UNetExtraKind
{
    /// <summary>SDXL's pooled text embedding [B, P] (diffusers' <c>added_cond_kwargs["text_embeds"]</c>).</summary>
    TextEmbeds,

    /// <summary>SDXL's micro-conditioning [B, 6] (base: original size, crop, target size) or [B, 5] (refiner: original size,
    /// crop, aesthetic score) (diffusers' <c>added_cond_kwargs["time_ids"]</c>).</summary>
    TimeIds,

    /// <summary>A latent consistency model's guidance-scale embedding [B, 256] (diffusers' <c>timestep_cond</c>).</summary>
    TimestepCond,

    /// <summary>FLUX.1's image token positions <c>img_ids</c> [(h/2)(w/2), 3] (older exports [B, (h/2)(w/2), 3]): (0, row, column)
    /// of each 2×2 latent patch (<see cref="LatentPacking.ImageIds"/>).</summary>
    ImageIds,

    /// <summary>FLUX.1's text token positions <c>txt_ids</c> [T, 3] (older exports [B, T, 3]): zeros.</summary>
    TextIds,

    /// <summary>FLUX.1-dev's distilled guidance <c>guidance</c> [B]: the guidance scale itself, per row.</summary>
    Guidance,
}

/// <summary>One identified extra input: its kind, the name the export gave it, and its declared type and shape.</summary>
internal sealed record UNetExtraInput(UNetExtraKind Kind, TensorSpec Spec)
{
    /// <summary>The input's width (its second dimension, or the tokens of position ids) when the model fixes it, else 0.</summary>
    public int Width => Kind == UNetExtraKind.Guidance ? 1 : Math.Max(Spec.Dimensions[IsPositions ? Spec.Rank - 2 : 1], 0);

    /// <summary>Whether the input holds the same values for every batch row (FLUX's position ids: no batch axis, or one of 1).</summary>
    public bool IsPositions => Kind is UNetExtraKind.ImageIds or UNetExtraKind.TextIds;

    /// <summary>
    /// The input's shape for a batch of <paramref name="batch"/> rows: [B, width] per row, [B] for the guidance, and
    /// [tokens, 3] for position ids (<paramref name="width"/> = tokens; [1, tokens, 3] where the export has a batch axis).
    /// </summary>
    public long[] Shape(int batch, int width) => Kind switch
    {
        UNetExtraKind.Guidance => [batch],
        UNetExtraKind.ImageIds or UNetExtraKind.TextIds => Spec.Rank == 3 ? [1, width, UNetExtraInputs.PositionAxes] : [width, UNetExtraInputs.PositionAxes],
        _ => [batch, width],
    };
}

/// <summary>
/// The one place where a UNet's extra inputs are recognised, whatever the exporter called them. Optimum, OnnxStack and
/// Olive name them after their meaning (<c>text_embeds</c>, <c>time_ids</c>, <c>timestep_cond</c>); other exports (a plain
/// <c>torch.onnx.export</c> of the UNet with a dict argument) give names like <c>onnx::Concat_3</c> or prefix them with
/// <c>added_cond_kwargs.</c>. Each extra input is identified by name first, then by rank, width and element type: a float
/// input of rank 2 whose fixed width is 5 or 6 is the time ids, the configured <c>time_cond_proj_dim</c> (256) the
/// guidance embedding, and any other fixed width the pooled text embedding. When that is ambiguous (a symbolic width, two
/// inputs claiming one role, an input of another rank), the model is refused with the inputs found and what was expected.
/// </summary>
internal static class UNetExtraInputs
{
    /// <summary>The inputs every Stable Diffusion UNet has.</summary>
    public static readonly string[] CoreInputs = ["sample", "timestep", "encoder_hidden_states"];

    /// <summary>A diffusion transformer's (SD3, FLUX.1) latent input, in place of <c>sample</c>.</summary>
    public const string TransformerSampleName = "hidden_states";

    /// <summary>The axes of a FLUX.1 position id (<c>img_ids</c>, <c>txt_ids</c>): (modality, row, column).</summary>
    public const int PositionAxes = 3;

    /// <summary>The widths of SDXL's time ids: 6 for the base model, 5 for the refiner.</summary>
    public const int BaseTimeIds = 6, RefinerTimeIds = 5;

    /// <summary>diffusers' default <c>time_cond_proj_dim</c> of LCM UNets: the guidance embedding's width.</summary>
    public const int DefaultGuidanceEmbeddingWidth = 256;

    /// <summary>Identifies every input of <paramref name="inputs"/> beyond the core three.</summary>
    /// <param name="inputs">The UNet's declared inputs.</param>
    /// <param name="modelPath">The model file, for messages.</param>
    /// <param name="guidanceEmbeddingWidth">unet/config.json's <c>time_cond_proj_dim</c>, or null.</param>
    /// <exception cref="InvalidDataException">An extra input cannot be identified, or two claim one role; the message lists
    /// the inputs found and the ones a Stable Diffusion UNet may have.</exception>
    /// <param name="component">The component's folder name, for messages (<c>unet</c>, <c>controlnet</c>).</param>
    /// <param name="ignore">Inputs that are not extra inputs (a ControlNet's <c>controlnet_cond</c> and <c>conditioning_scale</c>).</param>
    public static IReadOnlyList<UNetExtraInput> Identify(IReadOnlyDictionary<string, TensorSpec> inputs, string modelPath, int? guidanceEmbeddingWidth,
        string component = "unet", IReadOnlyCollection<string>? ignore = null)
    {
        int condWidth = guidanceEmbeddingWidth ?? DefaultGuidanceEmbeddingWidth;
        var found = new List<UNetExtraInput>();
        // Rank-4 inputs beyond the core ones are ControlNet residuals: ControlResiduals identifies them.
        bool transformer = inputs.ContainsKey(TransformerSampleName) && !inputs.ContainsKey("sample");
        foreach (var spec in inputs.Values.Where(s => !CoreInputs.Contains(s.Name) && s.Name != TransformerSampleName && s.Rank != 4 && ignore?.Contains(s.Name) != true))
        {
            var kind = ByName(spec.Name) ?? ByShape(spec, condWidth)
                ?? throw Refuse(inputs, modelPath, component, $"its input '{spec.Name}' ({spec}) cannot be identified by name, and its shape does not tell what it carries");
            var (ranks, rankText) = kind switch
            {
                UNetExtraKind.Guidance => ((int[])[1], "of rank 1"),
                UNetExtraKind.ImageIds or UNetExtraKind.TextIds => ([2, 3], "of shape [tokens, 3] (or [batch, tokens, 3])"),
                _ => ([2], "of rank 2"),
            };
            if (!ranks.Contains(spec.Rank) || !spec.IsFloatingPoint)
                throw Refuse(inputs, modelPath, component, $"its input '{spec.Name}' ({spec}) is read as {Describe(kind)}, which is a float tensor {rankText}");
            if (!transformer && kind is UNetExtraKind.ImageIds or UNetExtraKind.TextIds or UNetExtraKind.Guidance)
                throw Refuse(inputs, modelPath, component, $"its input '{spec.Name}' is FLUX.1's {Describe(kind)}, which only a diffusion transformer (hidden_states in place of sample) takes");
            if (found.FirstOrDefault(f => f.Kind == kind) is { } other)
                throw Refuse(inputs, modelPath, component, $"both '{other.Spec.Name}' and '{spec.Name}' would be {Describe(kind)}");
            found.Add(new UNetExtraInput(kind, spec));
        }
        if (transformer)
        {
            if (found.All(f => f.Kind != UNetExtraKind.TextEmbeds))
                throw Refuse(inputs, modelPath, component, "a diffusion transformer (SD3, FLUX.1) takes pooled_projections, and this one does not");
            if (found.Any(f => f.IsPositions) && (found.Count(f => f.IsPositions) != 2))
                throw Refuse(inputs, modelPath, component, "FLUX.1 transformers take img_ids and txt_ids together, and this one has only one of them");
            return found;
        }
        if (found.Any(f => f.Kind == UNetExtraKind.TextEmbeds) != found.Any(f => f.Kind == UNetExtraKind.TimeIds))
            throw Refuse(inputs, modelPath, component, "SDXL UNets take the pooled text embedding and the time ids together, and this one has only one of them");
        if (found.FirstOrDefault(f => f.Kind == UNetExtraKind.TimeIds) is { Width: > 0 and not (BaseTimeIds or RefinerTimeIds) } odd)
            throw Refuse(inputs, modelPath, component, $"its time ids '{odd.Spec.Name}' hold {odd.Width} values, where SDXL has {BaseTimeIds} (base) or {RefinerTimeIds} (refiner)");
        return found;
    }

    /// <summary>The kind a name alone tells (Optimum's, OnnxStack's and Olive's names, with or without the
    /// <c>added_cond_kwargs.</c> prefix), or null when only the shape can.</summary>
    public static UNetExtraKind? ByName(string name)
    {
        var bare = name.StartsWith("added_cond_kwargs.", StringComparison.Ordinal) ? name["added_cond_kwargs.".Length..] : name;
        return bare switch
        {
            "text_embeds" or "add_text_embeds" or "pooled_projections" => UNetExtraKind.TextEmbeds,
            "img_ids" => UNetExtraKind.ImageIds,
            "txt_ids" => UNetExtraKind.TextIds,
            "guidance" => UNetExtraKind.Guidance,
            "time_ids" or "add_time_ids" => UNetExtraKind.TimeIds,
            "timestep_cond" or "w_embedding" => UNetExtraKind.TimestepCond,
            _ => null,
        };
    }

    private static UNetExtraKind? ByShape(TensorSpec spec, int condWidth)
    {
        if (spec.Rank != 2 || !spec.IsFloatingPoint || spec.Dimensions[1] <= 0) return null;
        int width = spec.Dimensions[1];
        return width is BaseTimeIds or RefinerTimeIds ? UNetExtraKind.TimeIds
            : width == condWidth ? UNetExtraKind.TimestepCond
            : UNetExtraKind.TextEmbeds;
    }

    private static string Describe(UNetExtraKind kind) => kind switch
    {
        UNetExtraKind.TextEmbeds => "the pooled text embedding (text_embeds [batch, P])",
        UNetExtraKind.TimeIds => "the time ids (time_ids [batch, 6], or 5 for the refiner)",
        UNetExtraKind.ImageIds => "the image token positions (img_ids [tokens, 3])",
        UNetExtraKind.TextIds => "the text token positions (txt_ids [tokens, 3])",
        UNetExtraKind.Guidance => "the distilled guidance scale (guidance [batch])",
        _ => "the guidance embedding (timestep_cond [batch, 256])",
    };

    private static InvalidDataException Refuse(IReadOnlyDictionary<string, TensorSpec> inputs, string modelPath, string component, string problem) =>
        new($"The {component} model '{modelPath}' cannot be used: {problem}. Its inputs: {string.Join(", ", inputs.Values)}. " +
            "A Stable Diffusion UNet takes sample, timestep and encoder_hidden_states, plus text_embeds [batch, P] and time_ids [batch, 6 or 5] " +
            "for SDXL, and timestep_cond [batch, 256] for a latent consistency model; a diffusion transformer takes hidden_states, timestep, " +
            "encoder_hidden_states and pooled_projections, plus img_ids, txt_ids and (FLUX.1-dev) guidance for FLUX.1. Re-export it with those names, or with fixed widths " +
            "so that each extra input can be told by its shape.");
}

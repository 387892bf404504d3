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
}

/// <summary>One identified extra input: its kind, the name the export gave it, and its declared type and shape.</summary>
internal sealed record UNetExtraInput(UNetExtraKind Kind, TensorSpec Spec)
{
    /// <summary>The input's width (its second dimension) when the model fixes it, else 0.</summary>
    public int Width => Spec.Dimensions[1] > 0 ? Spec.Dimensions[1] : 0;
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
        foreach (var spec in inputs.Values.Where(s => !CoreInputs.Contains(s.Name) && s.Rank != 4 && ignore?.Contains(s.Name) != true))
        {
            var kind = ByName(spec.Name) ?? ByShape(spec, condWidth)
                ?? throw Refuse(inputs, modelPath, component, $"its input '{spec.Name}' ({spec}) cannot be identified by name, and its shape does not tell what it carries");
            if (spec.Rank != 2 || !spec.IsFloatingPoint)
                throw Refuse(inputs, modelPath, component, $"its input '{spec.Name}' ({spec}) is read as {Describe(kind)}, which is a float tensor of rank 2");
            if (found.FirstOrDefault(f => f.Kind == kind) is { } other)
                throw Refuse(inputs, modelPath, component, $"both '{other.Spec.Name}' and '{spec.Name}' would be {Describe(kind)}");
            found.Add(new UNetExtraInput(kind, spec));
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
            "text_embeds" or "add_text_embeds" => UNetExtraKind.TextEmbeds,
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
        _ => "the guidance embedding (timestep_cond [batch, 256])",
    };

    private static InvalidDataException Refuse(IReadOnlyDictionary<string, TensorSpec> inputs, string modelPath, string component, string problem) =>
        new($"The {component} model '{modelPath}' cannot be used: {problem}. Its inputs: {string.Join(", ", inputs.Values)}. " +
            "A Stable Diffusion UNet takes sample, timestep and encoder_hidden_states, plus text_embeds [batch, P] and time_ids [batch, 6 or 5] " +
            "for SDXL, and timestep_cond [batch, 256] for a latent consistency model. Re-export it with those names, or with fixed widths " +
            "so that each extra input can be told by its shape.");
}

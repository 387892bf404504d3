using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The two text encoders of the demo XL model, <c>text_encoder/</c> (<see cref="First"/>, CLIPTextModel's contract:
/// <c>input_ids</c> int32 [B, 77] → <c>last_hidden_state</c>, <c>pooler_output</c>, <c>hidden_states.0</c> …
/// <c>hidden_states.N</c>) and <c>text_encoder_2/</c> (<see cref="Second"/>, CLIPTextModelWithProjection's:
/// → <c>text_embeds</c>, <c>last_hidden_state</c>, <c>hidden_states.0</c> … <c>hidden_states.N</c>), each
/// <see cref="DemoVocabulary.Dimension"/> wide.
/// </summary>
/// <remarks>
/// <para>Each encoder carries one group of the demo's attribute slots, so the UNet needs both halves of the context and
/// the pooled embedding to know the whole prompt: the first the shape and colour (<see cref="First"/>), the second the
/// size and place (<see cref="Second"/>), and the second's <c>text_embeds</c> the background (the pooled embedding
/// carries a global property, as SDXL's does). A token's demo embedding (<see cref="DemoTextEncoder.EmbeddingTable"/>)
/// restricted to the encoder's slots is its penultimate hidden state, <c>hidden_states.(N − 1)</c>, the layer SDXL reads.
/// Every other layer holds something else, so that reading the wrong one draws the wrong picture: the last layer
/// (<c>hidden_states.N</c>, also <c>last_hidden_state</c>) is the penultimate negated, which turns the prompt's pull into
/// a push away from it; earlier layers k are the penultimate with its slots shifted cyclically by N − 1 − k places
/// (red reads as yellow, a star as red, …). The encoders have different depths (<see cref="First"/> 3 layers,
/// <see cref="Second"/> 4), so "penultimate" is not one fixed index. <c>text_embeds</c> is the sum over positions of the
/// tokens' demo embeddings restricted to the background slots; <c>pooler_output</c> the sum over positions of
/// <c>last_hidden_state</c>. Padding (<c>&lt;|endoftext|&gt;</c> or <c>!</c>), start and end tokens embed to zero, so
/// the empty prompt, encoded or zeroed, conditions nothing.</para>
/// </remarks>
public sealed class DemoXlTextEncoder
{
    internal DemoXlTextEncoder(string graphName, int layers, bool withProjection, string[] slotGroups, string[]? projectionSlotGroups = null)
    {
        GraphName = graphName;
        Layers = layers;
        WithProjection = withProjection;
        SlotGroups = slotGroups;
        ProjectionSlotGroups = withProjection ? projectionSlotGroups ?? ["background"] : [];
    }

    /// <summary>The first encoder (<c>text_encoder/</c>): shape and colour, 3 layers, <c>pooler_output</c>.</summary>
    public static DemoXlTextEncoder First { get; } = new("demo_xl_text_encoder", 3, withProjection: false, ["shape", "colour"]);

    /// <summary>The second encoder (<c>text_encoder_2/</c>): size and place, 4 layers, <c>text_embeds</c> (background).</summary>
    public static DemoXlTextEncoder Second { get; } = new("demo_xl_text_encoder_2", 4, withProjection: true, ["size", "vertical", "horizontal"]);

    /// <summary>The slot groups <c>text_embeds</c> carries (the background).</summary>
    public static IReadOnlyList<string> PooledSlotGroups { get; } = ["background"];

    /// <summary>The slot groups this encoder's <c>text_embeds</c> carries (<see cref="PooledSlotGroups"/> for
    /// <see cref="Second"/>; none without a projection).</summary>
    public IReadOnlyList<string> ProjectionSlotGroups { get; }

    /// <summary>The ONNX graph's name.</summary>
    public string GraphName { get; }

    /// <summary>The number of layers N: the outputs are <c>hidden_states.0</c> … <c>hidden_states.N</c>.</summary>
    public int Layers { get; }

    /// <summary>Whether the encoder has CLIPTextModelWithProjection's <c>text_embeds</c> (else CLIPTextModel's <c>pooler_output</c>).</summary>
    public bool WithProjection { get; }

    /// <summary>The slot groups (prefixes of <see cref="DemoVocabulary.Slots"/>, e.g. "colour") its hidden states carry.</summary>
    public IReadOnlyList<string> SlotGroups { get; }

    /// <summary>The index of the penultimate hidden state, the one SDXL reads: N − 1.</summary>
    public int Penultimate => Layers - 1;

    /// <summary>Width of every hidden state (and of <c>text_embeds</c>).</summary>
    public static int Dimension => DemoVocabulary.Dimension;

    /// <summary>The output names in the order the graph declares them (Optimum's order).</summary>
    public IReadOnlyList<string> OutputNames =>
        [.. (WithProjection ? new[] { "text_embeds", "last_hidden_state" } : ["last_hidden_state", "pooler_output"]),
         .. Enumerable.Range(0, Layers + 1).Select(k => $"hidden_states.{k}")];

    /// <summary>1 for the slots of <paramref name="groups"/>, 0 elsewhere ([D]).</summary>
    public static float[] SlotMask(IEnumerable<string> groups)
    {
        ArgumentNullException.ThrowIfNull(groups);
        var set = groups.ToHashSet(StringComparer.Ordinal);
        return DemoVocabulary.Slots.Select(s => set.Contains(s[..s.IndexOf(':', StringComparison.Ordinal)]) ? 1f : 0f).ToArray();
    }

    /// <summary>
    /// The matrix R_k ([D, D] row-major) with hidden_states.k = hidden_states.(N − 1) · R_k: the identity at N − 1,
    /// minus the identity at N, and at k &lt; N − 1 the cyclic shift moving slot i to slot (i + N − 1 − k) mod D.
    /// </summary>
    public float[] LayerMatrix(int layer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(layer, Layers);
        int d = Dimension;
        var r = new float[d * d];
        if (layer == Layers)
        {
            for (int i = 0; i < d; i++) r[i * d + i] = -1;
        }
        else
        {
            int shift = Penultimate - layer;
            for (int i = 0; i < d; i++) r[i * d + (i + shift) % d] = 1;
        }
        return r;
    }

    /// <summary>
    /// The C# reference of the graph: every hidden state ([L + 1][B·S·D]), and the pooled output ([B·D]:
    /// <c>text_embeds</c> or <c>pooler_output</c>), for token ids [B, S] flattened (<paramref name="sequence"/> = S).
    /// </summary>
    public (float[][] HiddenStates, float[] Pooled) Encode(ReadOnlySpan<int> inputIds, int sequence)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(sequence, 1);
        int d = Dimension, batch = inputIds.Length / sequence;
        var table = DemoTextEncoder.EmbeddingTable();
        var mask = SlotMask(SlotGroups);
        var background = SlotMask(ProjectionSlotGroups);
        var penultimate = new float[inputIds.Length * d];
        var pooled = new float[batch * d];
        for (int i = 0; i < inputIds.Length; i++)
        {
            int b = i / sequence;
            for (int j = 0; j < d; j++)
            {
                float e = table[inputIds[i] * d + j];
                penultimate[i * d + j] = e * mask[j];
                if (WithProjection) pooled[b * d + j] += e * background[j];
            }
        }
        var hidden = new float[Layers + 1][];
        for (int k = 0; k <= Layers; k++)
        {
            var r = LayerMatrix(k);
            var h = new float[penultimate.Length];
            for (int row = 0; row < inputIds.Length; row++)
                for (int j = 0; j < d; j++)
                {
                    float sum = 0;
                    for (int i = 0; i < d; i++) sum += penultimate[row * d + i] * r[i * d + j];
                    h[row * d + j] = sum;
                }
            hidden[k] = h;
        }
        if (!WithProjection)
        {
            for (int row = 0; row < inputIds.Length; row++)
                for (int j = 0; j < d; j++) pooled[row / sequence * d + j] += hidden[Layers][row * d + j];
        }
        return (hidden, pooled);
    }

    /// <summary>Builds the graph.</summary>
    public OnnxGraphBuilder BuildGraph()
    {
        int d = Dimension;
        var g = new OnnxGraphBuilder(GraphName);
        var ids = g.Input("input_ids", OnnxElementType.Int32, "batch", "sequence");
        var table = g.Initializer("token_embedding", DemoTextEncoder.EmbeddingTable(), ClipVocabularyWriter.Tokens().Count, d);
        var embedded = g.Gather(table, ids);                                                       // [B, S, D]
        var penultimate = $"hidden_states.{Penultimate}";
        g.NodeNamed("Mul", [embedded, g.Initializer("slot_mask", SlotMask(SlotGroups), d)], penultimate);
        for (int k = 0; k <= Layers; k++)
        {
            if (k == Penultimate) continue;
            g.NodeNamed("MatMul", [penultimate, g.Initializer($"layer_{k}_matrix", LayerMatrix(k), d, d)], $"hidden_states.{k}");
        }
        var last = g.Identity($"hidden_states.{Layers}", "last_hidden_state");
        if (WithProjection)
        {
            var summed = g.ReduceSum(embedded, [1], keepDims: false);                               // [B, D]
            g.NodeNamed("Mul", [summed, g.Initializer("pooled_slot_mask", SlotMask(ProjectionSlotGroups), d)], "text_embeds");
        }
        else
        {
            g.NodeNamed("ReduceSum", [last, g.Longs(1)], "pooler_output", ("keepdims", 0L));
        }
        foreach (var name in OutputNames)
        {
            if (name is "text_embeds" or "pooler_output") g.Output(name, OnnxElementType.Float, "batch", d);
            else g.Output(name, OnnxElementType.Float, "batch", "sequence", d);
        }
        return g;
    }
}

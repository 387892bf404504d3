using MLNet.Diffusion.Denoising;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// The scheduled rows of one UNet batch (<see cref="ConditioningSchedule"/>): before each call, each row whose conditioning
/// changes at that call gets its new text embeddings (and, for a UNet that takes one, its pooled embedding) written into the
/// binding's input buffers; a call at which nothing changes writes and copies nothing, and no call allocates.
/// </summary>
/// <remarks>
/// A batch has up to two bindings (guided, and the conditional half alone outside a guidance window); each keeps what was
/// last written into it. Both start with every row's call-0 embeddings, which <see cref="PromptEmbedding"/> carries and the
/// binding's set-up writes.
/// </remarks>
internal sealed class ScheduledConditioning
{
    private readonly ConditioningSchedule?[] _prompts, _negatives;
    private readonly int _rowLength, _pooledExtra;
    private readonly int[] _guidedWritten, _plainWritten;

    private ScheduledConditioning(ConditioningSchedule?[] prompts, ConditioningSchedule?[] negatives, int rowLength, int pooledExtra)
    {
        _prompts = prompts;
        _negatives = negatives;
        _rowLength = rowLength;
        _pooledExtra = pooledExtra;
        _guidedWritten = new int[2 * prompts.Length];
        _plainWritten = new int[prompts.Length];
    }

    /// <summary>How many rows (of either binding) have been rewritten so far (diagnostics).</summary>
    public int RowWrites { get; private set; }

    /// <summary>The batch's schedules, or null when no row's prompt or negative prompt has one (the batch runs as before).</summary>
    /// <param name="rows">The batch's request indices.</param>
    /// <param name="embeddings">Every request's conditioning.</param>
    /// <param name="shape">The batch's shape.</param>
    /// <param name="pooledExtra">The index of the UNet's pooled-text-embedding input among its extras, or −1.</param>
    public static ScheduledConditioning? For(int[] rows, PromptEmbedding[] embeddings, BatchShape shape, int pooledExtra)
    {
        var prompts = Array.ConvertAll(rows, r => embeddings[r].Schedule);
        var negatives = Array.ConvertAll(rows, r => shape.Guided ? embeddings[r].NegativeSchedule : null);
        if (Array.TrueForAll(prompts, s => s is null) && Array.TrueForAll(negatives, s => s is null)) return null;
        for (int j = 0; j < rows.Length; j++)
        {
            CheckLengths(prompts[j], rows[j], "prompt", shape.EmbeddingLength);
            CheckLengths(negatives[j], rows[j], "negative prompt", shape.EmbeddingLength);
        }
        return new ScheduledConditioning(prompts, negatives, shape.EmbeddingLength, pooledExtra);
    }

    /// <summary>Every scheduled text of a row must fill the row exactly: a longer one would spill into the next row.</summary>
    private static void CheckLengths(ConditioningSchedule? schedule, int image, string what, int rowLength)
    {
        if (schedule is null) return;
        for (int i = 0; i < schedule.Count; i++)
        {
            if (schedule[i].Hidden.Length == rowLength && schedule[i].Pooled?.Length == schedule[0].Pooled?.Length) continue;
            throw new ArgumentException(
                $"Image {image}: the scheduled texts of its {what} encode to embeddings of different sizes ({schedule[0].Hidden.Length} and " +
                $"{schedule[i].Hidden.Length} values; the batch's rows have {rowLength}). Prompt editing and alternation need texts that encode " +
                "to the same number of tokens: keep each version of the prompt within the same number of 75-token chunks.", "embeddings");
        }
    }

    /// <summary>
    /// Makes <paramref name="unet"/>'s conditioning that of <paramref name="call"/> (0-based, in the full schedule): rows laid
    /// out as <c>encoder_hidden_states</c> is, with guidance the negative rows first.
    /// </summary>
    public void Apply(int call, UNetBinding unet, bool guided)
    {
        int images = _prompts.Length;
        var written = guided ? _guidedWritten : _plainWritten;
        bool changed = false, pooled = false;
        for (int j = 0; j < images; j++)
        {
            if (_prompts[j] is { } prompt) changed |= Write(prompt, call, guided ? images + j : j, written, unet, ref pooled);
            if (guided && _negatives[j] is { } negative) changed |= Write(negative, call, j, written, unet, ref pooled);
        }
        if (changed) unet.CommitHiddenStates();
        if (pooled) unet.CommitExtra(_pooledExtra);
    }

    private bool Write(ConditioningSchedule schedule, int call, int row, int[] written, UNetBinding unet, ref bool pooled)
    {
        int index = schedule.IndexAt(call);
        if (written[row] == index) return false;
        written[row] = index;
        RowWrites++;
        var embedding = schedule[index];
        unet.WriteHiddenStates(embedding.Hidden, row * _rowLength);
        if (_pooledExtra >= 0 && embedding.Pooled is { } values)
        {
            unet.WriteExtra(_pooledExtra, values, row * values.Length);
            pooled = true;
        }
        return true;
    }
}

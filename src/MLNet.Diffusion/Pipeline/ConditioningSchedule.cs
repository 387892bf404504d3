using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// One prompt's (or negative prompt's) text conditioning over a batch's UNet calls, for prompt editing and alternation
/// (<see cref="PromptSchedule"/>): the embeddings of its distinct scheduled texts and, for each call, which of them
/// conditions it.
/// </summary>
/// <remarks>
/// The steps of the schedule are UNet calls: a schedule is made over the scheduler's <see cref="Schedulers.DiffusionScheduler.CallCount"/>
/// calls, and call k (0-based, counted from the first call of the full schedule) takes the first entry whose end step is
/// ≥ k, as A1111's <c>reconstruct_cond_batch</c> takes its denoiser's call counter. So a second-order scheduler (Heun,
/// KDPM2: 2N − 1 calls for N steps) switches by calls, as A1111 does (it counts 2N for them); an init image's skipped calls
/// and a base model's calls before a refiner's <c>DenoisingStart</c> count as past, so a switch happens at the same
/// noise level whatever the strength (A1111's image-to-image instead restarts its counter at the first call it makes).
/// </remarks>
internal sealed class ConditioningSchedule
{
    private readonly TextEmbedding[] _distinct;
    private readonly int[] _indexOfCall;

    /// <summary>
    /// A schedule of <paramref name="calls"/> calls from <paramref name="entries"/> (increasing end steps) and their
    /// embeddings, one per entry (equal texts may share one <see cref="TextEmbedding"/>: they count as one).
    /// </summary>
    public ConditioningSchedule(IReadOnlyList<ScheduledText> entries, ReadOnlySpan<TextEmbedding> embeddings, int calls)
    {
        ArgumentNullException.ThrowIfNull(entries);
        if (entries.Count == 0 || embeddings.Length != entries.Count)
            throw new ArgumentException($"{embeddings.Length} embeddings for {entries.Count} scheduled texts.", nameof(embeddings));
        ArgumentOutOfRangeException.ThrowIfLessThan(calls, 1);
        var distinct = new List<TextEmbedding>();
        var entryIndex = new int[entries.Count];
        for (int e = 0; e < entries.Count; e++)
        {
            var embedding = embeddings[e];
            int found = distinct.FindIndex(d => ReferenceEquals(d, embedding));
            if (found < 0)
            {
                found = distinct.Count;
                distinct.Add(embedding);
            }
            entryIndex[e] = found;
        }
        _distinct = [.. distinct];
        _indexOfCall = new int[calls];
        for (int call = 0, e = 0; call < calls; call++)
        {
            while (e < entries.Count && call > entries[e].EndStep) e++;
            // Past the last entry A1111 keeps its first (target_index stays 0); a schedule made over `calls` never is.
            _indexOfCall[call] = e < entries.Count ? entryIndex[e] : entryIndex[0];
        }
    }

    /// <summary>The number of UNet calls the schedule covers.</summary>
    public int Calls => _indexOfCall.Length;

    /// <summary>The number of distinct embeddings.</summary>
    public int Count => _distinct.Length;

    /// <summary>Which distinct embedding conditions <paramref name="call"/> (0-based; calls beyond <see cref="Calls"/> take the last call's).</summary>
    public int IndexAt(int call) => _indexOfCall[Math.Clamp(call, 0, _indexOfCall.Length - 1)];

    /// <summary>Distinct embedding <paramref name="index"/> (see <see cref="IndexAt"/>).</summary>
    public TextEmbedding this[int index] => _distinct[index];
}

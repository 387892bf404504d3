namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// What images must agree on to share a UNet batch: steps, size, guidance on or off, the step they start at (the
/// steps an init image's strength skips; 0 from noise) and their own ControlNet scale. Seeds, prompts, guidance scales above 1, init images and masks
/// may differ within a batch.
/// </summary>
/// <remarks><see cref="ControlScale"/>: the request's own ControlNet scale (<see cref="ImagePrompt.ControlScale"/>), one per batch
/// since a ControlNet's <c>conditioning_scale</c> is one value per run.</remarks>
internal readonly record struct BatchKey(int Steps, int Width, int Height, bool Guided, int StartStep, float? ControlScale = null);

/// <summary>One request's settings resolved against the call's options: its batch and its guidance scale.</summary>
internal readonly record struct ResolvedRequest(BatchKey Batch, float GuidanceScale);

/// <summary>The requests of one UNet batch: <paramref name="Members"/> index the call's requests, in request order.</summary>
internal sealed record RequestGroup(BatchKey Key, int[] Members)
{
    /// <summary>The chunks of 77 token positions every row of the batch's <c>encoder_hidden_states</c> takes (a long prompt's, <see cref="GenerationPlan.SplitByChunks"/>).</summary>
    public int Chunks { get; init; } = 1;
}

/// <summary>
/// A generation call's requests, each checked and resolved, and grouped into UNet batches in order of first appearance.
/// Each image's noise comes from its own seed and each batch has its own scheduler, so an image's result does not depend on
/// which other requests share the call.
/// </summary>
internal sealed class GenerationPlan
{
    public GenerationPlan(IReadOnlyList<ImagePrompt> requests, ResolvedRequest[] resolved, GenerationOptions options)
    {
        Requests = requests;
        Resolved = resolved;
        Options = options;
        Groups = [.. Enumerable.Range(0, resolved.Length).GroupBy(i => resolved[i].Batch).Select(g => new RequestGroup(g.Key, [.. g]))];
    }

    /// <summary>The requests, as the caller gave them.</summary>
    public IReadOnlyList<ImagePrompt> Requests { get; }

    /// <summary>Each request's resolved settings.</summary>
    public ResolvedRequest[] Resolved { get; }

    /// <summary>The call's options (scheduler, η, guidance rescale, and the defaults the requests leave null).</summary>
    public GenerationOptions Options { get; }

    /// <summary>The UNet batches.</summary>
    public RequestGroup[] Groups { get; }

    /// <summary>The ControlNets of <see cref="GenerationOptions.ControlNets"/>, loaded, in order (empty: none).</summary>
    public Control.ControlNet[] ControlNets { get; init; } = [];

    /// <summary>
    /// The UNet batches, each split by the chunks of 77 token positions its requests' text conditioning takes
    /// (<paramref name="chunksOf"/>: a request's prompt or negative prompt, whichever has more). Every row of one UNet call
    /// has one sequence length; requests of k chunks share a batch with each other only, never padded to another's
    /// length, so that an image does not depend on which other requests share its call (padding with empty-prompt chunks
    /// changes the cross-attention, hence the image). A call whose prompts all take one chunk keeps <see cref="Groups"/>.
    /// </summary>
    public RequestGroup[] SplitByChunks(Func<int, int> chunksOf) =>
        [.. Groups.SelectMany(g => g.Members.GroupBy(chunksOf).Select(c => new RequestGroup(g.Key, [.. c]) { Chunks = c.Key }))];

    /// <summary>The number of requests.</summary>
    public int Count => Resolved.Length;
}

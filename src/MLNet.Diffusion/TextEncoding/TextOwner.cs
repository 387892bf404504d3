namespace MLNet.Diffusion.TextEncoding;

/// <summary>
/// Whose one text of a text-encoder batch is, as <see cref="TextEncoder.Encode"/>'s log messages name it ("the prompt of
/// data row 7", "the prompt of image 2"), and whether it is the prompt of an image (an empty one makes an unconditional
/// image) or only a negative prompt (where empty is the usual default).
/// </summary>
/// <param name="Name">A noun phrase in lower case, used inside sentences.</param>
/// <param name="IsImagePrompt">Whether some image is generated from this text as its prompt.</param>
internal readonly record struct TextOwner(string Name, bool IsImagePrompt)
{
    /// <summary>How many names <see cref="Merge"/> lists before it counts the rest.</summary>
    private const int NamesListed = 3;

    /// <summary>The prompt of <paramref name="who"/> ("data row 7", "image 2").</summary>
    public static TextOwner PromptOf(string who) => new($"the prompt of {who}", true);

    /// <summary>The negative prompt of <paramref name="who"/>.</summary>
    public static TextOwner NegativePromptOf(string who) => new($"the negative prompt of {who}", false);

    /// <summary>Text <paramref name="index"/> (0-based) of a batch whose caller said nothing about its texts: named by its
    /// 1-based position, and not taken for an image's prompt.</summary>
    public static TextOwner InBatch(int index) => new($"text {index + 1} of the batch", false);

    /// <summary>
    /// One text that several owners share (a batch encodes each distinct text once): the first names, then how many more;
    /// an image prompt if any of them is.
    /// </summary>
    /// <exception cref="ArgumentException">No owners.</exception>
    public static TextOwner Merge(IReadOnlyList<TextOwner> owners)
    {
        ArgumentNullException.ThrowIfNull(owners);
        if (owners.Count == 0) throw new ArgumentException("A text needs at least one owner.", nameof(owners));
        if (owners.Count == 1) return owners[0];
        var names = owners.Take(NamesListed).Select(o => o.Name).ToList();
        string last = owners.Count > NamesListed ? $"{owners.Count - NamesListed} more" : names[^1];
        if (owners.Count <= NamesListed) names.RemoveAt(names.Count - 1);
        return new($"{string.Join(", ", names)} and {last}", owners.Any(o => o.IsImagePrompt));
    }

    /// <summary><see cref="Name"/> with its first letter in upper case, to begin a sentence.</summary>
    public string SentenceStart => Name.Length == 0 ? Name : char.ToUpperInvariant(Name[0]) + Name[1..];
}

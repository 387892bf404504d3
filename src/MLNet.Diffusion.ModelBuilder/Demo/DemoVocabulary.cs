namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The demo model's words and their fixed embeddings. An embedding has one slot (dimension) per attribute value:
/// 4 shapes, 5 shape colours, 3 background colours, 2 sizes, 3 vertical places (top, middle, bottom) and 3
/// horizontal places (left, center, right). A word's embedding is the sum of the slots it names ("red": the red
/// slot; "center": vertical middle plus horizontal center); words that name nothing ("a", "on", "background", …)
/// and every token outside the vocabulary embed to zero, so they neither help nor dilute a prompt.
/// </summary>
/// <remarks>
/// Shape colours and background colours are disjoint word sets, so "white" always means the background (no shape
/// in the dataset is white, grey or black). The sum of a caption's word embeddings is its image's attribute vector
/// (<see cref="AttributeVector"/>), which is what the UNet's text-conditioned prior compares prompts against.
/// </remarks>
public static class DemoVocabulary
{
    private static readonly string[] SlotNames =
    [
        "shape:circle", "shape:square", "shape:triangle", "shape:star",
        "colour:red", "colour:yellow", "colour:green", "colour:blue", "colour:purple",
        "background:white", "background:gray", "background:black",
        "size:small", "size:large",
        "vertical:top", "vertical:middle", "vertical:bottom",
        "horizontal:left", "horizontal:center", "horizontal:right",
    ];

    /// <summary>The embedding width D (the number of attribute slots).</summary>
    public static int Dimension => SlotNames.Length;

    /// <summary>The name of each embedding slot, e.g. "colour:red".</summary>
    public static IReadOnlyList<string> Slots => SlotNames;

    /// <summary>
    /// Every demo word with the slots it sets, in vocabulary order (each becomes one token "word&lt;/w&gt;").
    /// Words with no slots are in the vocabulary only so that common prompt words are single tokens.
    /// </summary>
    public static IReadOnlyList<(string Word, string[] Slots)> Words { get; } =
    [
        ("circle", ["shape:circle"]), ("disc", ["shape:circle"]),
        ("square", ["shape:square"]),
        ("triangle", ["shape:triangle"]),
        ("star", ["shape:star"]),
        ("red", ["colour:red"]),
        ("yellow", ["colour:yellow"]),
        ("green", ["colour:green"]),
        ("blue", ["colour:blue"]),
        ("purple", ["colour:purple"]), ("violet", ["colour:purple"]),
        ("white", ["background:white"]),
        ("gray", ["background:gray"]), ("grey", ["background:gray"]),
        ("black", ["background:black"]),
        ("small", ["size:small"]), ("little", ["size:small"]), ("tiny", ["size:small"]),
        ("large", ["size:large"]), ("big", ["size:large"]), ("huge", ["size:large"]),
        ("top", ["vertical:top"]), ("upper", ["vertical:top"]),
        ("bottom", ["vertical:bottom"]), ("lower", ["vertical:bottom"]),
        ("left", ["horizontal:left"]),
        ("right", ["horizontal:right"]),
        ("center", ["vertical:middle", "horizontal:center"]), ("centre", ["vertical:middle", "horizontal:center"]),
        ("middle", ["vertical:middle", "horizontal:center"]),
        ("a", []), ("an", []), ("the", []), ("on", []), ("in", []), ("at", []), ("of", []), ("with", []), ("and", []),
        ("corner", []), ("background", []), ("shape", []), ("picture", []), ("image", []), ("drawing", []),
    ];

    /// <summary>The embedding of a demo word, or null for a word outside the vocabulary.</summary>
    public static float[]? Embedding(string word)
    {
        foreach (var (w, slots) in Words)
        {
            if (!string.Equals(w, word, StringComparison.Ordinal)) continue;
            var e = new float[Dimension];
            foreach (var slot in slots) e[SlotIndex(slot)] += 1;
            return e;
        }
        return null;
    }

    /// <summary>The index of a named slot.</summary>
    /// <exception cref="ArgumentException">No slot has that name.</exception>
    public static int SlotIndex(string slot)
    {
        int i = Array.IndexOf(SlotNames, slot);
        return i >= 0 ? i : throw new ArgumentException($"Unknown embedding slot '{slot}'.", nameof(slot));
    }

    /// <summary>
    /// The sum of the word embeddings of <paramref name="text"/> split on spaces (lower case, demo words; any other word
    /// adds nothing), as the text encoder and the UNet's pooling compute it for a tokenised prompt.
    /// </summary>
    public static float[] Pool(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var sum = new float[Dimension];
        foreach (var word in text.ToLowerInvariant().Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var e = Embedding(word);
            if (e is null) continue;
            for (int i = 0; i < sum.Length; i++) sum[i] += e[i];
        }
        return sum;
    }

    /// <summary>The attribute vector of a dataset image: one slot per attribute set to 1 (the center sets both middle slots).</summary>
    public static float[] AttributeVector(DemoItem item)
    {
        ArgumentNullException.ThrowIfNull(item);
        var v = new float[Dimension];
        v[SlotIndex("shape:" + DemoDataset.ShapeWord(item.Shape))] = 1;
        v[SlotIndex("colour:" + DemoDataset.ShapeColours[item.Colour].Name)] = 1;
        v[SlotIndex("background:" + DemoDataset.BackgroundColours[item.Background].Name)] = 1;
        v[SlotIndex("size:" + DemoDataset.SizeWord(item.Size))] = 1;
        (string vertical, string horizontal) = item.Position switch
        {
            DemoPosition.TopLeft => ("top", "left"),
            DemoPosition.TopRight => ("top", "right"),
            DemoPosition.BottomLeft => ("bottom", "left"),
            DemoPosition.BottomRight => ("bottom", "right"),
            _ => ("middle", "center"),
        };
        v[SlotIndex("vertical:" + vertical)] = 1;
        v[SlotIndex("horizontal:" + horizontal)] = 1;
        return v;
    }
}

using MLNet.Diffusion.ModelBuilder.Demo;

namespace MLNet.Diffusion.Tests.Demo;

[Collection(DemoCollection.Name)]
public class DemoTextTests(DemoModelFixture model)
{
    [Fact]
    public void EveryDemoWordIsOneToken()
    {
        foreach (var (word, _) in DemoVocabulary.Words)
        {
            var ids = model.Tokenizer.EncodeToIds(word);
            Assert.Equal([ClipVocabularyWriter.TokenId(word + "</w>")], ids);
        }
        var sentence = model.Tokenizer.EncodeToIds("A small BLUE square in the top-left corner, on a grey background!");
        Assert.Equal(
            new[] { "a", "small", "blue", "square", "in", "the", "top", "-", "left", "corner", ",", "on", "a", "grey", "background", "!" }
                .Select(w => ClipVocabularyWriter.TokenId(w + "</w>")),
            sentence);
    }

    [Fact]
    public void VocabularyHasClipLayout()
    {
        var tokens = ClipVocabularyWriter.Tokens();
        var bytes = ClipVocabularyWriter.BytesToUnicode();
        Assert.Equal(256, bytes.Select(b => b.Byte).Distinct().Count());
        Assert.Equal("!", tokens[0]);
        Assert.Equal("Ġ", tokens[bytes.ToList().FindIndex(b => b.Byte == (byte)' ')]);
        Assert.Equal("!</w>", tokens[256]);
        Assert.Equal(ClipVocabularyWriter.StartOfText, tokens[^2]);
        Assert.Equal(ClipVocabularyWriter.EndOfText, tokens[^1]);
        var merges = File.ReadAllLines(Path.Combine(model.Folder, "tokenizer", "merges.txt"));
        Assert.Equal("#version: 0.2", merges[0]);
        Assert.Equal(tokens.Count - 514, merges.Length - 1);
    }

    [Fact]
    public void PromptIsBosTokensEosPadded()
    {
        var ids = model.TokenIds("a red circle");
        int eos = ClipVocabularyWriter.TokenId(ClipVocabularyWriter.EndOfText);
        Assert.Equal(77, ids.Length);
        Assert.Equal(ClipVocabularyWriter.TokenId(ClipVocabularyWriter.StartOfText), ids[0]);
        Assert.Equal(ClipVocabularyWriter.TokenId("red</w>"), ids[2]);
        Assert.All(ids.Skip(4), id => Assert.Equal(eos, id));
    }

    [Fact]
    public void UnknownWordsFallBackToZeroEmbeddings()
    {
        var ids = model.Tokenizer.EncodeToIds("astronaut");
        Assert.True(ids.Count > 1);
        var (hidden, pooled) = model.EncodeText("an astronaut riding a horse", "");
        Assert.All(hidden, v => Assert.Equal(0f, v));
        Assert.All(pooled, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void CaptionsPoolToTheirImagesAttributes()
    {
        var items = DemoDataset.Items;
        var (hidden, pooled) = model.EncodeText([.. items.Select(i => i.Caption)]);
        int d = model.Dimension;
        Assert.Equal(items.Count * 77 * d, hidden.Length);
        for (int k = 0; k < items.Count; k++)
        {
            Assert.Equal(DemoVocabulary.AttributeVector(items[k]), pooled.AsSpan(k * d, d).ToArray());
            Assert.Equal(DemoVocabulary.AttributeVector(items[k]), model.CaptionEmbeddings.AsSpan(k * d, d).ToArray());
        }
    }

    [Theory]
    [InlineData("a red circle", "red", DemoShape.Circle, null, null, 30)]
    [InlineData("a blue square in the top left corner", "blue", DemoShape.Square, null, DemoPosition.TopLeft, 6)]
    [InlineData("A small green star on a black background", "green", DemoShape.Star, "black", null, 5)]
    [InlineData("the big yellow triangle in the centre of the picture", "yellow", DemoShape.Triangle, null, DemoPosition.Center, 3)]
    public void PriorConcentratesOnMatchingCaptions(string prompt, string colour, DemoShape shape, string? background, DemoPosition? position, int matches)
    {
        var (_, pooled) = model.EncodeText(prompt);
        var prior = DemoUnet.PriorWeights(pooled, model.CaptionEmbeddings);
        var items = DemoDataset.Items;
        bool Matches(DemoItem i) =>
            DemoDataset.ShapeColours[i.Colour].Name == colour && i.Shape == shape &&
            (background is null || DemoDataset.BackgroundColours[i.Background].Name == background) &&
            (position is null || i.Position == position) &&
            (!prompt.Contains("small") || i.Size == DemoSize.Small) && (!prompt.Contains("big") || i.Size == DemoSize.Large);
        var matching = items.Where(Matches).ToList();
        Assert.Equal(matches, matching.Count);
        double mass = matching.Sum(i => prior[i.Index]);
        Assert.True(mass > 0.99, $"prior mass on matching captions {mass}");
        // Spread evenly over them: backgrounds, positions and sizes the prompt does not name are not favoured.
        Assert.All(matching, i => Assert.Equal(mass / matching.Count, prior[i.Index], 9));
    }

    [Fact]
    public void EmptyPromptGivesUniformPrior()
    {
        var (_, pooled) = model.EncodeText("");
        var prior = DemoUnet.PriorWeights(pooled, model.CaptionEmbeddings);
        Assert.All(prior, p => Assert.Equal(1.0 / prior.Length, p, 12));
    }
}

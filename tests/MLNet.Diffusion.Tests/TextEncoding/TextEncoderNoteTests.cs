using Microsoft.Extensions.Logging;
using MLNet.Diffusion.Tests.Support;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.TextEncoding;

namespace MLNet.Diffusion.Tests.TextEncoding;

/// <summary>
/// The text encoder's notes on prompts name each prompt as its caller counts (issue 13: the long-prompt note said
/// "Prompt 1", a position in the encoder's batch, and an empty prompt generated an unconditional image silently).
/// </summary>
public sealed class TextEncoderNoteTests : IDisposable
{
    private static readonly string LongPrompt = string.Join(' ', Enumerable.Repeat("red cat", 60));

    private readonly TempModelFolder _folder = TestModelFactory.CreateTemp();
    private readonly StableDiffusionPipeline _pipeline;

    public TextEncoderNoteTests() => _pipeline = StableDiffusionPipeline.Load(_folder.Path);

    public void Dispose()
    {
        _pipeline.Dispose();
        _folder.Dispose();
    }

    private ListLogger Encode(IReadOnlyList<string> prompts, IReadOnlyList<TextOwner>? owners = null)
    {
        var logger = new ListLogger();
        _pipeline.TextEncoder.Encode(prompts, default, logger, owners);
        return logger;
    }

    [Fact]
    public void TheLongPromptNoteNamesTheOwnerTheCallerGives()
    {
        var logger = Encode(["blue dog", LongPrompt], [TextOwner.PromptOf("data row 3"), TextOwner.PromptOf("data row 8")]);
        var note = Assert.Single(logger.Entries);
        Assert.Equal(LogLevel.Information, note.Level);
        Assert.StartsWith("The prompt of data row 8 has 120 tokens in 2 chunks", note.Message);
    }

    /// <summary>Without owners a text is named by its 1-based position in the batch (the old warning said "Prompt 1" for the second).</summary>
    [Fact]
    public void WithoutOwnersATextIsNamedByItsOneBasedPosition()
    {
        var note = Assert.Single(Encode(["blue dog", LongPrompt]).Entries);
        Assert.StartsWith("Text 2 of the batch has 120 tokens in 2 chunks", note.Message);
    }

    [Fact]
    public void AnEmptyOrBlankImagePromptIsNotedAsUnconditional()
    {
        var logger = Encode(["", "  \t ", "red cat"], [TextOwner.PromptOf("data row 1"), TextOwner.PromptOf("image 2"), TextOwner.PromptOf("data row 3")]);
        Assert.Equal(
            [
                (LogLevel.Information, "The prompt of data row 1 is empty, so its image is unconditional: generated with no prompt to follow."),
                (LogLevel.Information, "The prompt of image 2 is only spaces, so its image is unconditional: generated with no prompt to follow."),
            ],
            logger.Entries);
    }

    /// <summary>An empty negative prompt is the usual default, and a text the caller says nothing about is not taken for an image's prompt.</summary>
    [Fact]
    public void AnEmptyNegativePromptOrUnownedTextIsNotNoted()
    {
        Assert.Empty(Encode(["red cat", ""], [TextOwner.PromptOf("image 1"), TextOwner.NegativePromptOf("image 1")]).Entries);
        Assert.Empty(Encode(["", " "]).Entries);
    }

    [Fact]
    public void ATextSharedByAPromptAndANegativePromptIsAnImagePromptAndListsItsOwners()
    {
        var shared = TextOwner.Merge([TextOwner.NegativePromptOf("data row 1"), TextOwner.PromptOf("data row 2")]);
        var entry = Assert.Single(Encode([""], [shared]).Entries);
        Assert.StartsWith("The negative prompt of data row 1 and the prompt of data row 2 is empty", entry.Message);
        var many = TextOwner.Merge(Enumerable.Range(1, 6).Select(r => TextOwner.PromptOf($"data row {r}")).ToArray());
        Assert.Equal("the prompt of data row 1, the prompt of data row 2, the prompt of data row 3 and 3 more", many.Name);
    }

    [Fact]
    public void OwnersMustMatchThePrompts() =>
        Assert.Throws<ArgumentException>(() => Encode(["a", "b"], [TextOwner.PromptOf("image 1")]));
}

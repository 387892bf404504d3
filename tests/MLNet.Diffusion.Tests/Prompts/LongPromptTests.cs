using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Tests.Tokenization;
using MLNet.Diffusion.Tokenization;
using static MLNet.Diffusion.Tests.Pipeline.PipelineTestHelpers;

// Not "Tests.Prompts": that name would hide TransformTestKit.Prompts in the Transforms tests.
namespace MLNet.Diffusion.Tests.Prompting;

/// <summary>
/// Long prompts (issue 16, part 1): beyond 75 tokens a prompt is split into chunks as AUTOMATIC1111's
/// <c>tokenize_line</c> splits it (modules/sd_hijack_clip.py: a full chunk moves its split back to just after a comma among
/// its last 20 tokens, <c>BREAK</c> starts a chunk), each chunk encoded with its own start and end tokens and the chunks
/// concatenated along the sequence axis; the shorter of prompt and negative prompt is padded with empty-prompt chunks
/// (A1111's <c>CFGDenoiser.pad_cond_uncond</c>); SDXL's pooled embedding is the first chunk's. A UNet whose
/// <c>encoder_hidden_states</c> sequence axis is fixed at 77 refuses a longer prompt by name.
/// </summary>
public sealed class LongPromptTests
{
    /// <summary>SD 1.5's schedule with set_alpha_to_one = true, so DDIM ends exactly on the oracle's target.</summary>
    private const string ExactEndConfig = """{"_class_name":"PNDMScheduler","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,"set_alpha_to_one":true,"skip_prk_steps":true,"steps_offset":1,"clip_sample":false}""";

    private static readonly string[] Vocabulary = ["red", "cat", "blue", "dog", "horse", "photo", "painting", "astronaut"];

    private static readonly Lazy<ClipTokenizer> Clip = new(() => ClipTokenizer.Load(ClipTestData.Directory));

    /// <summary>Words <paramref name="from"/> … <paramref name="to"/> − 1 of an endless run of one-token words (one token each
    /// in CLIP's vocabulary and in the test vocabulary), joined by spaces.</summary>
    private static string Words(int from, int to) => string.Join(' ', Enumerable.Range(from, to - from).Select(i => Vocabulary[i % Vocabulary.Length]));

    private static PromptChunks Split(string prompt, ClipTokenizer? tokenizer = null) =>
        PromptChunker.Split(tokenizer ?? Clip.Value, PromptAttention.IsPlain(prompt) ? [new PromptFragment(prompt, 1.0)] : PromptAttention.Parse(prompt));

    /// <summary>The content ids of chunk <paramref name="c"/> (between its start token and its first end token).</summary>
    private static int[] Content(PromptChunks chunks, int c)
    {
        var tok = Clip.Value;
        var row = chunks.Ids.AsSpan(c * tok.MaxLength, tok.MaxLength);
        Assert.Equal(tok.BosId, row[0]);
        return row[1..row.IndexOf(tok.EosId)].ToArray();
    }

    private static int[] Ids(string text) => [.. Clip.Value.EncodeContent(text)];

    // ---- Chunk boundaries, hand-checked against tokenize_line ------------------------------------------

    [Fact]
    public void ExactlySeventyFiveTokensAreOneChunkAndSeventySixAreTwo()
    {
        var one = Split(Words(0, 75));
        Assert.Equal(1, one.ChunkCount);
        Assert.Equal(Ids(Words(0, 75)), Content(one, 0));
        var two = Split(Words(0, 76));
        Assert.Equal(2, two.ChunkCount);
        Assert.Equal(76, two.TokenCount);
        Assert.Equal(Ids(Words(0, 75)), Content(two, 0));
        Assert.Equal(Ids(Words(75, 76)), Content(two, 1));
        // Each chunk is start, content, end, then padding to 77 (SD 1.x pads with the end token).
        Assert.Equal(2 * 77, two.Ids.Length);
        Assert.All(two.Ids.AsSpan(77 + 2, 75).ToArray(), id => Assert.Equal(Clip.Value.PadId, id));
    }

    /// <summary>
    /// 80 tokens with a comma at index i of the first chunk (0-based). When the 76th token comes the chunk is full; the
    /// split moves back to just after the comma when 75 − i ≤ 20, i.e. for i ≥ 55 (the 56th token); at i = 54 it does not.
    /// </summary>
    [Theory]
    [InlineData(54, 75)]
    [InlineData(55, 56)]
    [InlineData(56, 57)]
    [InlineData(70, 71)]
    public void AFullChunkSplitsAfterACommaAmongItsLastTwentyTokens(int commaIndex, int firstChunkLength)
    {
        string prompt = Words(0, commaIndex) + ", " + Words(commaIndex, 79);
        var all = Ids(prompt);
        Assert.Equal(80, all.Length);
        Assert.Equal(Clip.Value.CommaId, all[commaIndex]);
        var chunks = Split(prompt);
        Assert.Equal(2, chunks.ChunkCount);
        Assert.Equal(all[..firstChunkLength], Content(chunks, 0));
        Assert.Equal(all[firstChunkLength..], Content(chunks, 1));
    }

    [Fact]
    public void ACommaNearTheEndMovesNothingWhenNoTokenFollowsAndACommaThatOverflowsStartsTheNextChunk()
    {
        // 75 tokens with a comma at 60: it fits, no split.
        Assert.Equal(1, Split(Words(0, 60) + ", " + Words(60, 74)).ChunkCount);
        // The 76th token is a comma: the full chunk closes and the comma begins the next one (tokenize_line records it, then closes).
        var chunks = Split(Words(0, 75) + ", cat");
        Assert.Equal(Ids(Words(0, 75)), Content(chunks, 0));
        Assert.Equal(Ids(", cat"), Content(chunks, 1));
    }

    [Fact]
    public void BreakStartsANewChunk()
    {
        var two = Split("red cat BREAK blue dog");
        Assert.Equal(2, two.ChunkCount);
        Assert.Equal(Ids("red cat"), Content(two, 0));
        Assert.Equal(Ids("blue dog"), Content(two, 1));
        // A leading BREAK gives an empty first chunk; a trailing one adds nothing; two in a row give an empty chunk between.
        var leading = Split("BREAK cat");
        Assert.Equal(2, leading.ChunkCount);
        Assert.Empty(Content(leading, 0));
        Assert.Equal(1, Split("cat BREAK").ChunkCount);
        var twice = Split("cat BREAK BREAK dog");
        Assert.Equal(3, twice.ChunkCount);
        Assert.Empty(Content(twice, 1));
        // BREAK right after a full chunk closes it, without an empty chunk.
        var full = Split(Words(0, 75) + " BREAK red");
        Assert.Equal(2, full.ChunkCount);
        Assert.Equal(Ids("red"), Content(full, 1));
    }

    [Fact]
    public void WeightsTravelWithTheTokensACommaSplitMoves()
    {
        var chunks = Split(Words(0, 60) + ", (" + Words(60, 80) + ":1.5)");
        Assert.Equal(2, chunks.ChunkCount);
        Assert.Equal(61, Content(chunks, 0).Length);
        Assert.Equal(20, Content(chunks, 1).Length);
        var w = chunks.Weights!;
        Assert.All(w.AsSpan(0, 77).ToArray(), x => Assert.Equal(1f, x));
        Assert.Equal(1f, w[77]);
        Assert.All(w.AsSpan(78, 20).ToArray(), x => Assert.Equal(1.5f, x));
        Assert.All(w.AsSpan(98).ToArray(), x => Assert.Equal(1f, x));
    }

    [Fact]
    public void APromptOfOneChunkGivesExactlyTheIdsAndWeightsOfTheOneChunkEncoding()
    {
        var tok = Clip.Value;
        foreach (var prompt in new[] { "", "  ", "a photo of a red cat", "red, cat, blue", Words(0, 75), "<|endoftext|> cat", "naïve café" })
        {
            var chunks = Split(prompt);
            Assert.Equal(1, chunks.ChunkCount);
            Assert.Null(chunks.Weights);
            Assert.Equal(tok.Encode(prompt), chunks.Ids);
        }
        foreach (var prompt in new[] { "(red:1.3) cat", "[blue] ((dog))", "a \\(b\\)" })
        {
            var ids = new int[77];
            var weights = new float[77];
            tok.EncodeWeighted(PromptAttention.Parse(prompt), ids, weights, out _);
            var chunks = Split(prompt);
            Assert.Equal(ids, chunks.Ids);
            Assert.Equal(weights, chunks.Weights ?? Enumerable.Repeat(1f, 77).ToArray());
        }
    }

    [Fact]
    public void APastedDocumentIsCutAtTheChunkLimitQuickly()
    {
        int max = PromptChunker.MaxChunks * 75;
        var exact = Split(Words(0, max));
        Assert.False(exact.Truncated);
        Assert.Equal(PromptChunker.MaxChunks, exact.ChunkCount);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var cut = Split(Words(0, max + 1) + " " + string.Concat(Enumerable.Repeat("red cat, ", 200_000)));
        clock.Stop();
        Assert.True(cut.Truncated);
        Assert.Equal(exact.Ids, cut.Ids);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"a 1.8 MB prompt took {clock.Elapsed}");
        // BREAK counts too: 33 chunks are cut to 32; 32 (a trailing BREAK adds none) are kept whole.
        Assert.True(Split(string.Concat(Enumerable.Repeat("cat BREAK ", PromptChunker.MaxChunks + 1))).Truncated);
        var breaks = Split(string.Concat(Enumerable.Repeat("cat BREAK ", PromptChunker.MaxChunks)));
        Assert.False(breaks.Truncated);
        Assert.Equal(PromptChunker.MaxChunks, breaks.ChunkCount);
    }

    // ---- Through the oracle UNet --------------------------------------------------------------------

    /// <summary>The test text encoder's hidden states of one chunk of text [77 × 768].</summary>
    private static float[] Hidden(string chunkText) => TestModelFactory.TextHiddenStates(TestTokenizer.Encode(chunkText));

    private static float[] Target(params string[] chunkTexts) => TestModelFactory.TargetLatent(chunkTexts.SelectMany(Hidden).ToArray(), 768);

    private static float[] Guided(float[] zu, float[] zc, float g) => TestModelFactory.ExpandTarget([.. Enumerable.Range(0, 4).Select(c => zu[c] + g * (zc[c] - zu[c]))], 8, 8);

    private static readonly GenerationOptions Exact = new() { Steps = 20, GuidanceScale = 3, Scheduler = "ddim" };

    [Fact]
    public void AThreeChunkPromptLandsOnTheOracleTargetOfAllItsChunks()
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { SchedulerConfigJson = ExactEndConfig });
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        string prompt = Words(0, 200);
        var result = pipeline.Generate([new ImagePrompt(prompt, 7)], Exact)[0];
        result.Image.Dispose();
        // Chunks of 75, 75 and 50 tokens; the empty negative prompt padded to three chunks has the empty prompt's mean.
        var expected = Guided(Target(""), Target(Words(0, 75), Words(75, 150), Words(150, 200)), 3);
        Assert.True(MaxAbsDiff(result.Latents, expected) < 2e-3, $"max error {MaxAbsDiff(result.Latents, expected)}");
        // The first chunk alone (the prompt cut at 75 tokens) is a different target: the test tells them apart.
        Assert.True(MaxAbsDiff(Guided(Target(""), Target(Words(0, 75)), 3), expected) > 0.05);
    }

    [Fact]
    public void TheShorterOfPromptAndNegativePromptIsPaddedWithEmptyPromptChunks()
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { SchedulerConfigJson = ExactEndConfig });
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        // A three-chunk prompt with a one-chunk negative prompt: the negative becomes [blue dog, empty, empty].
        var longPrompt = pipeline.Generate([new ImagePrompt(Words(0, 160), 3) { NegativePrompt = "blue dog" }], Exact)[0];
        longPrompt.Image.Dispose();
        var expected = Guided(Target("blue dog", "", ""), Target(Words(0, 75), Words(75, 150), Words(150, 160)), 3);
        Assert.True(MaxAbsDiff(longPrompt.Latents, expected) < 2e-3, $"max error {MaxAbsDiff(longPrompt.Latents, expected)}");
        // Padding by repeating the negative prompt would keep its own mean: a different answer.
        Assert.True(MaxAbsDiff(Guided(Target("blue dog"), Target(Words(0, 75), Words(75, 150), Words(150, 160)), 3), expected) > 0.05);
        // A one-chunk prompt with a two-chunk negative prompt: the prompt becomes [red cat, empty].
        var longNegative = pipeline.Generate([new ImagePrompt("red cat", 4) { NegativePrompt = Words(0, 100) }], Exact)[0];
        longNegative.Image.Dispose();
        var expected2 = Guided(Target(Words(0, 75), Words(75, 100)), Target("red cat", ""), 3);
        Assert.True(MaxAbsDiff(longNegative.Latents, expected2) < 2e-3, $"max error {MaxAbsDiff(longNegative.Latents, expected2)}");
    }

    [Fact]
    public void EmphasisIsAppliedAndItsMeanRestoredPerChunk()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        string weighted = "(" + Words(75, 90) + ":1.5)";
        var both = pipeline.EncodeText([Words(0, 75) + " " + weighted]);
        var first = pipeline.EncodeText([Words(0, 75)]);
        var second = pipeline.EncodeText([weighted]);
        Assert.Equal(first.Length + second.Length, both.Length);
        Assert.Equal(first, both[..first.Length]);
        Assert.Equal(second, both[first.Length..]);
        Assert.NotEqual(pipeline.EncodeText([Words(75, 90)]), second);
    }

    [Fact]
    public void ABatchMixingLongAndShortPromptsGivesTheImagesEachGivesAlone()
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { DataStd = 0.5f });
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var options = new GenerationOptions { Steps = 4, GuidanceScale = 3, Scheduler = "euler-a" };
        ImagePrompt[] requests =
        [
            new(Words(0, 120), 5),
            new("red cat", 6),
            new("blue dog", 7) { NegativePrompt = Words(0, 90) },
            new(Words(0, 200), 8) { GuidanceScale = 1 },
            new("horse", 9) { GuidanceScale = 1 },
        ];
        var together = pipeline.Generate(requests, options);
        for (int i = 0; i < requests.Length; i++)
        {
            var alone = pipeline.Generate([requests[i]], options)[0];
            // As the other batching tests allow: ONNX Runtime's kernels may round differently for another batch size.
            Assert.True(MaxAbsDiff(alone.Latents, together[i].Latents) < 1e-5, $"image {i} differs by {MaxAbsDiff(alone.Latents, together[i].Latents)}");
            alone.Image.Dispose();
            together[i].Image.Dispose();
        }
        // Padding "red cat" with an empty chunk to share a batch with the two-chunk prompts would change its image.
        Assert.True(MaxAbsDiff(Target("red cat"), Target("red cat", "")) > 1e-2);
    }

    [Fact]
    public void AUNetWithAFixedSequenceAxisRefusesALongPromptByNameBeforeAnyModelRuns()
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { UnetSequenceLength = 77 });
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.Equal(77, pipeline.UNet.FixedSequenceLength);
        var refused = Assert.Throws<ArgumentException>(() => pipeline.Generate([new ImagePrompt(Words(0, 80), 1)], new GenerationOptions { Steps = 2 }));
        Assert.Contains("The prompt of image 1 has 80 tokens in 2 chunks", refused.Message);
        Assert.Contains(Path.Combine("unet", "model.onnx"), refused.Message);
        Assert.Contains("fixes encoder_hidden_states' sequence axis (dimension 1) to 77", refused.Message);
        Assert.Contains("Shorten the prompt to 75 tokens", refused.Message);
        Assert.Contains("dynamic sequence axis", refused.Message);
        Assert.Equal(0, pipeline.TextEncoder.RunCount);
        // BREAK makes a second chunk too; a prompt of exactly 75 tokens still fits.
        Assert.Contains("has 2 tokens in 2 chunks", Assert.Throws<ArgumentException>(() => pipeline.Generate("red BREAK cat", 1, new GenerationOptions { Steps = 1 })).Message);
        pipeline.Generate(Words(0, 75), 1, new GenerationOptions { Steps = 1 }).Image.Dispose();
        // The dynamic axis of the default test UNet reads as 0.
        using var dynamicFolder = TestModelFactory.CreateTemp();
        using var dynamicPipeline = StableDiffusionPipeline.Load(dynamicFolder.Path);
        Assert.Equal(0, dynamicPipeline.UNet.FixedSequenceLength);
    }

    [Fact]
    public void EncodeTextRefusesPromptsOfDifferentChunkCountsInOneArray()
    {
        using var folder = TestModelFactory.CreateTemp();
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        Assert.Equal(2 * 2 * 77 * 768, pipeline.EncodeText([Words(0, 80), Words(0, 100)]).Length);
        var refused = Assert.Throws<ArgumentException>(() => pipeline.EncodeText(["red cat", Words(0, 80)]));
        Assert.Contains("different numbers of chunks of 75 tokens (1, 2)", refused.Message);
    }

    [Fact]
    public void SdxlConcatenatesBothEncodersPerChunkAndPoolsTheFirstChunk()
    {
        var o = new XlTestModelOptions();
        using var folder = XlTestModelFactory.CreateTemp(o);
        using var pipeline = StableDiffusionPipeline.Load(folder.Path);
        var e = pipeline.EncodeTexts([Words(0, 100)], null, default)[0];
        var expected = XlTestModelFactory.PromptEmbedsForPrompt(Words(0, 75), o).Concat(XlTestModelFactory.PromptEmbedsForPrompt(Words(75, 100), o)).ToArray();
        Assert.True(MaxAbsDiff(expected, e.Hidden) < 1e-5, $"max error {MaxAbsDiff(expected, e.Hidden)}");
        Assert.True(MaxAbsDiff(XlTestModelFactory.PooledForPrompt(Words(0, 75), o), e.Pooled) < 1e-5);
        Assert.True(MaxAbsDiff(XlTestModelFactory.PooledForPrompt(Words(75, 100), o), e.Pooled) > 1e-2);
        // And the generation through the SDXL oracle UNet takes it (a batch of a long and a short prompt, each as alone).
        var options = new GenerationOptions { Steps = 2, GuidanceScale = 2 };
        var together = pipeline.Generate([new ImagePrompt(Words(0, 100), 1), new ImagePrompt("red cat", 2)], options);
        var alone = pipeline.Generate([new ImagePrompt(Words(0, 100), 1)], options)[0];
        Assert.True(MaxAbsDiff(alone.Latents, together[0].Latents) < 1e-5);
        foreach (var image in together.Append(alone)) image.Image.Dispose();
    }
}

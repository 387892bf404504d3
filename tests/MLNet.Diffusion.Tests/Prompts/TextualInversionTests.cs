using Microsoft.Extensions.DependencyInjection;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.Diffusion.ModelBuilder.Onnx;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.Cli;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Tests.Transforms;
using MLNet.Diffusion.TextEncoding;
using MLNet.Diffusion.Tokenization;

// The folder is Prompts/; the namespace is the text-encoding tests' (a 'Prompts' namespace would hide the Prompts members
// other tests use).
namespace MLNet.Diffusion.Tests.TextEncoding;

/// <summary>
/// Textual inversion wired end to end (issue 16, part 3): trigger words become ids beyond the vocabulary, the text
/// encoder's token table is found by its shape and handed to ONNX Runtime extended, and the trigger's positions carry the
/// file's vectors at the encoder's output, for SD 1.x's one encoder and SDXL's two.
/// </summary>
public sealed class TextualInversionTests : IDisposable
{
    private const string TableName = "text_model.embeddings.token_embedding.weight";

    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    private static int Vocabulary => TestTokenizer.Vocabulary.Count;

    /// <summary>Values exact in float16 (multiples of 1/64 below 2 in magnitude).</summary>
    private static float[] Values(int count, int seed) =>
        Enumerable.Range(0, count).Select(i => ((i * 37 + seed * 11) % 201 - 100) / 64f).ToArray();

    /// <summary>
    /// A CLIP-shaped text encoder: h = Gather(table [V, D], input_ids) + position[p]. SD 1.x form: last_hidden_state = h and
    /// pooler_output = mean over positions. SDXL form: hidden_states.0 = h, hidden_states.1 = h (the penultimate state the
    /// pipeline reads), hidden_states.2 = 2h, and text_embeds = mean (second encoder) or pooler_output (first).
    /// </summary>
    private string WriteEncoder(string name, int width, bool xl = false, bool second = false, bool fp16 = false, bool external = false,
        int? tableRows = null, bool twoTables = false)
    {
        int len = TestTokenizer.MaxLength;
        var g = new OnnxGraphBuilder("clip_like");
        var ids = g.Input("input_ids", OnnxElementType.Int32, "batch", len);
        var ids64 = g.Cast(ids, OnnxElementType.Int64);
        int rows = tableRows ?? Vocabulary;
        var tableValues = Values(rows * width, width);
        var table = fp16 ? g.InitializerHalf(TableName, tableValues, rows, width) : g.Initializer(TableName, tableValues, rows, width);
        var tokens = g.Gather(table, ids64);
        if (fp16) tokens = g.Cast(tokens, OnnxElementType.Float);
        if (twoTables) tokens = g.Add(tokens, g.Gather(g.Initializer("other_table", Values(rows * width, 3), rows, width), ids64));
        var h = g.Add(tokens, g.Initializer("position_embedding", Values(len * width, 7), len, width));
        var pooled = g.ReduceMean(h, [1], keepDims: false);
        if (!xl)
        {
            g.Identity(h, "last_hidden_state");
            g.Output("last_hidden_state", OnnxElementType.Float, "batch", len, width);
            g.Identity(pooled, "pooler_output");
            g.Output("pooler_output", OnnxElementType.Float, "batch", width);
        }
        else
        {
            g.Identity(pooled, second ? "text_embeds" : "pooler_output");
            g.Output(second ? "text_embeds" : "pooler_output", OnnxElementType.Float, "batch", width);
            g.Identity(h, "hidden_states.0");
            g.Identity(h, "hidden_states.1");
            g.NodeNamed("Mul", [h, g.Scalar(2f)], "hidden_states.2");
            for (int k = 0; k < 3; k++) g.Output($"hidden_states.{k}", OnnxElementType.Float, "batch", len, width);
        }
        string path = Path.Combine(_folder.Path, name, "model.onnx");
        g.Save(path, external ? "model.onnx_data" : null, externalThresholdBytes: 256);
        return path;
    }

    private ClipTokenizer Tokenizer(string? padToken = null)
    {
        string dir = Path.Combine(_folder.Path, "tokenizer" + (padToken is null ? "" : "_2"));
        TestTokenizer.Write(dir, padToken);
        return ClipTokenizer.Load(dir);
    }

    private static OnnxSessionFactory Sessions() => new(new DiffusionRuntimeOptions());

    private static TextualInversionSet Set(params (string Path, string? Token)[] files) =>
        TextualInversionSet.Load(files.Select(f => new KeyValuePair<string, string?>(f.Path, f.Token)))!;

    /// <summary>The expected encoder output at one position: the vector plus the position row.</summary>
    private static float[] Expected(ReadOnlySpan<float> vector, int position, int width)
    {
        var pos = Values(TestTokenizer.MaxLength * width, 7);
        var result = new float[width];
        for (int d = 0; d < width; d++) result[d] = vector[d] + pos[position * width + d];
        return result;
    }

    private static float[] Row(float[] hidden, int row, int position, int width) =>
        hidden.AsSpan((row * TestTokenizer.MaxLength + position) * width, width).ToArray();

    [Fact]
    public void Sd1TriggerPositionsCarryTheFileVectors()
    {
        const int width = 8;
        var vectors = Values(2 * width, 5);
        string file = new SafeTensorsWriter().F32("emb_params", [2, width], vectors).Save(_folder.File("MyStyle.safetensors"));
        string model = WriteEncoder("text_encoder", width);
        using var encoder = new TextEncoder("text_encoder", model, Tokenizer(), Sessions(), TextEncoderLayer.Last, Set((file, null)));

        var ids = encoder.Tokenizer.Encode("a photo of mystyle, red");
        int at = Array.IndexOf(ids, Vocabulary);
        Assert.True(at > 0, string.Join(" ", ids));
        Assert.Equal(Vocabulary + 1, ids[at + 1]);
        Assert.Equal(TestTokenizer.Encode("a photo of")[1..at], ids[1..at].Select(i => (long)i).ToArray());

        var hidden = encoder.Encode(["a photo of mystyle, red", "MYSTYLE"]);
        for (int v = 0; v < 2; v++)
            Assert.Equal(Expected(vectors.AsSpan(v * width, width), at + v, width), Row(hidden, 0, at + v, width));
        // Upper case in the prompt: the trigger is matched as prompts are prepared (lower-cased), right after the start token.
        Assert.Equal(Expected(vectors.AsSpan(0, width), 1, width), Row(hidden, 1, 1, width));
        Assert.Equal(Expected(vectors.AsSpan(width, width), 2, width), Row(hidden, 1, 2, width));
    }

    [Fact]
    public void APromptWithoutTheTriggerEncodesBitIdenticallyToNoEmbeddings()
    {
        const int width = 8;
        string file = new SafeTensorsWriter().F32("emb_params", [3, width], Values(3 * width, 9)).Save(_folder.File("mystyle.safetensors"));
        string model = WriteEncoder("text_encoder", width);
        var tokenizer = Tokenizer();
        using var plain = new TextEncoder("text_encoder", model, tokenizer, Sessions(), TextEncoderLayer.Last);
        using var withEmbedding = new TextEncoder("text_encoder", model, tokenizer, Sessions(), TextEncoderLayer.Last, Set((file, null)));
        string[] prompts = ["a photo of a cat", "", "mystyleish painting", "my style", "(red:1.3) dog, [blue]", "mystyles", "amystyle"];

        var a = plain.EncodeWithPooled(prompts);
        var b = withEmbedding.EncodeWithPooled(prompts);

        Assert.Equal(a.Hidden, b.Hidden);
        Assert.Equal(a.Pooled, b.Pooled);
        foreach (var prompt in prompts) Assert.Equal(tokenizer.Encode(prompt), withEmbedding.Tokenizer.Encode(prompt));
    }

    [Fact]
    public void WeightedPromptsFindTheTriggerInsideBrackets()
    {
        const int width = 8;
        var vector = Values(width, 4);
        string file = new SafeTensorsWriter().F32("emb_params", [width], vector).Save(_folder.File("glow.safetensors"));
        string model = WriteEncoder("text_encoder", width);
        using var encoder = new TextEncoder("text_encoder", model, Tokenizer(), Sessions(), TextEncoderLayer.Last, Set((file, null)));

        var ids = new int[TestTokenizer.MaxLength];
        var weights = new float[TestTokenizer.MaxLength];
        encoder.Tokenizer.EncodeWeighted(PromptAttention.Parse("a cat, (glow:1.5)"), ids, weights, out _);

        int at = Array.IndexOf(ids, Vocabulary);
        Assert.True(at > 0);
        Assert.Equal(1.5f, weights[at]);
    }

    [Fact]
    public void SdxlEncodersEachTakeTheirOwnVectors()
    {
        const int widthL = 8, widthG = 12;
        var clipL = Values(2 * widthL, 1);
        var clipG = Values(2 * widthG, 2);
        string file = new SafeTensorsWriter().F16("clip_l", [2, widthL], clipL).F16("clip_g", [2, widthG], clipG).Save(_folder.File("xl-emb.safetensors"));
        var set = Set((file, "<sks>"));
        using var first = new TextEncoder("text_encoder", WriteEncoder("text_encoder", widthL, xl: true), Tokenizer(), Sessions(), TextEncoderLayer.Penultimate, set);
        using var second = new TextEncoder("text_encoder_2", WriteEncoder("text_encoder_2", widthG, xl: true, second: true), Tokenizer("!"), Sessions(), TextEncoderLayer.Penultimate, set);
        using var prompts = new PromptEncoder([first, second]);

        const string prompt = "a <sks> dog";
        int at = Array.IndexOf(first.Tokenizer.Encode(prompt), Vocabulary);
        Assert.Equal(at, Array.IndexOf(second.Tokenizer.Encode(prompt), Vocabulary));
        var encoded = prompts.Encode([prompt]);

        int width = widthL + widthG;
        for (int v = 0; v < 2; v++)
        {
            var row = Row(encoded.Hidden, 0, at + v, width);
            Assert.Equal(Expected(clipL.AsSpan(v * widthL, widthL), at + v, widthL), row[..widthL]);
            Assert.Equal(Expected(clipG.AsSpan(v * widthG, widthG), at + v, widthG), row[widthL..]);
        }
    }

    [Fact]
    public void Float16TablesInExternalDataAreExtendedToo()
    {
        const int width = 8;
        var vector = Values(width, 6);
        string file = new SafeTensorsWriter().F32("<thing>", [width], vector).Save(_folder.File("learned_embeds.safetensors"));
        string model = WriteEncoder("text_encoder", width, fp16: true, external: true);
        Assert.True(File.Exists(Path.Combine(Path.GetDirectoryName(model)!, "model.onnx_data")));
        using var encoder = new TextEncoder("text_encoder", model, Tokenizer(), Sessions(), TextEncoderLayer.Last, Set((file, null)));

        var hidden = encoder.Encode(["<thing>"]);

        Assert.Equal(Expected(vector, 1, width), Row(hidden, 0, 1, width));
        Assert.Equal(encoder.Tokenizer.Encode("a cat"), Tokenizer().Encode("a cat"));
    }

    [Fact]
    public void AnEncoderWithoutAVocabularyTableIsRefusedWithItsTablesListed()
    {
        string file = new SafeTensorsWriter().F32("emb_params", [1, 768], Values(768, 1)).Save(_folder.File("style.safetensors"));
        string model = Path.Combine(_folder.Path, "mod_tables", "model.onnx");
        TestModelGraphs.TextEncoder(new TestModelOptions()).Save(model); // tables of 61 and 67 rows, looked up by id mod 61/67

        var e = Assert.Throws<InvalidDataException>(() =>
            new TextEncoder("text_encoder", model, Tokenizer(), Sessions(), TextEncoderLayer.Last, Set((file, null))));

        Assert.Contains("no token-embedding table", e.Message);
        Assert.Contains($"[{Vocabulary}, width]", e.Message);
        Assert.Contains("'token_table_a' [61, 768]", e.Message);
        Assert.Contains(model, e.Message);
    }

    [Fact]
    public void TwoTablesOfTheVocabularyShapeAreRefusedAsAmbiguous()
    {
        string file = new SafeTensorsWriter().F32("emb_params", [8], Values(8, 1)).Save(_folder.File("style.safetensors"));
        string model = WriteEncoder("text_encoder", 8, twoTables: true);

        var e = Assert.Throws<InvalidDataException>(() =>
            new TextEncoder("text_encoder", model, Tokenizer(), Sessions(), TextEncoderLayer.Last, Set((file, null))));

        Assert.Contains("cannot be told by its shape", e.Message);
        Assert.Contains(TableName, e.Message);
        Assert.Contains("other_table", e.Message);
    }

    [Fact]
    public void AnEmbeddingOfAnotherWidthIsRefusedNamingTheFamily()
    {
        string file = new SafeTensorsWriter().F32("emb_params", [2, 8], Values(16, 1)).Save(_folder.File("sd15-style.safetensors"));
        string model = WriteEncoder("text_encoder_2", 12, xl: true, second: true);

        var e = Assert.Throws<InvalidDataException>(() =>
            new TextEncoder("text_encoder_2", model, Tokenizer("!"), Sessions(), TextEncoderLayer.Penultimate, Set((file, null))));

        Assert.Contains("sd15-style.safetensors", e.Message);
        Assert.Contains("is 12 wide", e.Message);
        Assert.Contains("another model family", e.Message);
    }

    [Fact]
    public void FilesAreCheckedBeforeAnythingIsLoaded()
    {
        Assert.Throws<FileNotFoundException>(() => Set((_folder.File("missing.safetensors"), null)));
        File.WriteAllText(_folder.File("notes.txt"), "x");
        Assert.Contains("expected .safetensors", Assert.Throws<InvalidDataException>(() => Set((_folder.File("notes.txt"), null))).Message);
        File.WriteAllBytes(_folder.File("old.pt"), [0x80, 2, 0, 0, 0, 0, 0, 0, 0]);
        Assert.Contains("pickle", Assert.Throws<InvalidDataException>(() => Set((_folder.File("old.pt"), null))).Message);
        using (var big = File.Create(_folder.File("big.safetensors"))) big.SetLength(TextualInversionSet.MaxFileBytes + 1);
        Assert.Contains("MiB", Assert.Throws<InvalidDataException>(() => Set((_folder.File("big.safetensors"), null))).Message);
        string a = new SafeTensorsWriter().F32("emb_params", [8], Values(8, 1)).Save(_folder.File("style.safetensors"));
        string b = new SafeTensorsWriter().F32("emb_params", [8], Values(8, 2)).Save(_folder.File("other.safetensors"));
        Assert.Contains("also given by", Assert.Throws<InvalidDataException>(() => Set((a, null), (b, "STYLE"))).Message);
    }

    [Theory]
    [InlineData("a myemb, style", true)]
    [InlineData("myemb", true)]
    [InlineData("(myemb)", true)]
    [InlineData("myemb's look", true)]
    [InlineData("myemb2", true)] // CLIP splits every digit off, so the word ends before it
    [InlineData("myembroidery", false)]
    [InlineData("amyemb", false)]
    [InlineData("my emb", false)]
    public void TriggersMatchWholeWordsAsClipSplitsThem(string prepared, bool found)
    {
        var added = new AddedTokens([("myemb", [1000])]);
        var ids = added.Encode(prepared, 100, (text, _) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(_ => 1).ToArray());
        Assert.Equal(found, ids.Contains(1000));
    }

    [Fact]
    public void TheLongerTriggerWinsAndSymbolsBoundTriggersThatHaveThem()
    {
        var added = new AddedTokens([("cat", [1000]), ("<cat-toy>", [2000, 2001]), ("cat-toy", [3000])]);
        static IReadOnlyList<int> Words(string text, int _) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(_ => 1).ToArray();

        Assert.Equal([1, 2000, 2001, 1], added.Encode("a <cat-toy> backpack", 100, Words));
        Assert.Equal([3000, 1], added.Encode("cat-toy backpack", 100, Words));
        Assert.Equal([1000, 1], added.Encode("cat toy", 100, Words));
        Assert.Equal([1, 2000], added.Encode("a <cat-toy> backpack", 2, Words));
        Assert.Throws<ArgumentException>(() => new AddedTokens([("Cat", [1]), ("cat", [2])]));
        Assert.Throws<ArgumentException>(() => new AddedTokens([("two words", [1])]));
    }

    [Fact]
    public void ModelsLoadedWithDifferentEmbeddingsDoNotShareSessions()
    {
        using var model = EmbeddingReadyFolder(out _);
        string file = new SafeTensorsWriter().F32("emb_params", [8], Values(8, 1)).Save(_folder.File("style.safetensors"));
        var none = new DiffusionRuntimeOptions();
        var with = new DiffusionRuntimeOptions { TextualInversions = { [file] = null } };
        var renamed = new DiffusionRuntimeOptions { TextualInversions = { [file] = "other" } };

        using var a = LoadedModelStore.Acquire(model.Path, none);
        using var b = LoadedModelStore.Acquire(model.Path, with);
        using var c = LoadedModelStore.Acquire(model.Path, renamed);
        using var d = LoadedModelStore.Acquire(model.Path, with.Clone());

        Assert.NotSame(a.Model, b.Model);
        Assert.NotSame(b.Model, c.Model);
        Assert.Same(b.Model, d.Model);
        Assert.Equal(Vocabulary, b.Model.PromptEncoder.Primary.Tokenizer.Encode("style")[1]);
        Assert.Equal(Vocabulary, c.Model.PromptEncoder.Primary.Tokenizer.Encode("other")[1]);

        // The same path after the file changed is another model (its vectors may differ).
        new SafeTensorsWriter().F32("emb_params", [2, 8], Values(16, 2)).Save(file);
        using var e = LoadedModelStore.Acquire(model.Path, with);
        Assert.NotSame(b.Model, e.Model);
        Assert.Equal([Vocabulary, Vocabulary + 1], e.Model.PromptEncoder.Primary.Tokenizer.Encode("style")[1..3]);
    }

    /// <summary>
    /// The CLI, end to end: an embedding whose vector is the table row of the word "cat" makes "photo of kitty" give the
    /// image of "photo of cat", pixel for pixel, with the trigger from the file name and from FILE=TOKEN (a file whose name
    /// has '=' in it), and in low-memory mode; without the
    /// embedding, "kitty" is ordinary text and the image differs.
    /// </summary>
    [Fact]
    public void CliEmbeddingFlagMakesTheTriggerWordMeanItsVector()
    {
        using var model = EmbeddingReadyFolder(out int width);
        var table = Values(Vocabulary * width, width);
        int cat = TestTokenizer.TokenId("cat</w>");
        var catRow = table.AsSpan(cat * width, width).ToArray();
        string kitty = new SafeTensorsWriter().F32("emb_params", [1, width], catRow).Save(_folder.File("kitty.safetensors"));
        string other = new SafeTensorsWriter().F32("emb_params", [1, width], catRow).Save(_folder.File("emb=v1.safetensors"));
        using var dir = new TempDir();
        string[] common = ["--model", model.Path, "--seed", "3", "--steps", "2"];

        CliRun.Ok(["generate", "photo of cat", .. common, "--out", dir["cat"]]);
        CliRun.Ok(["generate", "photo of kitty", .. common, "--embedding", kitty, "--out", dir["named"]]);
        CliRun.Ok(["generate", "photo of mycat", .. common, "--embedding", other + "=mycat", "--out", dir["token"]]);
        CliRun.Ok(["generate", "photo of kitty", .. common, "--embedding", kitty, "--low-memory", "--out", dir["low"]]);
        CliRun.Ok(["generate", "photo of kitty", .. common, "--out", dir["plain"]]);
        var missing = CliRun.Run(["generate", "photo", .. common, "--embedding", _folder.File("none.safetensors"), "--out", dir["x"]]);

        var expected = Pixels(dir["cat"]);
        Assert.Equal(expected, Pixels(dir["named"]));
        Assert.Equal(expected, Pixels(dir["token"]));
        Assert.Equal(expected, Pixels(dir["low"])); // low memory: the encoder (and its extended table) is loaded per use
        Assert.NotEqual(expected, Pixels(dir["plain"]));
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("none.safetensors", missing.Err);
    }

    /// <summary>ML.NET: <see cref="DiffusionOptions.TextualInversions"/> reaches the model; "photo of kitty" with the
    /// cat-row embedding gives the image of "photo of cat" (same seed), and without it another image.</summary>
    [Fact]
    public void MlNetOptionsCarryTheEmbeddings()
    {
        using var model = EmbeddingReadyFolder(out int width);
        var catRow = Values(Vocabulary * width, width).AsSpan(TestTokenizer.TokenId("cat</w>") * width, width).ToArray();
        string kitty = new SafeTensorsWriter().F32("emb_params", [1, width], catRow).Save(_folder.File("kitty.safetensors"));
        var ml = new MLContext(seed: 1);
        IDataView Rows(string prompt) => ml.Data.LoadFromEnumerable(new[] { new PromptRow { Prompt = prompt } });
        byte[] Image(string prompt, DiffusionOptions options)
        {
            var data = Rows(prompt);
            return Assert.Single(TransformTestKit.ReadImages(ml.Transforms.GenerateImages("Image", nameof(PromptRow.Prompt), options).Fit(data).Transform(data)));
        }
        var plain = TransformTestKit.Options(model.Path);
        var with = plain.Clone();
        with.TextualInversions[kitty] = null;

        var cat = Image("photo of cat", plain);

        Assert.Empty(plain.TextualInversions); // the clone's list is its own
        Assert.Equal(cat, Image("photo of kitty", with));
        Assert.NotEqual(cat, Image("photo of kitty", plain));

        // Saved with the model and read again on load.
        var kittyRows = Rows("photo of kitty");
        string saved = _folder.File("model.zip");
        DiffusionModelSaver.Save(ml, ml.Transforms.GenerateImages("Image", nameof(PromptRow.Prompt), with).Fit(kittyRows), kittyRows.Schema, saved);
        IDictionary<string, string?>? loadedEmbeddings = null;
        using var loaded = (IDisposable)DiffusionModelSaver.Load(ml, saved, out _, configure: o => loadedEmbeddings = o.TextualInversions);
        Assert.Equal(new Dictionary<string, string?> { [kitty] = null }, loadedEmbeddings);
        Assert.Equal(cat, Assert.Single(TransformTestKit.ReadImages(((ITransformer)loaded).Transform(kittyRows))));
    }

    /// <summary>Dependency injection: <c>StableDiffusionServiceOptions.Runtime.TextualInversions</c> reaches the model.</summary>
    [Fact]
    public void ServiceOptionsCarryTheEmbeddings()
    {
        using var model = EmbeddingReadyFolder(out _);
        string file = new SafeTensorsWriter().F32("emb_params", [8], Values(8, 1)).Save(_folder.File("style.safetensors"));
        var services = new ServiceCollection();
        services.AddStableDiffusion(o =>
        {
            o.ModelPath = model.Path;
            o.Runtime.TextualInversions[file] = "mystyle";
        });
        using var container = services.BuildServiceProvider();

        var pipeline = container.GetRequiredService<StableDiffusionPipeline>();

        Assert.Equal(Vocabulary, pipeline.TextEncoder.Tokenizer.Encode("mystyle")[1]);
    }

    private static byte[] Pixels(string directory)
    {
        using var image = MLImage.CreateFromFile(Directory.GetFiles(directory, "*.png").Single());
        return image.Pixels.ToArray();
    }

    /// <summary>The SD 1.x test model with its text encoder replaced by the CLIP-shaped one (a real [V, D] token table).</summary>
    private TempModelFolder EmbeddingReadyFolder(out int width)
    {
        width = 8;
        var folder = TestModelFactory.CreateTemp(new TestModelOptions { EmbeddingWidth = width });
        string encoder = WriteEncoder("sd1_encoder", width);
        File.Copy(encoder, Path.Combine(folder.Path, "text_encoder", "model.onnx"), overwrite: true);
        return folder;
    }
}

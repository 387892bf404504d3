using MLNet.Diffusion.TextEncoding;

namespace MLNet.Diffusion.Tests.TextEncoding;

/// <summary>
/// Textual-inversion embedding files (issue 16): A1111's, SDXL's and diffusers' layouts give each trigger word its
/// vectors per text-encoder width; PyTorch pickles are refused without being opened as pickles.
/// </summary>
public sealed class TextualInversionFileTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    /// <summary>Values exact in F16 and BF16 alike (multiples of 1/128 below 1 in magnitude), varying along each row.</summary>
    private static float[] Vectors(int count, int width) =>
        Enumerable.Range(0, count * width).Select(i => ((i * 7 + 3) % 251 - 125) / 128f).ToArray();

    [Fact]
    public void A1111EmbParamsIsOneEmbeddingNamedByTheFile()
    {
        float[] values = Vectors(2, 768);
        string path = new SafeTensorsWriter().F16("emb_params", [2, 768], values).Save(_folder.File("my-style.safetensors"));

        var file = TextualInversionFile.Load(path);

        Assert.Equal("A1111", file.Layout);
        var embedding = Assert.Single(file.Embeddings);
        Assert.Equal("my-style", embedding.Token);
        var vectors = Assert.Single(embedding.Vectors);
        Assert.Equal((768, 2, "emb_params"), (vectors.Width, vectors.Count, vectors.Tensor));
        Assert.Equal(values, vectors.Values);
        Assert.Equal(values[768 + 5], vectors.Row(1)[5]);
        Assert.Same(vectors, embedding.ForWidth(768));
        Assert.Null(embedding.ForWidth(1024));
    }

    [Fact]
    public void A1111StringToParamIsReadFromItsFlattenedName()
    {
        float[] values = Vectors(3, 1024);
        string path = new SafeTensorsWriter().F32("string_to_param.*", [3, 1024], values).Save(_folder.File("sd2-thing.safetensors"));

        var file = TextualInversionFile.Load(path);

        Assert.Equal("A1111", file.Layout);
        var embedding = Assert.Single(file.Embeddings);
        Assert.Equal("sd2-thing", embedding.Token);
        Assert.Equal(values, embedding.ForWidth(1024)!.Values);
    }

    [Fact]
    public void SdxlGivesEachTextEncoderItsOwnVectors()
    {
        float[] l = Vectors(2, 768), g = Vectors(2, 1280).Select(v => -v).ToArray();
        string path = new SafeTensorsWriter().Meta("trained_with", "kohya").BF16("clip_g", [2, 1280], g).F16("clip_l", [2, 768], l)
            .Save(_folder.File("xl-style.safetensors"));

        var file = TextualInversionFile.Load(path);

        Assert.Equal("SDXL", file.Layout);
        var embedding = Assert.Single(file.Embeddings);
        Assert.Equal("xl-style", embedding.Token);
        Assert.Equal(l, embedding.ForWidth(768)!.Values);
        Assert.Equal("clip_l", embedding.ForWidth(768)!.Tensor);
        Assert.Equal(g, embedding.ForWidth(1280)!.Values); // BF16-exact values
        Assert.Equal(2, embedding.ForWidth(1280)!.Count);
    }

    [Fact]
    public void DiffusersNamesEachEmbeddingByItsTensor()
    {
        float[] one = Vectors(1, 768), two = Vectors(2, 768);
        string path = new SafeTensorsWriter().F32("<cat-toy>", [768], one).F32("<dog>", [2, 768], two)
            .Save(_folder.File("learned_embeds.safetensors"));

        var file = TextualInversionFile.Load(path);

        Assert.Equal("diffusers", file.Layout);
        Assert.Equal(["<cat-toy>", "<dog>"], file.Embeddings.Select(e => e.Token));
        Assert.Equal(1, file.Embeddings[0].ForWidth(768)!.Count);
        Assert.Equal(one, file.Embeddings[0].ForWidth(768)!.Values);
        Assert.Equal(two, file.Embeddings[1].ForWidth(768)!.Values);
    }

    [Fact]
    public void AGivenTriggerWordReplacesTheFileName()
    {
        string a1111 = new SafeTensorsWriter().F32("emb_params", [1, 4], 1, 2, 3, 4).Save(_folder.File("x.safetensors"));
        string diffusers = new SafeTensorsWriter().F32("<old>", [4], 1, 2, 3, 4).Save(_folder.File("y.safetensors"));
        string two = new SafeTensorsWriter().F32("<a>", [4], 1, 2, 3, 4).F32("<b>", [4], 1, 2, 3, 4).Save(_folder.File("z.safetensors"));

        Assert.Equal("<mine>", Assert.Single(TextualInversionFile.Load(a1111, "<mine>").Embeddings).Token);
        Assert.Equal("<mine>", Assert.Single(TextualInversionFile.Load(diffusers, "<mine>").Embeddings).Token);
        AssertRefused(() => TextualInversionFile.Load(two, "<mine>"), two, "a trigger word was given but the file holds 2 embeddings");
    }

    [Theory]
    [InlineData("embedding.pt")]
    [InlineData("learned_embeds.bin")]
    [InlineData("model.ckpt")]
    [InlineData("EMBEDDING.PTH")]
    public void APickleIsRefusedByItsExtension(string name)
    {
        string path = _folder.File(name);
        File.WriteAllBytes(path, [0x80, 0x02, 0x7D, 0x71, 0x00, 0x28, 0x58, 0x0F]);
        AssertPickleRefused(path);
    }

    [Theory]
    [InlineData(new byte[] { 0x50, 0x4B, 0x03, 0x04, 0x00, 0x00, 0x08, 0x08, 0x00, 0x00 })] // torch.save's zip archive
    [InlineData(new byte[] { 0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20 })] // torch's legacy pickle
    [InlineData(new byte[] { 0x80, 0x04, 0x95, 0x35, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00 })] // a protocol-4 pickle
    public void APickleIsRefusedByItsContentWhateverItsName(byte[] head)
    {
        string path = _folder.File("renamed.safetensors");
        File.WriteAllBytes(path, head);
        AssertPickleRefused(path);
    }

    [Fact]
    public void ASafetensorsFileWhoseLengthStartsLikeAPickleIsStillRead()
    {
        // A header of 0x0280 = 640 bytes begins the file with 0x80 0x02, as a pickle does; the zero upper bytes tell them apart.
        string json = "{\"emb_params\": {\"dtype\": \"F32\", \"shape\": [1, 2], \"data_offsets\": [0, 8]}}".PadRight(640);
        byte[] data = [.. BitConverter.GetBytes(1f), .. BitConverter.GetBytes(2f)];
        string path = SafeTensorsWriter.WriteFile(_folder.File("p.safetensors"), System.Text.Encoding.UTF8.GetBytes(json), data);
        byte[] head = File.ReadAllBytes(path)[..2];
        Assert.Equal(new byte[] { 0x80, 0x02 }, head);
        Assert.Equal([1f, 2f], Assert.Single(TextualInversionFile.Load(path).Embeddings).Vectors[0].Values);
    }

    public static TheoryData<string, SafeTensorsWriter, string> Unusable => new()
    {
        { "empty", new SafeTensorsWriter(), "it holds no tensors" },
        { "sdxl-counts", new SafeTensorsWriter().F32("clip_l", [2, 768], Vectors(2, 768)).F32("clip_g", [1, 1280], Vectors(1, 1280)),
            "'clip_l' has 2 vectors but 'clip_g' has 1" },
        { "sdxl-half", new SafeTensorsWriter().F32("clip_l", [1, 768], Vectors(1, 768)), "it has 'clip_l' without 'clip_g'" },
        { "two-a1111", new SafeTensorsWriter().F32("string_to_param.*", [4], 1, 2, 3, 4).F32("emb_params", [4], 1, 2, 3, 4),
            "it has 2 A1111 embedding tensors" },
        { "int-dtype", new SafeTensorsWriter().Raw("emb_params", "I32", [1, 4], new byte[16]), "'emb_params' holds I32 values; embedding vectors are F32, F16 or BF16" },
        { "f64-dtype", new SafeTensorsWriter().Raw("emb_params", "F64", [1, 2], new byte[16]), "holds F64 values" },
        { "rank-3", new SafeTensorsWriter().F32("emb_params", [1, 1, 4], 1, 2, 3, 4), "shape [1, 1, 4]; an embedding is [width] or [vectors, width]" },
        { "no-values", new SafeTensorsWriter().F32("emb_params", [0, 768]), "shape [0, 768], with no values" },
        { "nan", new SafeTensorsWriter().F32("emb_params", [2, 2], 1, 2, 3, float.NaN), "holds the value NaN at vector 1, element 1" },
        { "space", new SafeTensorsWriter().F32("two words", [2], 1, 2), "the trigger word 'two words' is empty or contains white space" },
    };

    [Theory]
    [MemberData(nameof(Unusable))]
    public void AnUnusableEmbeddingIsRefusedWithItsReason(string name, SafeTensorsWriter writer, string reason)
    {
        string path = writer.Save(_folder.File(name + ".safetensors"));
        AssertRefused(() => TextualInversionFile.Load(path), path, reason);
    }

    [Fact]
    public void AMalformedFileIsRefusedByTheReader()
    {
        string path = SafeTensorsWriter.WriteFile(_folder.File("huge.safetensors"), 100_000_000, "{}"u8.ToArray(), []);
        var error = Assert.Throws<InvalidDataException>(() => TextualInversionFile.Load(path));
        Assert.Contains("over the 16 MiB", error.Message);
    }

    private static void AssertPickleRefused(string path)
    {
        var error = Assert.Throws<InvalidDataException>(() => TextualInversionFile.Load(path));
        Assert.Contains($"'{path}' is a PyTorch pickle; convert it to .safetensors", error.Message);
        Assert.Contains("Pickles are never loaded, since they can run code.", error.Message);
    }

    private static void AssertRefused(Func<object> load, string path, string reason)
    {
        var error = Assert.Throws<InvalidDataException>(load);
        Assert.Contains($"'{path}' is not a usable textual-inversion embedding", error.Message);
        Assert.Contains(reason, error.Message);
    }
}

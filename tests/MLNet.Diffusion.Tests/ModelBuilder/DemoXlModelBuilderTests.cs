using System.Text.Json;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Schedulers;
using Xunit.Abstractions;

namespace MLNet.Diffusion.Tests.ModelBuilder;

[Collection(DemoXlCollection.Name)]
public class DemoXlModelBuilderTests(DemoXlModelFixture model, ITestOutputHelper output)
{
    private static readonly string[] Files =
    [
        "model_index.json", "scheduler/scheduler_config.json",
        "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json",
        "tokenizer_2/vocab.json", "tokenizer_2/merges.txt", "tokenizer_2/tokenizer_config.json", "tokenizer_2/special_tokens_map.json",
        "text_encoder/model.onnx", "text_encoder/config.json", "text_encoder_2/model.onnx", "text_encoder_2/config.json",
        "unet/model.onnx", "unet/config.json",
        "vae_encoder/model.onnx", "vae_encoder/config.json", "vae_decoder/model.onnx", "vae_decoder/config.json",
        "README.md", DemoModelBuilder.StampFile,
    ];

    private JsonElement Json(string relative)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(model.Folder, relative)));
        return doc.RootElement.Clone();
    }

    [Fact]
    public void FolderHasTheSdxlLayoutAndItsConfigs()
    {
        var built = Directory.EnumerateFiles(model.Folder, "*", SearchOption.AllDirectories).Select(p => Path.GetRelativePath(model.Folder, p)).Order().ToList();
        Assert.Equal(Files.Select(f => f.Replace('/', Path.DirectorySeparatorChar)).Order(), built);
        long size = DemoModelBuilder.FolderSize(model.Folder);
        output.WriteLine($"demo XL model folder: {size} bytes ({size / 1048576.0:F2} MiB)");
        Assert.True(size < 5 * 1024 * 1024);

        var index = Json("model_index.json");
        Assert.Equal("StableDiffusionXLPipeline", index.GetProperty("_class_name").GetString());
        Assert.True(index.GetProperty("force_zeros_for_empty_prompt").GetBoolean());
        foreach (var part in new[] { "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae_decoder", "vae_encoder", "scheduler" })
            Assert.Equal(JsonValueKind.Array, index.GetProperty(part).ValueKind);
        Assert.Equal("EulerDiscreteScheduler", index.GetProperty("scheduler")[1].GetString());

        var unet = Json("unet/config.json");
        Assert.Equal("text_time", unet.GetProperty("addition_embed_type").GetString());
        Assert.Equal(2 * DemoVocabulary.Dimension, unet.GetProperty("cross_attention_dim").GetInt32());
        // As SDXL's 2816 = 1280 + 6 · 256: the pooled width plus six time ids of 256 sinusoids each.
        Assert.Equal(DemoVocabulary.Dimension + 6 * 256, unet.GetProperty("projection_class_embeddings_input_dim").GetInt32());
        Assert.Equal(256, unet.GetProperty("addition_time_embed_dim").GetInt32());
        Assert.Equal(DemoUnet.LatentSize, unet.GetProperty("sample_size").GetInt32());

        foreach (var vae in new[] { "vae_decoder/config.json", "vae_encoder/config.json" })
            Assert.Equal(DemoVae.ScalingFactor, Json(vae).GetProperty("scaling_factor").GetSingle());

        Assert.Equal(3, Json("text_encoder/config.json").GetProperty("num_hidden_layers").GetInt32());
        Assert.Equal(4, Json("text_encoder_2/config.json").GetProperty("num_hidden_layers").GetInt32());
        Assert.Equal("CLIPTextModelWithProjection", Json("text_encoder_2/config.json").GetProperty("architectures")[0].GetString());
    }

    [Fact]
    public void SecondTokenizerPadsWithExclamationMarkIdZero()
    {
        Assert.Equal(ClipVocabularyWriter.EndOfText, Json("tokenizer/tokenizer_config.json").GetProperty("pad_token").GetString());
        Assert.Equal(ClipVocabularyWriter.EndOfText, Json("tokenizer/special_tokens_map.json").GetProperty("pad_token").GetString());
        Assert.Equal("!", Json("tokenizer_2/tokenizer_config.json").GetProperty("pad_token").GetString());
        Assert.Equal("!", Json("tokenizer_2/special_tokens_map.json").GetProperty("pad_token").GetString());
        Assert.Equal(0, model.PadId2);
        Assert.Equal(ClipVocabularyWriter.Tokens().Count - 1, model.PadId);
        Assert.Equal(0, Json("text_encoder_2/config.json").GetProperty("pad_token_id").GetInt32());
        // Same vocabulary: the prompt tokenizes the same; only the padding differs.
        var a = model.Ids(false, "a red star");
        var b = model.Ids(true, "a red star");
        Assert.Equal(a[..5], b[..5]);
        Assert.All(b[5..], id => Assert.Equal(0, id));
        Assert.Throws<ArgumentException>(() => ClipVocabularyWriter.Write(model.Scratch("bad-pad"), "<pad>"));
    }

    [Fact]
    public void ScheduleIsTheDemoModelsUnderSdxlsSchedulerClass()
    {
        var config = SchedulerConfig.Load(Path.Combine(model.Folder, "scheduler", "scheduler_config.json"));
        Assert.Equal(DemoUnet.BetaEnd, config.GetDouble("beta_end", 0));
        Assert.Equal(DemoUnet.BetaStart, config.GetDouble("beta_start", 0));
        var alphas = SchedulerMath.AlphasCumprod(SchedulerMath.Betas(config, DemoUnet.TrainTimesteps));
        var expected = DemoUnet.AlphasCumprod();
        for (int t = 0; t < expected.Length; t++) Assert.Equal(expected[t], alphas[t], 12);
        Assert.Equal("EulerDiscreteScheduler", Json("scheduler/scheduler_config.json").GetProperty("_class_name").GetString());
    }

    [Fact]
    public void BuildsAreByteIdenticalAndStampedApartFromTheDemoModel()
    {
        Assert.True(DemoXlModelBuilder.IsCurrent(model.Folder));
        Assert.False(DemoModelBuilder.IsCurrent(model.Folder));
        Assert.False(DemoXlModelBuilder.EnsureBuilt(model.Folder));

        var copy = model.Scratch("second-build");
        Assert.True(DemoXlModelBuilder.EnsureBuilt(copy));
        foreach (var f in Files)
            Assert.True(File.ReadAllBytes(Path.Combine(model.Folder, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(copy, f))), $"{f} differs between builds");

        // A demo model folder is replaced by the XL model (both are demo models), and the stamps tell them apart.
        var demo = model.Scratch("was-demo");
        Directory.CreateDirectory(demo);
        File.WriteAllText(Path.Combine(demo, DemoModelBuilder.StampFile), DemoModelBuilder.StampText);
        Assert.True(DemoXlModelBuilder.EnsureBuilt(demo));
        Assert.True(File.Exists(Path.Combine(demo, "text_encoder_2", "model.onnx")));
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(Path.GetDirectoryName(copy)!),
            p => Path.GetFileName(p).StartsWith('.') || p.EndsWith(".lock", StringComparison.Ordinal));
    }

    [Fact]
    public void BuildRefusesAFolderThatIsNotADemoModel()
    {
        var other = model.Scratch("someone-elses");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, "notes.txt"), "keep me");
        var e = Assert.Throws<IOException>(() => DemoXlModelBuilder.Build(other));
        Assert.Contains(other, e.Message);
        Assert.Equal("keep me", File.ReadAllText(Path.Combine(other, "notes.txt")));
    }

    [Fact]
    public void CommandLineBuildsTheXlModel()
    {
        var dir = model.Scratch("cli-build");
        var previous = Console.Out;
        var text = new StringWriter();
        Console.SetOut(text);
        try
        {
            Assert.Equal(0, MLNet.Diffusion.ModelBuilder.Program.Main(["demo-xl", "--out", dir]));
        }
        finally
        {
            Console.SetOut(previous);
        }
        Assert.Contains(DemoXlModelBuilder.Version, text.ToString());
        Assert.True(DemoXlModelBuilder.IsCurrent(dir));
    }
}

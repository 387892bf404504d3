using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Tokenizers;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Tests.Demo;

namespace MLNet.Diffusion.Tests.ModelBuilder;

/// <summary>
/// Builds the demo XL model once (into a temporary folder) and opens its parts directly: both tokenizers through
/// Microsoft.ML.Tokenizers with the pad token read from each folder's <c>tokenizer_config.json</c>, every graph through
/// an InferenceSession. Its helpers do what an SDXL engine does, written out here as the reference.
/// </summary>
public sealed class DemoXlModelFixture : IDisposable
{
    private readonly DirectoryInfo _root;

    public DemoXlModelFixture()
    {
        _root = Directory.CreateTempSubdirectory("mlnd-demoxl-");
        Folder = Path.Combine(_root.FullName, "demo-xl");
        DemoXlModelBuilder.Build(Folder);
        Tokenizer = DemoModelFixture.CreateTokenizer(Path.Combine(Folder, "tokenizer"));
        Tokenizer2 = DemoModelFixture.CreateTokenizer(Path.Combine(Folder, "tokenizer_2"));
        PadId = PadTokenId(Path.Combine(Folder, "tokenizer"));
        PadId2 = PadTokenId(Path.Combine(Folder, "tokenizer_2"));
        var options = new SessionOptions { IntraOpNumThreads = 2 };
        TextEncoder = new InferenceSession(Path.Combine(Folder, "text_encoder", "model.onnx"), options);
        TextEncoder2 = new InferenceSession(Path.Combine(Folder, "text_encoder_2", "model.onnx"), options);
        Unet = new InferenceSession(Path.Combine(Folder, "unet", "model.onnx"), options);
        VaeDecoder = new InferenceSession(Path.Combine(Folder, "vae_decoder", "model.onnx"), options);
        DatasetLatents = DemoUnet.DatasetLatents();
        CaptionEmbeddings = DemoUnet.CaptionEmbeddings();
    }

    /// <summary>A sibling folder under the fixture's temporary root.</summary>
    public string Scratch(string name) => Path.Combine(_root.FullName, name);

    public string Folder { get; }
    public Tokenizer Tokenizer { get; }
    public Tokenizer Tokenizer2 { get; }
    public int PadId { get; }
    public int PadId2 { get; }
    public InferenceSession TextEncoder { get; }
    public InferenceSession TextEncoder2 { get; }
    public InferenceSession Unet { get; }
    public InferenceSession VaeDecoder { get; }
    public float[] DatasetLatents { get; }
    public float[] CaptionEmbeddings { get; }

    /// <summary>The id of the pad token named in <c>tokenizer_config.json</c>, looked up in <c>vocab.json</c>.</summary>
    public static int PadTokenId(string directory)
    {
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "tokenizer_config.json")));
        using var vocab = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "vocab.json")));
        return vocab.RootElement.GetProperty(config.RootElement.GetProperty("pad_token").GetString()!).GetInt32();
    }

    /// <summary>BOS + at most 75 tokens + EOS, padded with <paramref name="pad"/> to 77.</summary>
    public static int[] TokenIds(Tokenizer tokenizer, string prompt, int pad)
    {
        int bos = ClipVocabularyWriter.TokenId(ClipVocabularyWriter.StartOfText), eos = ClipVocabularyWriter.TokenId(ClipVocabularyWriter.EndOfText);
        var ids = new List<int> { bos };
        ids.AddRange(tokenizer.EncodeToIds(prompt).Take(ClipVocabularyWriter.MaxLength - 2));
        ids.Add(eos);
        while (ids.Count < ClipVocabularyWriter.MaxLength) ids.Add(pad);
        return [.. ids];
    }

    /// <summary>Token ids [B, 77] of the prompts for the first or second tokenizer.</summary>
    public int[] Ids(bool second, params string[] prompts) =>
        prompts.SelectMany(p => TokenIds(second ? Tokenizer2 : Tokenizer, p, second ? PadId2 : PadId)).ToArray();

    /// <summary>Runs a text encoder; returns every output by name.</summary>
    public static Dictionary<string, float[]> RunEncoder(InferenceSession session, int[] ids)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(ids, [ids.Length / ClipVocabularyWriter.MaxLength, ClipVocabularyWriter.MaxLength]);
        var names = session.OutputNames.ToArray();
        using var outputs = session.Run(new RunOptions(), ["input_ids"], [input], names);
        return names.Select((n, i) => (n, outputs[i].GetTensorDataAsSpan<float>().ToArray())).ToDictionary(p => p.n, p => p.Item2);
    }

    /// <summary>
    /// SDXL's conditioning for prompts: context = concat(text_encoder's hidden_states[−2], text_encoder_2's
    /// hidden_states[−2]) on the last axis ([B, 77, 2D]); pooled = text_encoder_2's text_embeds ([B, D]).
    /// </summary>
    public (float[] Context, float[] Pooled) Condition(params string[] prompts)
    {
        var first = RunEncoder(TextEncoder, Ids(false, prompts));
        var second = RunEncoder(TextEncoder2, Ids(true, prompts));
        var h1 = first[$"hidden_states.{TextEncoder.OutputNames.Count(n => n.StartsWith("hidden_states.", StringComparison.Ordinal)) - 2}"];
        var h2 = second[$"hidden_states.{TextEncoder2.OutputNames.Count(n => n.StartsWith("hidden_states.", StringComparison.Ordinal)) - 2}"];
        return (Concat(h1, h2, DemoXlTextEncoder.Dimension), second["text_embeds"]);
    }

    /// <summary>Concatenates [N, d] and [N, d] rows into [N, 2d].</summary>
    public static float[] Concat(float[] a, float[] b, int d)
    {
        var c = new float[a.Length + b.Length];
        for (int row = 0; row < a.Length / d; row++)
        {
            a.AsSpan(row * d, d).CopyTo(c.AsSpan(row * 2 * d, d));
            b.AsSpan(row * d, d).CopyTo(c.AsSpan(row * 2 * d + d, d));
        }
        return c;
    }

    /// <summary>The default time ids for a 256×256 image, repeated for each batch row: (256, 256, 0, 0, 256, 256).</summary>
    public static float[] DefaultTimeIds(int batch) =>
        Enumerable.Repeat(new float[] { 256, 256, 0, 0, 256, 256 }, batch).SelectMany(r => r).ToArray();

    /// <summary>Runs the UNet.</summary>
    public float[] RunUnet(float[] sample, float[] timesteps, float[] context, float[] pooled, float[] timeIds)
    {
        int batch = sample.Length / DemoUnet.LatentLength, width = DemoXlUnet.ContextDimension;
        using var x = OrtValue.CreateTensorValueFromMemory(sample, [batch, 4, DemoUnet.LatentSize, DemoUnet.LatentSize]);
        using var t = OrtValue.CreateTensorValueFromMemory(timesteps, [timesteps.Length]);
        using var h = OrtValue.CreateTensorValueFromMemory(context, [batch, context.Length / (batch * width), width]);
        using var p = OrtValue.CreateTensorValueFromMemory(pooled, [batch, DemoXlUnet.PooledDimension]);
        using var ids = OrtValue.CreateTensorValueFromMemory(timeIds, [batch, DemoXlUnet.TimeIdCount]);
        using var outputs = Unet.Run(new RunOptions(), ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"],
            [x, t, h, p, ids], ["out_sample"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>Runs the VAE decoder on [N, 4, h, w] (unscaled) latents.</summary>
    public float[] RunDecoder(float[] latents, int h, int w)
    {
        int count = latents.Length / (4 * h * w);
        using var z = OrtValue.CreateTensorValueFromMemory(latents, [count, 4, h, w]);
        using var outputs = VaeDecoder.Run(new RunOptions(), ["latent_sample"], [z], ["sample"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public void Dispose()
    {
        TextEncoder.Dispose();
        TextEncoder2.Dispose();
        Unet.Dispose();
        VaeDecoder.Dispose();
        try { _root.Delete(true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class DemoXlCollection : ICollectionFixture<DemoXlModelFixture>
{
    public const string Name = "Demo XL model";
}

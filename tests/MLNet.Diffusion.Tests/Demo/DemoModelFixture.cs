using System.Text.RegularExpressions;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Tokenizers;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Tests.Demo;

/// <summary>
/// Builds the demo model once for all demo tests (into a temporary folder) and opens its parts the way an engine
/// would: the CLIP tokenizer through Microsoft.ML.Tokenizers, every ONNX file through an InferenceSession.
/// </summary>
public sealed class DemoModelFixture : IDisposable
{
    /// <summary>CLIP's pre-tokenizer pattern.</summary>
    public const string ClipPattern = @"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

    private readonly DirectoryInfo _root;
    private readonly Lazy<StableDiffusionPipeline> _pipeline;

    public DemoModelFixture()
    {
        _root = Directory.CreateTempSubdirectory("mlnd-demo-");
        Folder = Path.Combine(_root.FullName, "demo");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        DemoModelBuilder.Build(Folder);
        BuildSeconds = clock.Elapsed.TotalSeconds;
        Tokenizer = CreateTokenizer(Path.Combine(Folder, "tokenizer"));
        var options = new SessionOptions { IntraOpNumThreads = 2 };
        TextEncoder = new InferenceSession(Path.Combine(Folder, "text_encoder", "model.onnx"), options);
        Unet = new InferenceSession(Path.Combine(Folder, "unet", "model.onnx"), options);
        VaeEncoder = new InferenceSession(Path.Combine(Folder, "vae_encoder", "model.onnx"), options);
        VaeDecoder = new InferenceSession(Path.Combine(Folder, "vae_decoder", "model.onnx"), options);
        DatasetLatents = DemoUnet.DatasetLatents();
        CaptionEmbeddings = DemoUnet.CaptionEmbeddings();
        _pipeline = new Lazy<StableDiffusionPipeline>(() => StableDiffusionPipeline.Load(Folder, new DiffusionRuntimeOptions { IntraOpThreads = 2 }));
    }

    /// <summary>A sibling folder under the fixture's temporary root, for tests that build their own copy.</summary>
    public string Scratch(string name) => Path.Combine(_root.FullName, name);

    public string Folder { get; }
    public double BuildSeconds { get; }
    public Tokenizer Tokenizer { get; }
    public InferenceSession TextEncoder { get; }
    public InferenceSession Unet { get; }
    public InferenceSession VaeEncoder { get; }
    public InferenceSession VaeDecoder { get; }

    /// <summary>The engine's pipeline on the demo folder, loaded on first use.</summary>
    public StableDiffusionPipeline Pipeline => _pipeline.Value;

    /// <summary>The scaled dataset latents the UNet holds ([600, 4 × latent height × latent width]).</summary>
    public float[] DatasetLatents { get; }

    /// <summary>The caption embeddings a_k ([600, D]).</summary>
    public float[] CaptionEmbeddings { get; }

    public int Dimension => DemoVocabulary.Dimension;

    /// <summary>The tokenizer an engine builds for a CLIP folder: byte-level BPE, "&lt;/w&gt;" suffix, CLIP's pre-tokenizer, lower case.</summary>
    public static Tokenizer CreateTokenizer(string directory)
    {
        var options = new BpeOptions(Path.Combine(directory, "vocab.json"), Path.Combine(directory, "merges.txt"))
        {
            ByteLevel = true,
            EndOfWordSuffix = "</w>",
            PreTokenizer = new RegexPreTokenizer(new Regex(ClipPattern, RegexOptions.IgnoreCase), null),
            Normalizer = new LowerCaseNormalizer(),
        };
        return BpeTokenizer.Create(options);
    }

    /// <summary>BOS + at most 75 tokens + EOS, padded with the pad (= EOS) id to 77, as the engine does.</summary>
    public int[] TokenIds(string prompt)
    {
        int bos = ClipVocabularyWriter.TokenId(ClipVocabularyWriter.StartOfText), eos = ClipVocabularyWriter.TokenId(ClipVocabularyWriter.EndOfText);
        var ids = new List<int> { bos };
        ids.AddRange(Tokenizer.EncodeToIds(prompt).Take(ClipVocabularyWriter.MaxLength - 2));
        ids.Add(eos);
        while (ids.Count < ClipVocabularyWriter.MaxLength) ids.Add(eos);
        return [.. ids];
    }

    /// <summary>Runs the text encoder on prompts: (last_hidden_state [B, 77, D], pooler_output [B, D]).</summary>
    public (float[] Hidden, float[] Pooled) EncodeText(params string[] prompts)
    {
        var ids = prompts.SelectMany(TokenIds).ToArray();
        using var input = OrtValue.CreateTensorValueFromMemory(ids, [prompts.Length, ClipVocabularyWriter.MaxLength]);
        using var outputs = TextEncoder.Run(new RunOptions(), ["input_ids"], [input], ["last_hidden_state", "pooler_output"]);
        return (outputs[0].GetTensorDataAsSpan<float>().ToArray(), outputs[1].GetTensorDataAsSpan<float>().ToArray());
    }

    /// <summary>Runs the UNet.</summary>
    public float[] RunUnet(float[] sample, float[] timesteps, float[] hidden)
    {
        int batch = sample.Length / DemoUnet.LatentLength;
        using var x = OrtValue.CreateTensorValueFromMemory(sample, [batch, 4, DemoUnet.LatentSize, DemoUnet.LatentSize]);
        using var t = OrtValue.CreateTensorValueFromMemory(timesteps, [timesteps.Length]);
        using var h = OrtValue.CreateTensorValueFromMemory(hidden, [batch, hidden.Length / (batch * Dimension), Dimension]);
        using var outputs = Unet.Run(new RunOptions(), ["sample", "timestep", "encoder_hidden_states"], [x, t, h], ["out_sample"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>Runs the VAE encoder on [N, 3, H, W] images.</summary>
    public float[] RunEncoder(float[] images, int height, int width)
    {
        int count = images.Length / (3 * height * width);
        using var x = OrtValue.CreateTensorValueFromMemory(images, [count, 3, height, width]);
        using var outputs = VaeEncoder.Run(new RunOptions(), ["sample"], [x], ["latent_sample"]);
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
        if (_pipeline.IsValueCreated) _pipeline.Value.Dispose();
        TextEncoder.Dispose();
        Unet.Dispose();
        VaeEncoder.Dispose();
        VaeDecoder.Dispose();
        try { _root.Delete(true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class DemoCollection : ICollectionFixture<DemoModelFixture>
{
    public const string Name = "Demo model";
}

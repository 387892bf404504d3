using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.Tokenizers;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Tests.Demo;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.Tests.ModelBuilder;

/// <summary>The demo flow model built once into a temporary folder, with sessions over its graphs and the library's pipeline.</summary>
public sealed class DemoFlowModelFixture : IDisposable
{
    private readonly DirectoryInfo _root;
    private readonly Lazy<StableDiffusionPipeline> _pipeline;

    /// <summary>Builds the folder and opens the encoders and the transformer.</summary>
    public DemoFlowModelFixture()
    {
        _root = Directory.CreateTempSubdirectory("mlnd-demoflow-");
        Folder = Path.Combine(_root.FullName, "demo-flow");
        DemoFlowModelBuilder.Build(Folder);
        Tokenizer = DemoModelFixture.CreateTokenizer(Path.Combine(Folder, "tokenizer"));
        Tokenizer2 = DemoModelFixture.CreateTokenizer(Path.Combine(Folder, "tokenizer_2"));
        T5 = T5Tokenizer.Load(Path.Combine(Folder, "tokenizer_3"));
        var options = new SessionOptions { IntraOpNumThreads = 2 };
        TextEncoder = new InferenceSession(Path.Combine(Folder, "text_encoder", "model.onnx"), options);
        TextEncoder2 = new InferenceSession(Path.Combine(Folder, "text_encoder_2", "model.onnx"), options);
        TextEncoder3 = new InferenceSession(Path.Combine(Folder, "text_encoder_3", "model.onnx"), options);
        Transformer = new InferenceSession(Path.Combine(Folder, "transformer", "model.onnx"), options);
        DatasetLatents = DemoUnet.DatasetLatents();
        CaptionEmbeddings = DemoUnet.CaptionEmbeddings();
        _pipeline = new(() => StableDiffusionPipeline.Load(Folder));
    }

    /// <summary>The model folder.</summary>
    public string Folder { get; }
    /// <summary>A path in the fixture's scratch folder.</summary>
    public string Scratch(string name) => Path.Combine(_root.FullName, name);
    /// <summary>tokenizer/ (CLIP-L).</summary>
    public Tokenizer Tokenizer { get; }
    /// <summary>tokenizer_2/ (CLIP-G, pads with "!").</summary>
    public Tokenizer Tokenizer2 { get; }
    /// <summary>tokenizer_3/ read by the library (T5).</summary>
    internal T5Tokenizer T5 { get; }
    /// <summary>text_encoder/.</summary>
    public InferenceSession TextEncoder { get; }
    /// <summary>text_encoder_2/.</summary>
    public InferenceSession TextEncoder2 { get; }
    /// <summary>text_encoder_3/.</summary>
    public InferenceSession TextEncoder3 { get; }
    /// <summary>transformer/.</summary>
    public InferenceSession Transformer { get; }
    /// <summary>The demo's scaled 4-channel dataset latents.</summary>
    public float[] DatasetLatents { get; }
    /// <summary>The demo's caption embeddings a_k.</summary>
    public float[] CaptionEmbeddings { get; }
    /// <summary>The folder loaded by the library (once).</summary>
    public StableDiffusionPipeline Pipeline => _pipeline.Value;

    /// <summary>
    /// SD3's conditioning for one prompt, built over the folder's graphs as diffusers builds it: CLIP-L's and CLIP-G's
    /// penultimate states side by side, zero-padded to the T5 width, then T5's <paramref name="t5Length"/> states (zeros when
    /// <paramref name="withT5"/> is false); pooled = both text_embeds.
    /// </summary>
    public (float[] Context, float[] Pooled) Condition(string prompt, int t5Length, bool withT5 = true)
    {
        int d = DemoXlTextEncoder.Dimension, j = DemoT5TextEncoder.Width, clip = ClipVocabularyWriter.MaxLength;
        var first = DemoXlModelFixture.RunEncoder(TextEncoder, DemoXlModelFixture.TokenIds(Tokenizer, prompt, ClipVocabularyWriter.TokenId(ClipVocabularyWriter.EndOfText)));
        var second = DemoXlModelFixture.RunEncoder(TextEncoder2, DemoXlModelFixture.TokenIds(Tokenizer2, prompt, ClipVocabularyWriter.TokenId(ClipVocabularyWriter.ExclamationPad)));
        var h1 = first[$"hidden_states.{DemoFlowTextEncoders.ClipL.Penultimate}"];
        var h2 = second[$"hidden_states.{DemoFlowTextEncoders.ClipG.Penultimate}"];
        var context = new float[(clip + t5Length) * j];
        for (int p = 0; p < clip; p++)
        {
            h1.AsSpan(p * d, d).CopyTo(context.AsSpan(p * j, d));
            h2.AsSpan(p * d, d).CopyTo(context.AsSpan(p * j + d, d));
        }
        if (withT5)
        {
            var ids = new long[t5Length];
            var encoded = T5.Encode(prompt, t5Length, out _);
            for (int i = 0; i < encoded.Length; i++) ids[i] = encoded[i];
            using var input = OrtValue.CreateTensorValueFromMemory(ids, [1, t5Length]);
            using var outputs = TextEncoder3.Run(new RunOptions(), ["input_ids"], [input], ["last_hidden_state"]);
            outputs[0].GetTensorDataAsSpan<float>().CopyTo(context.AsSpan(clip * j));
        }
        return (context, [.. first["text_embeds"], .. second["text_embeds"]]);
    }

    /// <summary>Runs the transformer.</summary>
    public float[] RunTransformer(float[] hidden, float[] timesteps, float[] context, float[] pooled)
    {
        int batch = timesteps.Length, size = DemoUnet.LatentSize, j = DemoT5TextEncoder.Width;
        using var x = OrtValue.CreateTensorValueFromMemory(hidden, [batch, DemoFlowVae.LatentChannels, size, size]);
        using var c = OrtValue.CreateTensorValueFromMemory(context, [batch, context.Length / (batch * j), j]);
        using var p = OrtValue.CreateTensorValueFromMemory(pooled, [batch, DemoFlowTransformer.PooledDimension]);
        using var t = OrtValue.CreateTensorValueFromMemory(timesteps, [batch]);
        using var outputs = Transformer.Run(new RunOptions(), ["hidden_states", "encoder_hidden_states", "pooled_projections", "timestep"],
            [x, c, p, t], ["out_hidden_states"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_pipeline.IsValueCreated) _pipeline.Value.Dispose();
        TextEncoder.Dispose();
        TextEncoder2.Dispose();
        TextEncoder3.Dispose();
        Transformer.Dispose();
        try { _root.Delete(recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Shares one demo flow model between the test classes that use it.</summary>
[CollectionDefinition(Name)]
public sealed class DemoFlowCollection : ICollectionFixture<DemoFlowModelFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Demo flow model";
}

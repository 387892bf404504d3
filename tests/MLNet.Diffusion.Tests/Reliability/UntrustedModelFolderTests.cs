using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Tests.TestModels;
using Onnx;

namespace MLNet.Diffusion.Tests.Reliability;

/// <summary>Two written test models (inline weights, and the UNet's weights in unet/weights.pb) that each case copies.</summary>
public sealed class UntrustedFolderFixture : IDisposable
{
    public UntrustedFolderFixture()
    {
        Root = Directory.CreateTempSubdirectory("mlnd-untrusted-").FullName;
        Plain = TestModelFactory.Create(Path.Combine(Root, "base-plain"), new TestModelOptions());
        External = TestModelFactory.Create(Path.Combine(Root, "base-external"), new TestModelOptions { ExternalWeights = "weights.pb" });
    }

    /// <summary>Holds every case's folder; deleted at the end.</summary>
    public string Root { get; }

    /// <summary>A model with every weight inside its .onnx files.</summary>
    public string Plain { get; }

    /// <summary>A model whose UNet keeps its large initializers in unet/weights.pb.</summary>
    public string External { get; }

    private int _next;

    /// <summary>A fresh case folder: <c>case-N/model</c> (a copy of the base) beside which "outside" files can be put.</summary>
    public string CopyOf(string baseFolder)
    {
        string caseRoot = Path.Combine(Root, $"case-{Interlocked.Increment(ref _next)}");
        string model = Path.Combine(caseRoot, "model");
        foreach (var file in Directory.GetFiles(baseFolder, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(model, Path.GetRelativePath(baseFolder, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        return model;
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); }
        catch (IOException) { }
    }
}

/// <summary>
/// Issue 8, point 1: model folders from the internet. Every malformed or hostile folder is refused by
/// <see cref="StableDiffusionPipeline.Load"/> before a session is created, with a message naming the file and the
/// problem; paths never leave the folder except along the documented Hugging Face cache links.
/// </summary>
public class UntrustedModelFolderTests(UntrustedFolderFixture fixture, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<UntrustedFolderFixture>
{
    private static readonly string Unet = Path.Combine("unet", "model.onnx");

    /// <summary>A malformed folder: which base, what to break, and what the refusal must say.</summary>
    private sealed record Case(bool External, Action<string> Break, string[] MessageHas, Type? Exception = null);

    private static readonly Dictionary<string, Case> s_cases = new()
    {
        // ---- model_index.json and configurations naming paths or holding bad values
        ["index-parent-path"] = new(false, m => EditJson(m, "model_index.json", j => j["unet"] = new JsonArray("../../evil", "OnnxRuntimeModel")), ["model_index.json", "'..'"]),
        ["index-absolute-path"] = new(false, m => EditJson(m, "model_index.json", j => j["unet"] = "/etc/passwd"), ["model_index.json", "absolute"]),
        ["index-windows-path"] = new(false, m => EditJson(m, "model_index.json", j => j["vae_decoder"] = new JsonArray("C:\\models\\vae", "x")), ["model_index.json", "absolute"]),
        ["index-not-an-object"] = new(false, m => Write(m, "model_index.json", "[1, 2, 3]"), ["model_index.json", "JSON object"]),
        ["index-truncated"] = new(false, m => TruncateTo(m, "model_index.json", 0.5), ["model_index.json", "not valid JSON"]),
        ["index-oversized"] = new(false, m => EditJson(m, "model_index.json", j => j["_padding"] = new string('x', 2 << 20)), ["model_index.json", "at most"]),
        ["index-empty"] = new(false, m => Write(m, "model_index.json", ""), ["model_index.json", "empty"]),
        ["unet-config-sample-size-huge"] = new(false, m => EditJson(m, "unet/config.json", j => j["sample_size"] = 1_000_000), ["config.json", "sample_size"]),
        ["unet-config-sample-size-negative"] = new(false, m => EditJson(m, "unet/config.json", j => j["sample_size"] = -8), ["sample_size"]),
        ["unet-config-sample-size-fraction"] = new(false, m => EditJson(m, "unet/config.json", j => j["sample_size"] = 8.5), ["sample_size"]),
        ["unet-config-sample-size-string"] = new(false, m => EditJson(m, "unet/config.json", j => j["sample_size"] = "64"), ["sample_size"]),
        ["vae-scaling-zero"] = new(false, m => EditJson(m, "vae_decoder/config.json", j => j["scaling_factor"] = 0), ["vae_decoder", "scaling_factor"]),
        ["vae-scaling-negative"] = new(false, m => EditJson(m, "vae_decoder/config.json", j => j["scaling_factor"] = -0.18), ["scaling_factor"]),
        ["vae-scaling-huge"] = new(false, m => EditJson(m, "vae_decoder/config.json", j => j["scaling_factor"] = 1e30), ["scaling_factor"]),
        ["vae-scaling-nan-string"] = new(false, m => EditJson(m, "vae_decoder/config.json", j => j["scaling_factor"] = "NaN"), ["scaling_factor"]),
        ["vae-scaling-nan-literal"] = new(false, m => Write(m, "vae_decoder/config.json", """{"scaling_factor": NaN}"""), ["vae_decoder", "not valid JSON"]),
        ["vae-config-truncated"] = new(false, m => TruncateTo(m, "vae_decoder/config.json", 0.6), ["vae_decoder", "not valid JSON"]),
        ["unet-config-deeply-nested"] = new(false, m => Write(m, "unet/config.json", new string('[', 5000) + new string(']', 5000)), ["unet", "not valid JSON"]),
        ["scheduler-steps-offset-beyond-schedule"] = new(false, m => EditJson(m, "scheduler/scheduler_config.json", j => j["steps_offset"] = 5000), ["scheduler_config.json", "steps_offset"]),
        ["scheduler-steps-offset-negative"] = new(false, m => EditJson(m, "scheduler/scheduler_config.json", j => j["steps_offset"] = -3), ["steps_offset"]),
        ["scheduler-train-steps-huge"] = new(false, m => EditJson(m, "scheduler/scheduler_config.json", j => j["num_train_timesteps"] = 1_000_000_000), ["num_train_timesteps"]),
        ["scheduler-train-steps-zero"] = new(false, m => EditJson(m, "scheduler/scheduler_config.json", j => j["num_train_timesteps"] = 0), ["num_train_timesteps"]),
        ["scheduler-beta-nan"] = new(false, m => Write(m, "scheduler/scheduler_config.json", """{"_class_name":"PNDMScheduler","beta_start":NaN,"beta_end":0.012,"beta_schedule":"scaled_linear"}"""), ["beta_start"]),
        ["scheduler-beta-infinite"] = new(false, m => Write(m, "scheduler/scheduler_config.json", """{"_class_name":"PNDMScheduler","beta_start":0.00085,"beta_end":Infinity}"""), ["beta_end"]),
        ["scheduler-beta-above-one"] = new(false, m => EditJson(m, "scheduler/scheduler_config.json", j => j["beta_end"] = 2.0), ["beta_end"]),
        ["scheduler-trained-betas-wrong-length"] = new(false, m => EditJson(m, "scheduler/scheduler_config.json", j => j["trained_betas"] = new JsonArray(0.1, 0.2)), ["trained_betas"]),
        ["scheduler-unknown-spacing"] = new(false, m => EditJson(m, "scheduler/scheduler_config.json", j => j["timestep_spacing"] = "sideways"), ["sideways"]),
        ["scheduler-unknown-prediction"] = new(false, m => EditJson(m, "scheduler/scheduler_config.json", j => j["prediction_type"] = "x0"), ["prediction_type"]),
        ["scheduler-truncated"] = new(false, m => TruncateTo(m, "scheduler/scheduler_config.json", 0.5), ["scheduler_config.json", "not valid JSON"]),
        ["scheduler-oversized"] = new(false, m => Grow(m, "scheduler/scheduler_config.json", 4 << 20), ["scheduler_config.json", "at most"]),
        ["tokenizer-config-vocab-file-absolute"] = new(false, m => EditJson(m, "tokenizer/tokenizer_config.json", j => j["vocab_file"] = "/etc/passwd"), ["tokenizer_config.json", "vocab_file", "absolute"]),
        ["tokenizer-config-merges-file-parent"] = new(false, m => EditJson(m, "tokenizer/special_tokens_map.json", j => j["merges_file"] = "../../../merges.txt"), ["special_tokens_map.json", "'..'"]),
        ["vocab-empty"] = new(false, m => Write(m, "tokenizer/vocab.json", ""), ["vocab.json", "empty"]),
        ["vocab-truncated"] = new(false, m => TruncateTo(m, "tokenizer/vocab.json", 0.5), ["vocab.json"]),
        ["merges-oversized"] = new(false, m => Grow(m, "tokenizer/merges.txt", 65L << 20), ["merges.txt", "at most"]),
        ["merges-empty"] = new(false, m => Write(m, "tokenizer/merges.txt", ""), ["merges.txt", "empty"]),

        // ---- corrupt, truncated or absurd .onnx files
        ["unet-onnx-empty"] = new(false, m => Write(m, "unet/model.onnx", ""), [Unet, "empty"]),
        ["unet-onnx-truncated-half"] = new(false, m => TruncateTo(m, "unet/model.onnx", 0.5), [Unet, "truncated"]),
        ["unet-onnx-truncated-ten-bytes"] = new(false, m => TruncateBytes(m, "unet/model.onnx", 10), [Unet]),
        ["unet-onnx-text"] = new(false, m => Write(m, "unet/model.onnx", "this is not an ONNX model"), [Unet, "not"]),
        ["unet-onnx-random-bytes"] = new(false, m => File.WriteAllBytes(Path.Combine(m, "unet/model.onnx"), RandomBytes(4096, 8)), [Unet]),
        ["unet-onnx-html-error-page"] = new(false, m => Write(m, "unet/model.onnx", "<!DOCTYPE html><html><body>404 Not Found</body></html>"), [Unet, "HTML"]),
        ["unet-onnx-git-lfs-pointer"] = new(false, m => Write(m, "unet/model.onnx", "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2\nsize 3438167540\n"), [Unet, "Git LFS pointer"]),
        ["unet-onnx-no-graph"] = new(false, m => File.WriteAllBytes(Path.Combine(m, "unet/model.onnx"), new ModelProto { IrVersion = 8, ProducerName = "x" }.ToByteArray()), [Unet, "no graph"]),
        ["unet-onnx-varint-overflow"] = new(false, m => File.WriteAllBytes(Path.Combine(m, "unet/model.onnx"), [0x08, .. Enumerable.Repeat((byte)0xFF, 11)]), [Unet, "varint"]),
        ["unet-onnx-field-past-end"] = new(false, m => File.WriteAllBytes(Path.Combine(m, "unet/model.onnx"), [0x3A, 0xFF, 0xFF, 0xFF, 0x0F, 0x0A, 0x00]), [Unet, "truncated"]),
        ["unet-onnx-graphs-nested-too-deep"] = new(false, m => EditOnnx(m, "unet/model.onnx", NestGraphs), [Unet, "nested"]),
        ["unet-initializer-raw-data-short"] = new(false, m => EditOnnx(m, "unet/model.onnx", p => p.Graph.Initializer.First(t => t.Name == "target_projection").Dims[0] *= 1000), [Unet, "target_projection", "raw_data"]),
        ["unet-initializer-dims-overflow"] = new(false, m => EditOnnx(m, "unet/model.onnx", p => { var t = p.Graph.Initializer.First(t => t.Name == "target_projection"); t.Dims.Clear(); t.Dims.Add([1L << 40, 1L << 40]); }), [Unet, "overflows"]),
        ["unet-sample-fixed-1e6"] = new(false, m => EditOnnx(m, "unet/model.onnx", p => FixDims(p.Graph.Input.First(i => i.Name == "sample"), 2, 4, 1_000_000, 1_000_000)), [Unet, "sample", "1000000"]),
        ["unet-sample-fixed-1024-latents"] = new(false, m => EditOnnx(m, "unet/model.onnx", p => FixDims(p.Graph.Input.First(i => i.Name == "sample"), 2, 4, 1024, 1024)), [Unet, "sample", "512"]),
        ["unet-output-too-many-elements"] = new(false, m => EditOnnx(m, "unet/model.onnx", p => FixDims(p.Graph.Output[0], 65536, 65536, 4, 1)), [Unet, "out_sample", "elements"]),
        ["vae-decoder-latents-fixed-huge"] = new(false, m => EditOnnx(m, "vae_decoder/model.onnx", p => FixDims(p.Graph.Input[0], 1, 4, 4096, 4096)), [Path.Combine("vae_decoder", "model.onnx"), "latent_sample"]),
        ["vae-decoder-onnx-text"] = new(false, m => Write(m, "vae_decoder/model.onnx", "this is not an ONNX model"), [Path.Combine("vae_decoder", "model.onnx")]),
        ["text-encoder-onnx-truncated"] = new(false, m => TruncateTo(m, "text_encoder/model.onnx", 0.9), [Path.Combine("text_encoder", "model.onnx"), "truncated"]),
        ["vae-encoder-onnx-truncated"] = new(false, m => TruncateTo(m, "vae_encoder/model.onnx", 0.3), [Path.Combine("vae_encoder", "model.onnx")]),

        // ---- external data naming places outside the folder, or out of bounds
        ["external-parent-path"] = new(true, m => SetLocations(m, "../../outside.bin"), [Unet, "outside.bin", "'..'"]),
        ["external-absolute-path"] = new(true, m => SetLocations(m, "/etc/passwd"), [Unet, "absolute"]),
        ["external-drive-letter"] = new(true, m => SetLocations(m, "C:/Windows/win.ini"), [Unet, "absolute"]),
        ["external-backslash-parent"] = new(true, m => SetLocations(m, "..\\..\\outside.bin"), [Unet, "'..'"]),
        ["external-ort-memory-marker"] = new(true, m => SetLocations(m, "*/_ORT_MEM_ADDR_/*"), [Unet, "in-memory"]),
        ["external-nul-character"] = new(true, m => SetLocations(m, "weights.pb\0../../x"), [Unet, "NUL"]),
        ["external-alternate-stream"] = new(true, m => SetLocations(m, "weights.pb:hidden"), [Unet, "':'"]),
        ["external-missing-file"] = new(true, m => File.Delete(Path.Combine(m, "unet", "weights.pb")), [Unet, "weights.pb", "does not exist"], typeof(FileNotFoundException)),
        ["external-file-truncated"] = new(true, m => TruncateTo(m, "unet/weights.pb", 0.5), [Unet, "weights.pb", "truncated"]),
        ["external-offset-beyond-file"] = new(true, m => SetEntry(m, "offset", "1000000000000"), [Unet, "only"]),
        ["external-offset-negative"] = new(true, m => SetEntry(m, "offset", "-5"), [Unet, "non-negative integer"]),
        ["external-length-mismatch"] = new(true, m => SetEntry(m, "length", "12"), [Unet, "length 12"]),
        ["external-without-location"] = new(true, m => EditOnnx(m, "unet/model.onnx", p => ExternalTensors(p).First().ExternalData.Clear()), [Unet, "no 'location'"]),
        ["external-in-constant-node"] = new(false, m => EditOnnx(m, "unet/model.onnx", p => p.Graph.Node.Insert(0, ConstantNode("../outside.bin"))), [Unet, "'..'"]),
        ["external-in-if-branch"] = new(false, m => EditOnnx(m, "unet/model.onnx", p => p.Graph.Node.Insert(0, IfNode("../outside.bin"))), [Unet, "'..'"]),
        ["external-in-function"] = new(false, m => EditOnnx(m, "unet/model.onnx", p => p.Functions.Add(new FunctionProto { Name = "f", Domain = "x", Node = { ConstantNode("/etc/shadow") } })), [Unet, "absolute"]),

        // ---- links that leave the folder
        ["link-unet-file-outside"] = new(false, m => LinkOutside(m, "unet/model.onnx"), [Unet, "link", "outside"]),
        ["link-unet-folder-outside"] = new(false, m => LinkFolderOutside(m, "unet"), ["unet", "link", "outside"]),
        ["link-vocab-outside"] = new(false, m => LinkOutside(m, "tokenizer/vocab.json"), ["vocab.json", "outside"]),
        ["link-scheduler-to-system-file"] = new(false, m => { File.Delete(Path.Combine(m, "scheduler/scheduler_config.json")); File.CreateSymbolicLink(Path.Combine(m, "scheduler/scheduler_config.json"), "/etc/hostname"); }, ["scheduler_config.json", "outside"]),
        ["link-external-data-outside"] = new(true, m => LinkOutside(m, "unet/weights.pb"), ["weights.pb", "outside"]),
        ["link-external-data-dangling-outside"] = new(true, m => { File.Delete(Path.Combine(m, "unet/weights.pb")); File.CreateSymbolicLink(Path.Combine(m, "unet/weights.pb"), "/nonexistent/weights.pb"); }, ["weights.pb", "link", "outside"]),
        ["link-external-data-folder-outside"] = new(true, m => { Directory.CreateDirectory(Path.Combine(m, "..", "elsewhere")); File.Move(Path.Combine(m, "unet/weights.pb"), Path.Combine(m, "..", "elsewhere", "weights.pb")); Directory.CreateSymbolicLink(Path.Combine(m, "unet", "data"), Path.Combine(m, "..", "elsewhere")); SetLocations(m, "data/weights.pb"); }, ["weights.pb", "outside"]),
        ["link-relative-climbing-out"] = new(false, m => { File.Move(Path.Combine(m, "unet/config.json"), Path.Combine(m, "..", "config.json")); File.CreateSymbolicLink(Path.Combine(m, "unet/config.json"), "../../config.json"); }, ["config.json", "outside"]),
        ["link-loop"] = new(false, m => { File.Delete(Path.Combine(m, "tokenizer/vocab.json")); File.CreateSymbolicLink(Path.Combine(m, "tokenizer/vocab.json"), "loop.json"); File.CreateSymbolicLink(Path.Combine(m, "tokenizer/loop.json"), "vocab.json"); }, ["vocab.json", "more than 40 symbolic links"]),
        ["link-dangling"] = new(false, m => { File.Delete(Path.Combine(m, "unet/model.onnx")); File.CreateSymbolicLink(Path.Combine(m, "unet/model.onnx"), "/nonexistent/model.onnx"); }, [Unet, "outside"]),
        ["link-dangling-inside"] = new(false, m => { File.Delete(Path.Combine(m, "unet/model.onnx")); File.CreateSymbolicLink(Path.Combine(m, "unet/model.onnx"), "gone.onnx"); }, [Unet, "does not exist"]),
        ["unet-onnx-is-a-folder-link"] = new(false, m => { File.Delete(Path.Combine(m, "unet/model.onnx")); File.CreateSymbolicLink(Path.Combine(m, "unet/model.onnx"), "../tokenizer"); }, [Unet], typeof(FileNotFoundException)),
    };

    public static TheoryData<string> Cases => [.. s_cases.Keys];

    /// <summary>How many malformed folders are tried (for the report).</summary>
    public static int CaseCount => s_cases.Count;

    [Theory]
    [MemberData(nameof(Cases))]
    public void MalformedFolderIsRefusedAtLoadNamingTheFileAndTheProblem(string name)
    {
        var c = s_cases[name];
        string model = fixture.CopyOf(c.External ? fixture.External : fixture.Plain);
        c.Break(model);
        var e = Assert.ThrowsAny<Exception>(() => StableDiffusionPipeline.Load(model).Dispose());
        output.WriteLine($"{e.GetType().Name}: {e.Message}");
        var expected = c.Exception ?? typeof(InvalidDataException);
        Assert.True(expected.IsInstanceOfType(e), $"{name}: expected {expected.Name}, got {e.GetType().Name}: {e.Message}");
        foreach (var fragment in c.MessageHas)
            Assert.True(e.Message.Contains(fragment, StringComparison.Ordinal), $"{name}: the message does not contain \"{fragment}\": {e.Message}");
    }

    [Fact]
    public void LegitimateVariationsStillLoad()
    {
        // Informational keys that exporters fill with paths on their own machine, a link that stays inside the
        // folder, and an external-data file in a sub-folder are all fine.
        string model = fixture.CopyOf(fixture.External);
        EditJson(model, "model_index.json", j => j["_name_or_path"] = "/home/exporter/.cache/huggingface/sd");
        EditJson(model, "unet/config.json", j => j["_name_or_path"] = "/home/exporter/unet");
        EditJson(model, "tokenizer/tokenizer_config.json", j =>
        {
            j["special_tokens_map_file"] = "/home/suraj/.cache/huggingface/transformers/18a566598f286c91";
            j["name_or_path"] = "openai/clip-vit-large-patch14";
        });
        Directory.CreateDirectory(Path.Combine(model, "shared"));
        File.Move(Path.Combine(model, "vae_decoder", "model.onnx"), Path.Combine(model, "shared", "decoder.onnx"));
        File.CreateSymbolicLink(Path.Combine(model, "vae_decoder", "model.onnx"), Path.Combine("..", "shared", "decoder.onnx"));
        Directory.CreateDirectory(Path.Combine(model, "unet", "data"));
        File.Move(Path.Combine(model, "unet", "weights.pb"), Path.Combine(model, "unet", "data", "weights.pb"));
        SetLocations(model, "data/weights.pb");
        using var pipeline = StableDiffusionPipeline.Load(model);
        pipeline.Generate("a red cat", 1, new GenerationOptions { Steps = 2 }).Image.Dispose();
    }

    [Fact]
    public void HuggingFaceCacheLinksIntoTheRepositoryBlobsAreFollowedAndOthersAreNot()
    {
        // models--org--tiny/snapshots/<rev>/... → ../../blobs/<hash>, as huggingface_hub lays out its cache.
        string cache = Path.Combine(fixture.Root, $"hf-cache-{Guid.NewGuid():N}");
        string repository = Path.Combine(cache, "models--org--tiny");
        string snapshot = Path.Combine(repository, "snapshots", "0123abcd");
        string blobs = Path.Combine(repository, "blobs");
        Directory.CreateDirectory(blobs);
        foreach (var file in Directory.GetFiles(fixture.External, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(fixture.External, file);
            string blob = Path.Combine(blobs, Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(file))).ToLowerInvariant());
            if (!File.Exists(blob)) File.Copy(file, blob);
            string link = Path.Combine(snapshot, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(link)!);
            File.CreateSymbolicLink(link, Path.GetRelativePath(Path.GetDirectoryName(link)!, blob));
        }
        using (var pipeline = StableDiffusionPipeline.Load(snapshot))
            pipeline.Generate("a red cat", 1, new GenerationOptions { Steps = 2 }).Image.Dispose();

        // A link into another repository's blobs is refused.
        string other = Path.Combine(cache, "models--someone--else", "blobs");
        Directory.CreateDirectory(other);
        string vocab = Path.Combine(snapshot, "tokenizer", "vocab.json");
        string stolen = Path.Combine(other, "feedface");
        File.Copy(vocab, stolen);
        File.Delete(vocab);
        File.CreateSymbolicLink(vocab, Path.GetRelativePath(Path.GetDirectoryName(vocab)!, stolen));
        var e = Assert.Throws<InvalidDataException>(() => StableDiffusionPipeline.Load(snapshot));
        Assert.Contains("vocab.json", e.Message);
        Assert.Contains("outside", e.Message);
    }

    [Fact]
    public void ScannerFindsEveryExternalReferenceAndTheDeclaredSignature()
    {
        var summary = OnnxExternalDataScanner.Scan(Path.Combine(fixture.External, "unet", "model.onnx"));
        var direct = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(fixture.External, "unet", "model.onnx")));
        var expected = ExternalTensors(direct).Select(t => t.Name).Order().ToArray();
        Assert.NotEmpty(expected);
        Assert.Equal(expected, summary.ExternalData.Select(r => r.TensorName).Order());
        Assert.All(summary.ExternalData, r => Assert.Equal("weights.pb", r.Location));
        Assert.All(summary.ExternalData, r => Assert.Equal(r.ExpectedBytes, r.Length));
        Assert.Equal(["sample", "timestep", "encoder_hidden_states"], summary.Inputs.Select(i => i.Name));
        Assert.Equal([-1L, 4, -1, -1], summary.Inputs[0].Dimensions);
        Assert.Equal([-1L, -1, 768], summary.Inputs[2].Dimensions);
        Assert.Equal("out_sample", Assert.Single(summary.Outputs).Name);
    }

    [Fact]
    public void ScannerSkipsWeightsBySeekingInsteadOfReading()
    {
        // A model with a 64 MB inline initializer: the scanner must read only a few kilobytes of it.
        var g = new MLNet.Diffusion.ModelBuilder.Onnx.OnnxGraphBuilder("big");
        var x = g.Input("x", MLNet.Diffusion.ModelBuilder.Onnx.OnnxElementType.Float, 4);
        var big = g.Initializer("big", new float[16 << 20], 16 << 20);
        g.Output(g.Node("Add", [x, g.Node("ReduceSum", [big])]), MLNet.Diffusion.ModelBuilder.Onnx.OnnxElementType.Float, 4);
        using var stream = new CountingStream(new MemoryStream(g.ToBytes()));
        var summary = OnnxExternalDataScanner.Scan(stream, "big.onnx");
        Assert.Empty(summary.ExternalData);
        Assert.True(stream.BytesRead < 1 << 20, $"read {stream.BytesRead} bytes of {stream.Length}");
    }

    // ---- helpers ----------------------------------------------------------------------------------------

    private static void Write(string model, string relative, string text) => File.WriteAllText(Path.Combine(model, relative), text);

    private static void EditJson(string model, string relative, Action<JsonObject> edit)
    {
        string path = Path.Combine(model, relative);
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }

    private static void TruncateTo(string model, string relative, double fraction)
    {
        string path = Path.Combine(model, relative);
        using var f = new FileStream(path, FileMode.Open);
        f.SetLength((long)(f.Length * fraction));
    }

    private static void TruncateBytes(string model, string relative, long bytes)
    {
        using var f = new FileStream(Path.Combine(model, relative), FileMode.Open);
        f.SetLength(bytes);
    }

    /// <summary>Makes a file larger (sparse where the file system allows, so nothing is written).</summary>
    private static void Grow(string model, string relative, long bytes)
    {
        using var f = new FileStream(Path.Combine(model, relative), FileMode.Open);
        f.SetLength(bytes);
    }

    private static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static void EditOnnx(string model, string relative, Action<ModelProto> edit)
    {
        string path = Path.Combine(model, relative);
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        edit(proto);
        File.WriteAllBytes(path, proto.ToByteArray());
    }

    private static IEnumerable<TensorProto> ExternalTensors(ModelProto p) =>
        p.Graph.Initializer.Where(t => t.DataLocation == TensorProto.Types.DataLocation.External);

    private static void SetLocations(string model, string location) => SetEntry(model, "location", location);

    private static void SetEntry(string model, string key, string value) => EditOnnx(model, "unet/model.onnx", p =>
    {
        foreach (var t in ExternalTensors(p))
            foreach (var entry in t.ExternalData.Where(e => e.Key == key))
                entry.Value = value;
    });

    private static void FixDims(ValueInfoProto value, params long[] dims)
    {
        var shape = value.Type.TensorType.Shape;
        shape.Dim.Clear();
        foreach (var d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
    }

    private static TensorProto ExternalTensor(string location) => new()
    {
        Name = "stolen",
        DataType = (int)TensorProto.Types.DataType.Float,
        Dims = { 4 },
        DataLocation = TensorProto.Types.DataLocation.External,
        ExternalData = { new StringStringEntryProto { Key = "location", Value = location } },
    };

    private static NodeProto ConstantNode(string location) => new()
    {
        OpType = "Constant",
        Output = { "stolen_constant" },
        Attribute = { new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = ExternalTensor(location) } },
    };

    private static NodeProto IfNode(string location) => new()
    {
        OpType = "If",
        Input = { "sample" },
        Output = { "if_out" },
        Attribute =
        {
            new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = new GraphProto { Name = "then", Initializer = { ExternalTensor(location) } } },
            new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = new GraphProto { Name = "else" } },
        },
    };

    private static void NestGraphs(ModelProto p)
    {
        var inner = new GraphProto { Name = "g0" };
        for (int i = 1; i < 40; i++)
            inner = new GraphProto { Name = $"g{i}", Node = { new NodeProto { OpType = "If", Attribute = { new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = inner } } } } };
        p.Graph.Node.Insert(0, inner.Node[0]);
    }

    /// <summary>Moves a file next to the model folder and leaves a link to it in its place.</summary>
    private static void LinkOutside(string model, string relative)
    {
        string path = Path.Combine(model, relative);
        string outside = Path.Combine(model, "..", "outside-" + Path.GetFileName(path));
        File.Move(path, outside);
        File.CreateSymbolicLink(path, outside);
    }

    private static void LinkFolderOutside(string model, string relative)
    {
        string path = Path.Combine(model, relative);
        string outside = Path.Combine(model, "..", "outside-" + relative);
        Directory.Move(path, outside);
        Directory.CreateSymbolicLink(path, outside);
    }

    /// <summary>A stream that counts the bytes read from it.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long BytesRead { get; private set; }
        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => inner.Position = value; }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = inner.Read(buffer, offset, count);
            BytesRead += n;
            return n;
        }
        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}

using System.Text.Json;

namespace MLNet.Diffusion.Models;

/// <summary>
/// A Stable Diffusion model folder in the diffusers/Optimum ONNX layout: <c>model_index.json</c>,
/// <c>tokenizer/</c>, <c>text_encoder/</c>, <c>unet/</c>, <c>vae_decoder/</c>, optional <c>vae_encoder/</c> and
/// <c>scheduler/scheduler_config.json</c>. Opening checks that every required piece is there and passes
/// <see cref="ModelFolderValidator"/>'s checks (nothing resolves outside the folder, no file is truncated, empty or
/// absurdly large, no configuration value is out of range), so a broken or hostile folder fails before any model is
/// loaded, with a message that names the file and the problem.
/// </summary>
internal sealed class DiffusionModelFolder
{
    /// <summary>SD 1.x/2.x's VAE scaling factor, used when the VAE's config does not give one.</summary>
    public const float DefaultVaeScalingFactor = 0.18215f;

    private DiffusionModelFolder(string directory) => Directory = directory;

    /// <summary>The folder's full path.</summary>
    public string Directory { get; }

    /// <summary><c>tokenizer/</c>.</summary>
    public string TokenizerDirectory => Inside("tokenizer");

    /// <summary><c>text_encoder/model.onnx</c>.</summary>
    public string TextEncoderPath => Inside("text_encoder", "model.onnx");

    /// <summary><c>unet/model.onnx</c>.</summary>
    public string UnetPath => Inside("unet", "model.onnx");

    /// <summary><c>vae_decoder/model.onnx</c>.</summary>
    public string VaeDecoderPath => Inside("vae_decoder", "model.onnx");

    /// <summary><c>vae_encoder/model.onnx</c>, or null when the folder has no VAE encoder (image-to-image needs one).</summary>
    public string? VaeEncoderPath => File.Exists(Inside("vae_encoder", "model.onnx")) ? Inside("vae_encoder", "model.onnx") : null;

    /// <summary><c>scheduler/scheduler_config.json</c>.</summary>
    public string SchedulerConfigPath => Inside("scheduler", "scheduler_config.json");

    /// <summary>The pipeline class named by <c>model_index.json</c> (e.g. <c>OnnxStableDiffusionPipeline</c>), or null.</summary>
    public string? PipelineClassName { get; private set; }

    /// <summary>The VAE scaling factor from <c>vae_decoder/config.json</c> (or <c>vae/config.json</c>), else 0.18215.</summary>
    public float VaeScalingFactor { get; private set; } = DefaultVaeScalingFactor;

    /// <summary>The UNet's latent size from <c>unet/config.json</c> (<c>sample_size</c>), when given.</summary>
    public int? UnetSampleSize { get; private set; }

    /// <summary>Opens and checks a model folder.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">A required component is missing; the message names it.</exception>
    /// <exception cref="InvalidDataException">A file is malformed, truncated, empty, too large, out of range or resolves
    /// outside the folder (a link, an external-data location, a path in a configuration); the message names it.</exception>
    public static DiffusionModelFolder Open(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var full = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(full))
            throw new DirectoryNotFoundException($"Model folder '{full}' does not exist. Pass the folder of a Stable Diffusion ONNX export (it holds model_index.json, unet/, text_encoder/, vae_decoder/, tokenizer/ and scheduler/).");
        var folder = new DiffusionModelFolder(full);
        folder.Check();
        return folder;
    }

    private void Check()
    {
        // Every file is checked (links, size) before it is read, and every path is resolved inside the folder;
        // see ModelFolderValidator for the policy.
        var paths = new ModelFolderPaths(Directory);
        var index = Inside("model_index.json");
        if (File.Exists(index))
        {
            using var doc = ReadJson(index, paths, ModelFolderValidator.MaxConfigBytes, "pipeline index (model_index.json)");
            ModelFolderValidator.CheckIndex(doc.RootElement, index);
            if (doc.RootElement.TryGetProperty("_class_name", out var cls) && cls.ValueKind == JsonValueKind.String)
                PipelineClassName = cls.GetString();
            if (doc.RootElement.TryGetProperty("unet", out var unetEntry) && unetEntry.ValueKind == JsonValueKind.Array
                && doc.RootElement.TryGetProperty("text_encoder_2", out _))
                throw new NotSupportedException($"Model folder '{Directory}' is an SDXL export (model_index.json names text_encoder_2); only SD 1.x/2.x-style folders are supported.");
        }
        RequireFile(TextEncoderPath, "text encoder");
        RequireFile(UnetPath, "UNet");
        RequireFile(VaeDecoderPath, "VAE decoder");
        RequireFile(Inside("tokenizer", "vocab.json"), "tokenizer vocabulary");
        RequireFile(Inside("tokenizer", "merges.txt"), "tokenizer merges");
        RequireFile(SchedulerConfigPath, "scheduler configuration");

        paths.CheckFile(Inside("tokenizer", "vocab.json"), ModelFolderValidator.MaxTokenizerFileBytes, "tokenizer vocabulary");
        paths.CheckFile(Inside("tokenizer", "merges.txt"), ModelFolderValidator.MaxTokenizerFileBytes, "tokenizer merges file");
        foreach (var name in (ReadOnlySpan<string>)["tokenizer_config.json", "special_tokens_map.json"])
        {
            var file = Inside("tokenizer", name);
            if (!File.Exists(file)) continue;
            using var doc = ReadJson(file, paths, ModelFolderValidator.MaxConfigBytes, "tokenizer configuration");
            ModelFolderValidator.CheckTokenizerConfig(doc.RootElement, file);
        }
        paths.CheckFile(SchedulerConfigPath, ModelFolderValidator.MaxConfigBytes, "scheduler configuration");
        ModelFolderValidator.CheckSchedulerConfig(Schedulers.SchedulerConfig.Load(SchedulerConfigPath));

        foreach (var vaeConfig in new[] { Inside("vae_decoder", "config.json"), Inside("vae", "config.json") })
        {
            if (!File.Exists(vaeConfig)) continue;
            using var doc = ReadJson(vaeConfig, paths, ModelFolderValidator.MaxConfigBytes, "VAE configuration");
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("scaling_factor", out var s))
            {
                if (s.ValueKind != JsonValueKind.Number || !float.IsFinite(s.GetSingle()) || s.GetSingle() <= 0 || s.GetSingle() > ModelFolderValidator.MaxScalingFactor)
                    throw new InvalidDataException($"'{vaeConfig}': scaling_factor must be a positive number of at most {ModelFolderValidator.MaxScalingFactor}, found {s.GetRawText()}.");
                VaeScalingFactor = s.GetSingle();
            }
            break;
        }
        var unetConfig = Inside("unet", "config.json");
        if (File.Exists(unetConfig))
        {
            using var doc = ReadJson(unetConfig, paths, ModelFolderValidator.MaxConfigBytes, "UNet configuration");
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("sample_size", out var s) && s.ValueKind != JsonValueKind.Null)
            {
                if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt32(out var size) || size < 1 || size > ModelFolderValidator.MaxLatentSize)
                    throw new InvalidDataException($"'{unetConfig}': sample_size must be an integer from 1 to {ModelFolderValidator.MaxLatentSize} (images of at most 4096 pixels), found {s.GetRawText()}.");
                UnetSampleSize = size;
            }
        }

        ModelFolderValidator.CheckOnnx(TextEncoderPath, "text_encoder", paths);
        ModelFolderValidator.CheckOnnx(UnetPath, "unet", paths);
        ModelFolderValidator.CheckOnnx(VaeDecoderPath, "vae_decoder", paths);
        if (VaeEncoderPath is { } encoder) ModelFolderValidator.CheckOnnx(encoder, "vae_encoder", paths);
    }

    private void RequireFile(string path, string what)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Model folder '{Directory}' has no {what}: expected '{Path.GetRelativePath(Directory, path)}' (the diffusers/Optimum ONNX layout).", path);
    }

    /// <summary>A path inside the folder; refuses anything that would resolve outside it.</summary>
    private string Inside(params string[] parts)
    {
        var path = Path.GetFullPath(Path.Combine([Directory, .. parts]));
        var root = Directory.EndsWith(Path.DirectorySeparatorChar) ? Directory : Directory + Path.DirectorySeparatorChar;
        if (!path.StartsWith(root, StringComparison.Ordinal))
            throw new InvalidDataException($"'{Path.Combine(parts)}' resolves outside the model folder '{Directory}'.");
        return path;
    }

    private static JsonDocument ReadJson(string path, ModelFolderPaths paths, long maxBytes, string what)
    {
        paths.CheckFile(path, maxBytes, what);
        string text = File.ReadAllText(path);
        try
        {
            return JsonDocument.Parse(text, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip, MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON: {e.Message}", e);
        }
    }
}

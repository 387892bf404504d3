using System.Text.Json;

namespace MLNet.Diffusion.Models;

/// <summary>
/// A Stable Diffusion model folder in the diffusers/Optimum ONNX layout: <c>model_index.json</c>,
/// <c>tokenizer/</c> and <c>text_encoder/</c>, and for SDXL also <c>tokenizer_2/</c> and <c>text_encoder_2/</c> (the SDXL
/// refiner has only the second pair), <c>unet/</c>, <c>vae_decoder/</c>, optional <c>vae_encoder/</c> and
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

    /// <summary>
    /// The text encoders in the order their embeddings are concatenated: <c>text_encoder</c> (with <c>tokenizer/</c>),
    /// then <c>text_encoder_2</c> (with <c>tokenizer_2/</c>), each when the folder has it.
    /// </summary>
    public IReadOnlyList<TextEncoderFiles> TextEncoders { get; private set; } = [];

    /// <summary>Whether the folder has SDXL's second text encoder (<c>text_encoder_2/</c>): SDXL base, Turbo and refiner.</summary>
    public bool HasSecondTextEncoder => TextEncoders.Any(e => e.Name == "text_encoder_2");

    /// <summary>
    /// <c>model_index.json</c>'s <c>force_zeros_for_empty_prompt</c> (SDXL): without a negative prompt the unconditional
    /// embeddings are zeros rather than the empty prompt's. diffusers' SDXL pipelines default it to true; false elsewhere.
    /// </summary>
    public bool ForceZerosForEmptyPrompt { get; private set; }

    /// <summary><c>model_index.json</c>'s <c>requires_aesthetics_score</c> (the SDXL refiner: time ids end with an aesthetic score).</summary>
    public bool RequiresAestheticsScore { get; private set; }

    /// <summary>
    /// The denoiser's model file: <c>unet/model.onnx</c>, or <c>transformer/model.onnx</c> in a folder of a diffusion
    /// transformer (Stable Diffusion 3, FLUX.1) that has no <c>unet/</c>.
    /// </summary>
    public string UnetPath => Inside(DenoiserName, "model.onnx");

    /// <summary>The denoiser's folder name: <c>unet</c>, or <c>transformer</c> for SD3 and FLUX.1 (<see cref="UnetPath"/>).</summary>
    public string DenoiserName { get; private set; } = "unet";

    /// <summary>
    /// The flow-matching family the folder holds (<see cref="ModelFamily.StableDiffusion3"/> or <see cref="ModelFamily.Flux"/>),
    /// from <c>model_index.json</c>'s pipeline class or <c>transformer/config.json</c>'s class; null for a UNet folder.
    /// </summary>
    public ModelFamily? FlowFamily { get; private set; }

    /// <summary>
    /// The T5 encoder: SD3's <c>text_encoder_3</c> (with <c>tokenizer_3/</c>) or FLUX's <c>text_encoder_2</c> (with
    /// <c>tokenizer_2/</c>), when the folder has it (SD3 runs without it); null otherwise.
    /// </summary>
    public TextEncoderFiles? T5Encoder { get; private set; }

    /// <summary>The VAE's <c>shift_factor</c> (SD3 0.0609, FLUX.1 0.1159): latents are decoded as z / scaling + shift; 0 when not given.</summary>
    public float VaeShiftFactor { get; private set; }

    /// <summary>The VAE's <c>latent_channels</c> (4; 16 for SD3 and FLUX.1), when its config gives it.</summary>
    public int? VaeLatentChannels { get; private set; }

    /// <summary><c>transformer/config.json</c>'s <c>guidance_embeds</c> (FLUX.1-dev: the guidance scale is an input), when given.</summary>
    public bool? TransformerGuidanceEmbeds { get; private set; }

    /// <summary>
    /// <c>controlnet/model.onnx</c>, OnnxStack's ControlNet-ready UNet (the UNet with the ControlNet residuals as inputs)
    /// beside the plain <c>unet/</c>, or null when the folder has none.
    /// </summary>
    public string? ControlNetUnetPath => File.Exists(Inside("controlnet", "model.onnx")) ? Inside("controlnet", "model.onnx") : null;

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

    /// <summary>unet/config.json's <c>time_cond_proj_dim</c> (latent consistency models: the guidance embedding's width), when given.</summary>
    public int? UnetTimeCondProjDim { get; private set; }

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
            FlowFamily = FlowFamilyOf(PipelineClassName);
            bool xl = FlowFamily is null && (PipelineClassName?.Contains("XL", StringComparison.Ordinal) == true || doc.RootElement.TryGetProperty("text_encoder_2", out _));
            ForceZerosForEmptyPrompt = ReadBool(doc.RootElement, "force_zeros_for_empty_prompt", index) ?? xl;
            RequiresAestheticsScore = ReadBool(doc.RootElement, "requires_aesthetics_score", index) ?? false;
        }
        if (!File.Exists(Inside("unet", "model.onnx")) && File.Exists(Inside("transformer", "model.onnx")))
        {
            DenoiserName = "transformer";
            ReadTransformerConfig(paths);
        }
        if (DenoiserName == "unet" && FlowFamily is { } claimed)
            throw new FileNotFoundException($"Model folder '{Directory}' is a {claimed} folder (model_index.json names {PipelineClassName}) but has no " +
                $"'{Path.Combine("transformer", "model.onnx")}': SD3 and FLUX.1 exports keep their diffusion transformer there.", Inside("transformer", "model.onnx"));
        if (DenoiserName == "transformer" && FlowFamily is null)
            throw new InvalidDataException($"Model folder '{Directory}' has a transformer/ but neither model_index.json's _class_name ({PipelineClassName ?? "absent"}) " +
                "nor transformer/config.json's names SD3 (StableDiffusion3Pipeline, SD3Transformer2DModel) or FLUX.1 (FluxPipeline, FluxTransformer2DModel). Add the export's model_index.json.");
        var encoders = new List<TextEncoderFiles>(2);
        // FLUX.1's text_encoder_2 is its T5 encoder; SD3's T5 is text_encoder_3: neither is a CLIP encoder.
        var clipPairs = FlowFamily == ModelFamily.Flux ? [("text_encoder", "tokenizer")] : (ReadOnlySpan<(string, string)>)[("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")];
        foreach (var (encoderName, tokenizerName) in clipPairs)
            if (File.Exists(Inside(encoderName, "model.onnx")) || encoderName == "text_encoder" && !File.Exists(Inside("text_encoder_2", "model.onnx"))
                || FlowFamily == ModelFamily.StableDiffusion3) // SD3 needs both CLIP encoders: a missing one is named below
                encoders.Add(new TextEncoderFiles(encoderName, Inside(encoderName, "model.onnx"), Inside(tokenizerName)));
        TextEncoders = encoders;
        var (t5Name, t5Tokenizer) = FlowFamily == ModelFamily.Flux ? ("text_encoder_2", "tokenizer_2") : ("text_encoder_3", "tokenizer_3");
        if (FlowFamily is not null && File.Exists(Inside(t5Name, "model.onnx")))
            T5Encoder = new TextEncoderFiles(t5Name, Inside(t5Name, "model.onnx"), Inside(t5Tokenizer));
        if (FlowFamily == ModelFamily.Flux && T5Encoder is null)
            throw new FileNotFoundException($"Model folder '{Directory}' has no T5 encoder: FLUX.1 conditions on it, expected '{Path.Combine("text_encoder_2", "model.onnx")}' with its tokenizer in tokenizer_2/.",
                Inside("text_encoder_2", "model.onnx"));
        if (T5Encoder is { } t5)
        {
            RequireFile(t5.ModelPath, "T5 encoder");
            string spiece = Inside(t5Tokenizer, Tokenization.T5Tokenizer.ModelFileName), json = Inside(t5Tokenizer, "tokenizer.json");
            if (!File.Exists(spiece) && !File.Exists(json))
                throw new FileNotFoundException($"Model folder '{Directory}' has no T5 tokenizer: expected '{Path.Combine(t5Tokenizer, Tokenization.T5Tokenizer.ModelFileName)}' or '{Path.Combine(t5Tokenizer, "tokenizer.json")}'.", spiece);
            foreach (var file in new[] { spiece, json })
                if (File.Exists(file)) paths.CheckFile(file, ModelFolderValidator.MaxTokenizerFileBytes, "T5 tokenizer file");
        }
        foreach (var e in encoders)
        {
            string tokenizer = Path.GetFileName(e.TokenizerDirectory);
            RequireFile(e.ModelPath, e.Name == "text_encoder" ? "text encoder" : "second text encoder");
            RequireFile(Inside(tokenizer, "vocab.json"), $"{tokenizer} vocabulary");
            RequireFile(Inside(tokenizer, "merges.txt"), $"{tokenizer} merges");
        }
        RequireFile(UnetPath, "UNet");
        RequireFile(VaeDecoderPath, "VAE decoder");
        RequireFile(SchedulerConfigPath, "scheduler configuration");

        foreach (var e in encoders)
        {
            string tokenizer = Path.GetFileName(e.TokenizerDirectory);
            paths.CheckFile(Inside(tokenizer, "vocab.json"), ModelFolderValidator.MaxTokenizerFileBytes, "tokenizer vocabulary");
            paths.CheckFile(Inside(tokenizer, "merges.txt"), ModelFolderValidator.MaxTokenizerFileBytes, "tokenizer merges file");
            foreach (var name in (ReadOnlySpan<string>)["tokenizer_config.json", "special_tokens_map.json"])
            {
                var file = Inside(tokenizer, name);
                if (!File.Exists(file)) continue;
                using var doc = ReadJson(file, paths, ModelFolderValidator.MaxConfigBytes, "tokenizer configuration");
                ModelFolderValidator.CheckTokenizerConfig(doc.RootElement, file);
            }
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
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("latent_channels", out var lc) && lc.ValueKind != JsonValueKind.Null)
            {
                if (lc.ValueKind != JsonValueKind.Number || !lc.TryGetInt32(out var channels) || channels is < 1 or > 64)
                    throw new InvalidDataException($"'{vaeConfig}': latent_channels must be an integer from 1 to 64 (4 for SD 1.x, 2.x and SDXL, 16 for SD3 and FLUX.1), found {lc.GetRawText()}.");
                VaeLatentChannels = channels;
            }
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("shift_factor", out var shift) && shift.ValueKind != JsonValueKind.Null)
            {
                if (shift.ValueKind != JsonValueKind.Number || !float.IsFinite(shift.GetSingle()) || Math.Abs(shift.GetSingle()) > ModelFolderValidator.MaxScalingFactor)
                    throw new InvalidDataException($"'{vaeConfig}': shift_factor must be a number from −{ModelFolderValidator.MaxScalingFactor} to {ModelFolderValidator.MaxScalingFactor}, found {shift.GetRawText()}.");
                VaeShiftFactor = shift.GetSingle();
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
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("time_cond_proj_dim", out var c) && c.ValueKind != JsonValueKind.Null)
            {
                if (c.ValueKind != JsonValueKind.Number || !c.TryGetInt32(out var dim) || dim < 2 || dim > 4096 || dim % 2 != 0)
                    throw new InvalidDataException($"'{unetConfig}': time_cond_proj_dim must be an even integer from 2 to 4096 (latent consistency models use 256), found {c.GetRawText()}.");
                UnetTimeCondProjDim = dim;
            }
        }

        foreach (var e in encoders) ModelFolderValidator.CheckOnnx(e.ModelPath, e.Name, paths);
        if (T5Encoder is { } t5Files) ModelFolderValidator.CheckOnnx(t5Files.ModelPath, t5Files.Name, paths);
        ModelFolderValidator.CheckOnnx(UnetPath, DenoiserName, paths);
        ModelFolderValidator.CheckOnnx(VaeDecoderPath, "vae_decoder", paths);
        if (VaeEncoderPath is { } encoder) ModelFolderValidator.CheckOnnx(encoder, "vae_encoder", paths);
        if (ControlNetUnetPath is { } controlUnet) ModelFolderValidator.CheckOnnx(controlUnet, "unet", paths);
    }

    /// <summary>The flow-matching family a pipeline or transformer class names (diffusers' class names), or null.</summary>
    internal static ModelFamily? FlowFamilyOf(string? className) => className switch
    {
        null => null,
        _ when className.Contains("StableDiffusion3", StringComparison.Ordinal) || className.StartsWith("SD3", StringComparison.Ordinal) => ModelFamily.StableDiffusion3,
        _ when className.Contains("Flux", StringComparison.Ordinal) => ModelFamily.Flux,
        _ => null,
    };

    /// <summary>
    /// <c>transformer/config.json</c>: its class names the family when <c>model_index.json</c> does not; <c>sample_size</c>
    /// (SD3: 128) gives the default size, and <c>guidance_embeds</c> tells FLUX.1-dev from schnell.
    /// </summary>
    private void ReadTransformerConfig(ModelFolderPaths paths)
    {
        var config = Inside("transformer", "config.json");
        if (!File.Exists(config)) return;
        using var doc = ReadJson(config, paths, ModelFolderValidator.MaxConfigBytes, "transformer configuration");
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) return;
        if (root.TryGetProperty("_class_name", out var cls) && cls.ValueKind == JsonValueKind.String)
            FlowFamily ??= FlowFamilyOf(cls.GetString());
        if (root.TryGetProperty("sample_size", out var s) && s.ValueKind != JsonValueKind.Null)
        {
            if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt32(out var size) || size < 1 || size > ModelFolderValidator.MaxLatentSize)
                throw new InvalidDataException($"'{config}': sample_size must be an integer from 1 to {ModelFolderValidator.MaxLatentSize} (images of at most 4096 pixels), found {s.GetRawText()}.");
            UnetSampleSize = size;
        }
        TransformerGuidanceEmbeds = ReadBool(root, "guidance_embeds", config);
    }

    /// <summary>A boolean entry of <c>model_index.json</c>, or null when absent or null.</summary>
    private static bool? ReadBool(JsonElement root, string name, string path)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InvalidDataException($"'{path}': {name} must be true or false, found {value.GetRawText()}."),
        };
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

/// <summary>One text encoder of a model folder: its name (<c>text_encoder</c> or <c>text_encoder_2</c>), its
/// <c>model.onnx</c> and its tokenizer folder.</summary>
internal sealed record TextEncoderFiles(string Name, string ModelPath, string TokenizerDirectory);

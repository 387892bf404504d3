using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// <c>info</c>: what a model folder holds — each component's ONNX inputs and outputs (name, element type, shape with
/// symbolic dimension names), the family and how each extra UNet input was identified (by the engine's own rules, on the
/// models' metadata), the scheduler configuration, VAE scaling factor, default size and the device.
/// Each model is opened on the requested device and closed again, one at a time.
/// </summary>
internal sealed class InfoCommand(CliEnvironment environment) : Command<ModelSettings>
{
    private static readonly string[] Components = ["text_encoder", "text_encoder_2", "text_encoder_3", "unet", "transformer", "vae_decoder", "vae_encoder"];

    public override int Execute(CommandContext context, ModelSettings settings, CancellationToken cancellationToken)
    {
        var console = environment.Console;
        var directory = ModelLocator.Resolve(settings.Model, environment);
        var folder = DiffusionModelFolder.Open(directory);
        var sessions = new OnnxSessionFactory(ModelLocator.RuntimeOptions(settings, environment));

        console.MarkupLineInterpolated($"[bold]Model folder[/]  {folder.Directory}");
        if (folder.PipelineClassName is { } pipelineClass) console.MarkupLineInterpolated($"[bold]Pipeline[/]      {pipelineClass}");

        int? unetLatentSize = null;
        IReadOnlyList<UNetExtraInput> extras = [];
        int unetEmbeddingWidth = 0, encodersWidth = 0;
        bool encoderWidthsKnown = true;
        foreach (var component in Components)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var path = Path.Combine(folder.Directory, component, "model.onnx");
            if (component is "text_encoder_3" or "transformer" && folder.FlowFamily is null) continue;
            if (component == "unet" && folder.DenoiserName != "unet") continue;
            if (!File.Exists(path))
            {
                console.MarkupLineInterpolated($"[bold]{component}[/]  (none)");
                continue;
            }
            long bytes = new DirectoryInfo(Path.GetDirectoryName(path)!).EnumerateFiles().Sum(f => f.Length);
            console.WriteLine();
            console.MarkupLineInterpolated($"[bold]{component}[/]  {Path.GetRelativePath(folder.Directory, path)} ({FormatSize(bytes)} with its folder)");
            InferenceSession session;
            try
            {
                session = sessions.Create(path);
            }
            catch (OnnxRuntimeException e)
            {
                throw new InvalidDataException($"The {component} model '{path}' could not be loaded by ONNX Runtime: {e.Message.Trim()}", e);
            }
            using (session)
            {
                if (component == folder.DenoiserName)
                {
                    var specs = session.InputMetadata.ToDictionary(p => p.Key, p => TensorSpec.From(p.Key, p.Value), StringComparer.Ordinal);
                    // The engine's identification, so that info names the roles generate will use, and refuses what it refuses.
                    extras = UNetExtraInputs.Identify(specs, path, folder.UnetTimeCondProjDim, component);
                    if (specs.TryGetValue("encoder_hidden_states", out var states) && states.Rank == 3 && states.Dimensions[2] > 0)
                        unetEmbeddingWidth = states.Dimensions[2];
                }
                else if (component.StartsWith("text_encoder", StringComparison.Ordinal) && folder.TextEncoders.Any(e => e.Name == component))
                {
                    int width = session.OutputMetadata.TryGetValue("last_hidden_state", out var last) && last.IsTensor && last.Dimensions.Length == 3 ? last.Dimensions[2] : 0;
                    encodersWidth += width;
                    encoderWidthsKnown &= width > 0;
                }
                foreach (var (kind, metadata) in new[] { ("input", session.InputMetadata), ("output", session.OutputMetadata) })
                    foreach (var (name, node) in metadata)
                    {
                        var type = node.IsTensor ? TensorSpec.ElementName(node.ElementDataType) : node.OnnxValueType.ToString();
                        console.MarkupLineInterpolated($"  {kind,-6} {name,-24} {type,-8} {Shape(node)}");
                        if (component == folder.DenoiserName && kind == "input" && name is "sample" or "hidden_states" && node.IsTensor && node.Dimensions.Length == 4 && node.Dimensions[2] > 0)
                            unetLatentSize = node.Dimensions[2];
                    }
            }
        }

        // The engine's family rule (LoadedModel.FamilyOf) on the metadata: the encoders' width first, else the UNet's.
        int embeddingWidth = encoderWidthsKnown && encodersWidth > 0 ? encodersWidth : unetEmbeddingWidth;
        var family = folder.FlowFamily ?? LoadedModel.FamilyOf(extras.FirstOrDefault(e => e.Kind == UNetExtraKind.TimeIds), folder.RequiresAestheticsScore, embeddingWidth);
        // The engine's reader (Python's -Infinity and NaN literals, the schedule checks), and the engine's load-time check
        // of the scheduler, so that info accepts and refuses the folders that generate does.
        var scheduler = SchedulerConfig.Load(folder.SchedulerConfigPath);
        SchedulerFactory.CheckLoads(scheduler);
        console.WriteLine();
        console.MarkupLineInterpolated($"[bold]Family[/]  {DescribeFamily(family, embeddingWidth)}");
        if (extras.Any(e => e.Kind == UNetExtraKind.TimestepCond))
            console.MarkupLineInterpolated($"        latent consistency (guidance embedding): one UNet row per image, no classifier-free guidance");
        if (string.Equals(scheduler.GetString("timestep_spacing", ""), "trailing", StringComparison.Ordinal))
            console.MarkupLineInterpolated($"        Turbo-style schedule (timestep_spacing trailing): 1 to 4 steps, guidance off (-g 0)");
        if (family == ModelFamily.Flux)
            console.MarkupLineInterpolated($"        {(extras.Any(e => e.Kind == UNetExtraKind.Guidance) ? "FLUX.1-dev: the guidance scale is an input (default T5 length 512)" : "FLUX.1-schnell: no guidance, 1 to 4 steps (default T5 length 256)")}; one row per image, no classifier-free guidance");
        if (family == ModelFamily.StableDiffusion3)
            console.MarkupLineInterpolated($"        T5 encoder: {(folder.T5Encoder is null ? "none in the folder: zeros take its place (77 tokens through CLIP only)" : "text_encoder_3 (--no-t5 runs without it; --max-sequence-length sets its tokens, default 256)")}");
        if (extras.Count == 0)
            console.MarkupLineInterpolated($"  {folder.DenoiserName} extra inputs: none (sample, timestep, encoder_hidden_states only)");
        foreach (var extra in extras)
            console.MarkupLineInterpolated(
                $"  {folder.DenoiserName} input {extra.Spec.Name,-24} → {DescribeInput(extra)} (identified by {(UNetExtraInputs.ByName(extra.Spec.Name) is not null ? "name" : "shape")})");

        console.WriteLine();
        foreach (var encoder in folder.TextEncoders)
        {
            var tokenizer = ClipTokenizer.Load(encoder.TokenizerDirectory);
            console.MarkupLineInterpolated($"[bold]{Path.GetFileName(encoder.TokenizerDirectory)}[/]  {Path.GetRelativePath(folder.Directory, encoder.TokenizerDirectory)}/ (max length {tokenizer.MaxLength}, pad id {tokenizer.PadId})");
        }
        if (folder.T5Encoder is { } t5)
        {
            var tokenizer = T5Tokenizer.Load(t5.TokenizerDirectory);
            console.MarkupLineInterpolated($"[bold]{Path.GetFileName(t5.TokenizerDirectory)}[/]  {Path.GetRelativePath(folder.Directory, t5.TokenizerDirectory)}/ (T5 SentencePiece, {tokenizer.VocabularySize} pieces, EOS id {tokenizer.EosId}, pad id {tokenizer.PadId})");
        }

        console.WriteLine();
        console.MarkupLineInterpolated($"[bold]scheduler[/]  {scheduler.ClassName ?? "(no _class_name)"} ({Path.GetRelativePath(folder.Directory, folder.SchedulerConfigPath)})");
        foreach (var key in scheduler.Keys.Where(k => k != "_class_name"))
            console.MarkupLineInterpolated($"  {key,-28} {scheduler.GetRawText(key)}");

        int defaultSize = folder.UnetSampleSize is int s ? s * 8 : unetLatentSize is int l ? l * 8 : family == ModelFamily.Flux ? 1024 : 512;
        string sizeSource = folder.UnetSampleSize is not null ? $"{folder.DenoiserName}/config.json sample_size × 8" : unetLatentSize is not null ? $"the {folder.DenoiserName}'s fixed sample size × 8"
            : family == ModelFamily.Flux ? "no size given: FLUX.1's 1024" : "no size given: SD's 512";
        console.WriteLine();
        console.MarkupLineInterpolated($"[bold]VAE scaling factor[/]  {folder.VaeScalingFactor.ToString(CultureInfo.InvariantCulture)}{(folder.VaeShiftFactor != 0 ? $", shift factor {folder.VaeShiftFactor.ToString(CultureInfo.InvariantCulture)}" : "")}");
        console.MarkupLineInterpolated($"[bold]Default size[/]        {defaultSize}x{defaultSize} ({sizeSource})");
        console.MarkupLineInterpolated($"[bold]Device[/]              {sessions.ActualDevice}{(sessions.FallbackReason is { } why ? $" (CUDA not used: {why})" : "")}");
        return 0;
    }

    private static string DescribeFamily(ModelFamily family, int embeddingWidth) => family switch
    {
        ModelFamily.StableDiffusionXL => "SDXL base (two text encoders, pooled embeddings, 6 time ids)",
        ModelFamily.StableDiffusion3 => "Stable Diffusion 3 (flow-matching transformer; CLIP-L, CLIP-G and T5 conditioning; 16 latent channels)",
        ModelFamily.Flux => "FLUX.1 (flow-matching transformer over 2×2-packed latents; T5 and CLIP-L pooled conditioning; 16 latent channels)",
        ModelFamily.StableDiffusionXLRefiner => "SDXL refiner (second text encoder, pooled embedding, 5 time ids with the aesthetic score)",
        ModelFamily.StableDiffusion2 => $"SD 2.x (one text encoder, {Width(embeddingWidth)})",
        _ => $"SD 1.x (one text encoder, {Width(embeddingWidth)})",
    };

    private static string Width(int width) => width > 0 ? $"embeddings {width} wide" : "embedding width not fixed";

    private static string DescribeInput(UNetExtraInput input) => input.Kind switch
    {
        UNetExtraKind.TextEmbeds => $"pooled text embedding ({(input.Width > 0 ? input.Width.ToString(CultureInfo.InvariantCulture) : "symbolic")} wide)",
        UNetExtraKind.TimeIds => input.Width switch
        {
            UNetExtraInputs.RefinerTimeIds => "time ids: original size, crop, aesthetic score",
            UNetExtraInputs.BaseTimeIds => "time ids: original size, crop, target size",
            _ => "time ids (symbolic width)",
        },
        UNetExtraKind.ImageIds => "image token positions (FLUX.1's img_ids)",
        UNetExtraKind.TextIds => "text token positions (FLUX.1's txt_ids)",
        UNetExtraKind.Guidance => "distilled guidance scale (FLUX.1-dev's guidance)",
        _ => "guidance embedding (LCM's timestep_cond)",
    };

    /// <summary>[batch, 4, height, width]: fixed sizes as numbers, symbolic ones by name, unnamed ones as "?".</summary>
    private static string Shape(NodeMetadata node)
    {
        if (!node.IsTensor) return "";
        var dims = node.Dimensions;
        var names = node.SymbolicDimensions;
        var parts = new string[dims.Length];
        for (int i = 0; i < dims.Length; i++)
            parts[i] = dims[i] > 0 ? dims[i].ToString(CultureInfo.InvariantCulture)
                : i < names.Length && !string.IsNullOrEmpty(names[i]) ? names[i] : "?";
        return "[" + string.Join(", ", parts) + "]";
    }

    private static string FormatSize(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:F1} KiB",
        _ => $"{bytes} B",
    };
}

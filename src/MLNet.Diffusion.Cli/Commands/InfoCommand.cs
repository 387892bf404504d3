using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace MLNet.Diffusion.Cli.Commands;

/// <summary>
/// <c>info</c>: what a model folder holds — each component's ONNX inputs and outputs (name, element type, shape with
/// symbolic dimension names), the scheduler configuration, VAE scaling factor, default size and the device.
/// Each model is opened on the requested device and closed again, one at a time.
/// </summary>
internal sealed class InfoCommand(CliEnvironment environment) : Command<ModelSettings>
{
    private static readonly string[] Components = ["text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder"];

    public override int Execute(CommandContext context, ModelSettings settings, CancellationToken cancellationToken)
    {
        var console = environment.Console;
        var directory = ModelLocator.Resolve(settings.Model, environment);
        var folder = DiffusionModelFolder.Open(directory);
        var sessions = new OnnxSessionFactory(ModelLocator.RuntimeOptions(settings, environment));

        console.MarkupLineInterpolated($"[bold]Model folder[/]  {folder.Directory}");
        if (folder.PipelineClassName is { } pipelineClass) console.MarkupLineInterpolated($"[bold]Pipeline[/]      {pipelineClass}");

        int? unetLatentSize = null;
        foreach (var component in Components)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var path = Path.Combine(folder.Directory, component, "model.onnx");
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
                foreach (var (kind, metadata) in new[] { ("input", session.InputMetadata), ("output", session.OutputMetadata) })
                    foreach (var (name, node) in metadata)
                    {
                        var type = node.IsTensor ? TensorSpec.ElementName(node.ElementDataType) : node.OnnxValueType.ToString();
                        console.MarkupLineInterpolated($"  {kind,-6} {name,-24} {type,-8} {Shape(node)}");
                        if (component == "unet" && kind == "input" && name == "sample" && node.IsTensor && node.Dimensions.Length == 4 && node.Dimensions[2] > 0)
                            unetLatentSize = node.Dimensions[2];
                    }
            }
        }

        console.WriteLine();
        foreach (var encoder in folder.TextEncoders)
        {
            var tokenizer = ClipTokenizer.Load(encoder.TokenizerDirectory);
            console.MarkupLineInterpolated($"[bold]{Path.GetFileName(encoder.TokenizerDirectory)}[/]  {Path.GetRelativePath(folder.Directory, encoder.TokenizerDirectory)}/ (max length {tokenizer.MaxLength}, pad id {tokenizer.PadId})");
        }

        // The engine's reader (Python's -Infinity and NaN literals, the schedule checks), and the engine's load-time check
        // of the scheduler, so that info accepts and refuses the folders that generate does.
        var scheduler = SchedulerConfig.Load(folder.SchedulerConfigPath);
        SchedulerFactory.Create(null, scheduler).SetTimesteps(1);
        console.WriteLine();
        console.MarkupLineInterpolated($"[bold]scheduler[/]  {scheduler.ClassName ?? "(no _class_name)"} ({Path.GetRelativePath(folder.Directory, folder.SchedulerConfigPath)})");
        foreach (var key in scheduler.Keys.Where(k => k != "_class_name"))
            console.MarkupLineInterpolated($"  {key,-28} {scheduler.GetRawText(key)}");

        int defaultSize = folder.UnetSampleSize is int s ? s * 8 : unetLatentSize is int l ? l * 8 : 512;
        string sizeSource = folder.UnetSampleSize is not null ? "unet/config.json sample_size × 8" : unetLatentSize is not null ? "the UNet's fixed sample size × 8" : "no size given: SD's 512";
        console.WriteLine();
        console.MarkupLineInterpolated($"[bold]VAE scaling factor[/]  {folder.VaeScalingFactor.ToString(CultureInfo.InvariantCulture)}");
        console.MarkupLineInterpolated($"[bold]Default size[/]        {defaultSize}x{defaultSize} ({sizeSource})");
        console.MarkupLineInterpolated($"[bold]Device[/]              {sessions.ActualDevice}{(sessions.FallbackReason is { } why ? $" (CUDA not used: {why})" : "")}");
        return 0;
    }

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

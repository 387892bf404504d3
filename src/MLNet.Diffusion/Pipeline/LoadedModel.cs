using Microsoft.Extensions.Logging;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.TextEncoding;
using MLNet.Diffusion.Tokenization;
using MLNet.Diffusion.Vae;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// A model folder's components, loaded once: the scheduler configuration, the tokenizer and text encoder, the UNet and
/// the VAE. Every <see cref="StableDiffusionPipeline"/> over the same folder and runtime settings shares one, through
/// <see cref="LoadedModelStore"/>; the store disposes it when the last of them is disposed.
/// </summary>
internal sealed class LoadedModel : IDisposable
{
    private LoadedModel(DiffusionModelFolder folder, SchedulerConfig schedulerConfig, TextEncoder textEncoder, UNet unet,
        VaeDecoder vaeDecoder, VaeEncoder? vaeEncoder, string? fallbackReason)
    {
        Folder = folder;
        SchedulerConfig = schedulerConfig;
        TextEncoder = textEncoder;
        UNet = unet;
        VaeDecoder = vaeDecoder;
        VaeEncoder = vaeEncoder;
        Device = unet.Device;
        FallbackReason = fallbackReason;
    }

    public DiffusionModelFolder Folder { get; }

    public SchedulerConfig SchedulerConfig { get; }

    public TextEncoder TextEncoder { get; }

    public UNet UNet { get; }

    public VaeDecoder VaeDecoder { get; }

    public VaeEncoder? VaeEncoder { get; }

    public ExecutionDevice Device { get; }

    public string? FallbackReason { get; }

    /// <summary>Opens and checks <paramref name="directory"/>, then creates one session per component.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">A component is missing (named in the message).</exception>
    /// <exception cref="InvalidDataException">A component does not fit the contract (named in the message).</exception>
    public static LoadedModel Load(string directory, DiffusionRuntimeOptions options)
    {
        var folder = DiffusionModelFolder.Open(directory);
        var schedulerConfig = SchedulerConfig.Load(folder.SchedulerConfigPath);
        // Fail at load time on an unknown or broken scheduler, including keys read only when timesteps are set.
        SchedulerFactory.Create(null, schedulerConfig).SetTimesteps(1);
        var tokenizer = ClipTokenizer.Load(folder.TokenizerDirectory);
        var sessions = new OnnxSessionFactory(options);
        var loaded = new List<IDisposable>();
        try
        {
            var textEncoder = new TextEncoder(folder.TextEncoderPath, tokenizer, sessions);
            loaded.Add(textEncoder);
            var unet = new UNet(folder.UnetPath, sessions);
            loaded.Add(unet);
            var vaeDecoder = new VaeDecoder(folder.VaeDecoderPath, sessions, folder.VaeScalingFactor);
            loaded.Add(vaeDecoder);
            VaeEncoder? vaeEncoder = null;
            if (folder.VaeEncoderPath is { } encoderPath)
            {
                vaeEncoder = new VaeEncoder(encoderPath, sessions, folder.VaeScalingFactor);
                loaded.Add(vaeEncoder);
            }
            if (textEncoder.EmbeddingWidth > 0 && unet.EmbeddingWidth > 0 && textEncoder.EmbeddingWidth != unet.EmbeddingWidth)
                throw new InvalidDataException($"Model folder '{folder.Directory}': the text encoder gives embeddings of width {textEncoder.EmbeddingWidth} but the UNet's encoder_hidden_states takes {unet.EmbeddingWidth}.");
            var model = new LoadedModel(folder, schedulerConfig, textEncoder, unet, vaeDecoder, vaeEncoder, sessions.FallbackReason);
            options.Logger?.LogInformation("Loaded {Folder} on {Device}{Fallback}.", folder.Directory, model.Device,
                model.FallbackReason is null ? "" : $" ({model.FallbackReason})");
            return model;
        }
        catch
        {
            foreach (var component in loaded) component.Dispose();
            throw;
        }
    }

    /// <summary>Releases every component's session.</summary>
    public void Dispose()
    {
        TextEncoder.Dispose();
        UNet.Dispose();
        VaeDecoder.Dispose();
        VaeEncoder?.Dispose();
    }
}

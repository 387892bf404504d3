using Microsoft.Extensions.Logging;
using MLNet.Diffusion.Control;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Models;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;
using MLNet.Diffusion.TextEncoding;
using MLNet.Diffusion.Tokenization;
using MLNet.Diffusion.Vae;

namespace MLNet.Diffusion.Pipeline;

/// <summary>
/// A model folder's components, loaded once: the scheduler configuration, the tokenizers and text encoders (one, or
/// SDXL's two; SD3's and FLUX.1's with their T5 encoder), the denoiser (a UNet, or SD3's and FLUX.1's transformer) and the VAE. Every <see cref="StableDiffusionPipeline"/> over the same folder and runtime settings shares one, through
/// <see cref="LoadedModelStore"/>; the store disposes it when the last of them is disposed.
/// </summary>
internal sealed class LoadedModel : IDisposable
{
    private readonly OnnxSessionFactory _sessions;
    private readonly object _controlGate = new();
    private readonly Dictionary<string, ControlNet> _controlNets = new(StringComparer.Ordinal);
    private UNet? _controlUNet;
    private bool _disposed;

    private LoadedModel(DiffusionModelFolder folder, SchedulerConfig schedulerConfig, ComponentSlot<PromptEncoder> promptEncoders, UNet unet,
        ComponentSlot<VaeDecoder> vaeDecoders, ComponentSlot<VaeEncoder>? vaeEncoders, string? fallbackReason, OnnxSessionFactory sessions)
    {
        _sessions = sessions;
        Folder = folder;
        SchedulerConfig = schedulerConfig;
        PromptEncoders = promptEncoders;
        UNet = unet;
        VaeDecoders = vaeDecoders;
        VaeEncoders = vaeEncoders;
        Device = unet.Device;
        FallbackReason = fallbackReason;
    }

    public DiffusionModelFolder Folder { get; }

    public SchedulerConfig SchedulerConfig { get; }

    /// <summary>The text encoders: run them through <see cref="ComponentSlot{T}.Acquire"/>.</summary>
    public ComponentSlot<PromptEncoder> PromptEncoders { get; }

    /// <summary>The text encoders' description (widths, sequence length; a released session in low-memory mode).</summary>
    public PromptEncoder PromptEncoder => PromptEncoders.Description;

    /// <summary>The UNet, loaded for the model's lifetime.</summary>
    public UNet UNet { get; }

    /// <summary>The VAE decoder: run it through <see cref="ComponentSlot{T}.Acquire"/>.</summary>
    public ComponentSlot<VaeDecoder> VaeDecoders { get; }

    /// <summary>The VAE encoder, when the folder has one: run it through <see cref="ComponentSlot{T}.Acquire"/>.</summary>
    public ComponentSlot<VaeEncoder>? VaeEncoders { get; }

    /// <summary>Whether the text encoders and the VAE are loaded only while a call uses them (<see cref="DiffusionRuntimeOptions.LowMemory"/>).</summary>
    public bool LowMemory => PromptEncoders.LoadsOnDemand;

    public ExecutionDevice Device { get; }

    /// <summary>
    /// The family, from the components: UNet time ids make SDXL (5 of them, or symbolic ones in a folder that requires aesthetic scores: the refiner); else the
    /// embedding width tells SD 2.x (1024) from SD 1.x.
    /// </summary>
    public ModelFamily Family => Folder.FlowFamily ?? FamilyOf(UNet.TimeIds, Folder.RequiresAestheticsScore,
        PromptEncoder.EmbeddingWidth > 0 ? PromptEncoder.EmbeddingWidth : UNet.EmbeddingWidth);

    /// <summary>The family rule of <see cref="Family"/> on a UNet's identified time ids (null when it has none), the folder's
    /// <c>requires_aesthetics_score</c> and the text embedding width (0 when unknown); <c>info</c> applies it to the models'
    /// metadata without loading the pipeline.</summary>
    public static ModelFamily FamilyOf(UNetExtraInput? timeIds, bool requiresAestheticsScore, int embeddingWidth) => timeIds is not null
        ? timeIds.Width == UNetExtraInputs.RefinerTimeIds || timeIds.Width == 0 && requiresAestheticsScore
            ? ModelFamily.StableDiffusionXLRefiner : ModelFamily.StableDiffusionXL
        : embeddingWidth >= 1024 ? ModelFamily.StableDiffusion2 : ModelFamily.StableDiffusion1;

    public string? FallbackReason { get; }

    /// <summary>Opens and checks <paramref name="directory"/>, then creates one session per component (in low-memory mode the
    /// text encoders' and the VAE's are released again once checked).</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">A component is missing (named in the message).</exception>
    /// <exception cref="InvalidDataException">A component does not fit the contract (named in the message).</exception>
    public static LoadedModel Load(string directory, DiffusionRuntimeOptions options)
    {
        var folder = DiffusionModelFolder.Open(directory);
        var schedulerConfig = SchedulerConfig.Load(folder.SchedulerConfigPath);
        // Fail at load time on an unknown or broken scheduler, including keys read only when timesteps are set.
        SchedulerFactory.CheckLoads(schedulerConfig);
        var tokenizers = folder.TextEncoders.Select(e => ClipTokenizer.Load(e.TokenizerDirectory)).ToArray();
        var embeddings = TextualInversionSet.Load(options.TextualInversions);
        var sessions = new OnnxSessionFactory(options);
        var loaded = new List<IDisposable>();
        try
        {
            // SDXL's encoders (both of the base model, the refiner's one) condition on their penultimate hidden state.
            var layer = folder.HasSecondTextEncoder ? TextEncoderLayer.Penultimate : TextEncoderLayer.Last;
            int jointWidth = 0; // SD3 and FLUX.1: the transformer's conditioning width, once it is loaded
            PromptEncoder LoadPromptEncoder()
            {
                var encoders = new List<TextEncoder>();
                try
                {
                    for (int i = 0; i < tokenizers.Length; i++)
                    {
                        var files = folder.TextEncoders[i];
                        encoders.Add(new TextEncoder(files.Name, files.ModelPath, tokenizers[i], sessions, layer, embeddings));
                    }
                }
                catch
                {
                    foreach (var encoder in encoders) encoder.Dispose();
                    throw;
                }
                if (folder.FlowFamily is not { } flow) return new PromptEncoder(encoders);
                T5TextEncoder? t5 = null;
                try
                {
                    if (folder.T5Encoder is { } t5Files && !options.WithoutT5)
                        t5 = new T5TextEncoder(t5Files.Name, t5Files.ModelPath, T5Tokenizer.Load(t5Files.TokenizerDirectory), sessions);
                    else if (flow == ModelFamily.Flux)
                        throw new NotSupportedException($"Model folder '{folder.Directory}': FLUX.1 conditions on its T5 encoder (text_encoder_2), so it cannot run without it; " +
                            "leave DiffusionRuntimeOptions.WithoutT5 (the CLI's --no-t5) off for FLUX.1 models.");
                    return new PromptEncoder(encoders, flow == ModelFamily.Flux ? ConditioningLayout.Flux : ConditioningLayout.StableDiffusion3, t5, jointWidth);
                }
                catch
                {
                    t5?.Dispose();
                    foreach (var encoder in encoders) encoder.Dispose();
                    throw;
                }
            }
            // Low memory: each on-demand component is loaded once here, to check the folder and read its description, and
            // released before the next one loads, so loading never holds more than the UNet and one other component.
            bool onDemand = options.LowMemory;
            ComponentSlot<TComponent> Slot<TComponent>(Func<TComponent> load) where TComponent : class, IDisposable
            {
                var first = load();
                var slot = onDemand ? new ComponentSlot<TComponent>(first, load) : new ComponentSlot<TComponent>(first);
                loaded.Add(slot);
                return slot;
            }
            // The denoiser first: a transformer's conditioning width is what SD3 pads CLIP's embeddings to.
            var unet = new UNet(folder.UnetPath, sessions, folder.UnetTimeCondProjDim, folder.DenoiserName, folder.VaeLatentChannels);
            loaded.Add(unet);
            jointWidth = unet.IsTransformer ? unet.EmbeddingWidth : 0;
            var promptEncoders = Slot(LoadPromptEncoder);
            var textEncoder = promptEncoders.Description;
            var encoders = textEncoder.Encoders;
            var vaeDecoders = Slot(() => new VaeDecoder(folder.VaeDecoderPath, sessions, folder.VaeScalingFactor, folder.VaeShiftFactor));
            ComponentSlot<VaeEncoder>? vaeEncoders = null;
            if (folder.VaeEncoderPath is { } encoderPath)
                vaeEncoders = Slot(() => new VaeEncoder(encoderPath, sessions, folder.VaeScalingFactor, folder.VaeShiftFactor));
            if (unet.IsTransformer && folder.FlowFamily is null)
                throw new InvalidDataException($"Model folder '{folder.Directory}': its denoiser '{folder.UnetPath}' is a diffusion transformer, but the folder does not say whether it is SD3 or FLUX.1.");
            if (vaeDecoders.Description.LatentChannels is int vaeChannels && vaeChannels != unet.LatentChannels)
                throw new InvalidDataException($"Model folder '{folder.Directory}': the VAE decoder takes latents of {vaeChannels} channels, but the {folder.DenoiserName} makes {unet.LatentChannels}. The components come from different models.");
            if (textEncoder.EmbeddingWidth > 0 && unet.EmbeddingWidth > 0 && textEncoder.EmbeddingWidth != unet.EmbeddingWidth)
                throw new InvalidDataException($"Model folder '{folder.Directory}': the text encoder{(encoders.Count > 1 ? "s give" : " gives")} embeddings of width {textEncoder.EmbeddingWidth} " +
                    $"({string.Join(" + ", encoders.Select(e => $"{e.ComponentName} {e.EmbeddingWidth}"))}) but the UNet's encoder_hidden_states takes {unet.EmbeddingWidth}.");
            if (unet.TextEmbeds is { } textEmbeds)
            {
                if (!textEncoder.HasPooled)
                    throw new InvalidDataException($"Model folder '{folder.Directory}': the UNet takes a pooled text embedding ({textEmbeds.Spec}), but {encoders[^1].ComponentName} has no text_embeds or pooler_output output.");
                if (textEmbeds.Width > 0 && textEncoder.PooledWidth > 0 && textEmbeds.Width != textEncoder.PooledWidth)
                    throw new InvalidDataException($"Model folder '{folder.Directory}': the UNet's {textEmbeds.Spec.Name} takes {textEmbeds.Width} values, but {encoders[^1].ComponentName}'s {encoders[^1].PooledName} gives {textEncoder.PooledWidth}.");
            }
            var model = new LoadedModel(folder, schedulerConfig, promptEncoders, unet, vaeDecoders, vaeEncoders, sessions.FallbackReason, sessions);
            options.Logger?.LogInformation("Loaded {Folder} on {Device}{Fallback}{LowMemory}.", folder.Directory, model.Device,
                model.FallbackReason is null ? "" : $" ({model.FallbackReason})", onDemand ? "; text encoders and VAE loaded per use (low memory)" : "");
            return model;
        }
        catch
        {
            foreach (var component in loaded) component.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The ControlNet-ready UNet: <c>unet/</c> itself when it takes the residuals, else OnnxStack's <c>controlnet/model.onnx</c>
    /// beside it, loaded on first use and kept for the model's lifetime.
    /// </summary>
    /// <exception cref="NotSupportedException">The folder has neither.</exception>
    public UNet ControlUNet
    {
        get
        {
            if (UNet.TakesControl) return UNet;
            lock (_controlGate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_controlUNet is not null) return _controlUNet;
                var path = Folder.ControlNetUnetPath
                    ?? throw new NotSupportedException($"Model folder '{Folder.Directory}' has no ControlNet-ready UNet: ControlNets need a UNet that takes their residuals, " +
                        $"either {Path.Combine("controlnet", "model.onnx")} beside unet/ (OnnxStack's layout) or a unet/ exported with the residual inputs " +
                        $"({ControlResiduals.MidName} and down_block_0_additional_residual …). Export the model with ControlNet support (OnnxStack's converter does).");
                var unet = new UNet(path, _sessions, Folder.UnetTimeCondProjDim);
                if (!unet.TakesControl)
                {
                    unet.Dispose();
                    throw new InvalidDataException($"The ControlNet-ready UNet '{path}' takes no ControlNet residuals (its inputs: {string.Join(", ", unet.Inputs.Values)}). Re-export it with the residual inputs.");
                }
                return _controlUNet = unet;
            }
        }
    }

    /// <summary>
    /// The ControlNet of <paramref name="directory"/> (see <see cref="Control.ControlNet.ResolveModelPath"/>), loaded with this model's
    /// runtime settings on first use, checked against <see cref="ControlUNet"/>, and kept for the model's lifetime.
    /// </summary>
    /// <exception cref="InvalidDataException">It does not fit the UNet; the message names the first mismatch.</exception>
    public ControlNet ControlNet(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        // Keyed by the folder as given (full path): a generation of a loaded ControlNet neither scans nor opens its file again.
        string key = Path.GetFullPath(directory);
        lock (_controlGate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_controlNets.TryGetValue(key, out var loaded)) return loaded;
        }
        var path = Control.ControlNet.ResolveModelPath(directory);
        var unet = ControlUNet;
        lock (_controlGate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_controlNets.TryGetValue(key, out var net)) return net;
            net = new ControlNet(path, _sessions);
            try
            {
                net.CheckFits(unet);
            }
            catch
            {
                net.Dispose();
                throw;
            }
            _controlNets.Add(key, net);
            return net;
        }
    }

    /// <summary>The ControlNets loaded so far (tests and diagnostics).</summary>
    public IReadOnlyCollection<ControlNet> LoadedControlNets
    {
        get { lock (_controlGate) return [.. _controlNets.Values]; }
    }

    /// <summary>Releases every component's session.</summary>
    public void Dispose()
    {
        // The UNets first: their idle bindings hold the ControlNets' bindings, released before the ControlNets' sessions.
        UNet.Dispose();
        lock (_controlGate)
        {
            _disposed = true;
            _controlUNet?.Dispose();
            foreach (var net in _controlNets.Values) net.Dispose();
            _controlNets.Clear();
        }
        PromptEncoders.Dispose();
        VaeDecoders.Dispose();
        VaeEncoders?.Dispose();
    }
}

using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Denoising;

/// <summary>
/// The noise-predicting UNet (<c>unet/model.onnx</c>). Its inputs are read from the model's metadata, since
/// exporters differ: <c>sample</c> float or float16 [B, C, h, w] (C = 4, or 9 for inpainting UNets);
/// <c>timestep</c> float [B] (diffusers), int64 [B] (Optimum &lt; 1.24) or a float scalar (Optimum ≥ 1.24);
/// <c>encoder_hidden_states</c> [B, 77·k, D] (k chunks of a long prompt where the sequence axis is dynamic,
/// <see cref="CheckPromptLength"/>); and the extra inputs of SDXL (<c>text_embeds</c>, <c>time_ids</c>) and of latent
/// consistency models (<c>timestep_cond</c>), recognised by <see cref="UNetExtraInputs"/>. Output <c>out_sample</c> [B, 4, h, w].
/// </summary>
internal sealed class UNet : OnnxModelComponent
{
    private readonly int _deviceId;
    private readonly Dictionary<(int, int, int, int, int), FixedBufferSet> _fixedSets = [];
    private readonly List<UNetBinding> _idleBindings = [];
    private bool _closed;
    private long _calls;
    private long _runTicks;
    private OrtMemoryInfo? _deviceMemory;
    private OrtAllocator? _deviceAllocator;

    /// <summary>Loads the UNet and checks its contract.</summary>
    /// <exception cref="InvalidDataException">An input or output is missing or has another type or rank; the message names it.</exception>
    /// <param name="modelPath">unet/model.onnx.</param>
    /// <param name="sessions">Creates the session.</param>
    /// <param name="guidanceEmbeddingWidth">unet/config.json's <c>time_cond_proj_dim</c>, when given.</param>
    /// <param name="componentName">The component's folder: <c>unet</c>, or <c>transformer</c> for SD3 and FLUX.1.</param>
    /// <param name="latentChannels">The VAE's latent channels (vae config <c>latent_channels</c>), when given: a packed
    /// transformer's token width is 4 × this.</param>
    public UNet(string modelPath, OnnxSessionFactory sessions, int? guidanceEmbeddingWidth = null, string componentName = "unet", int? latentChannels = null)
        : base(componentName, modelPath, sessions, sessions?.Options.EnableCudaGraph ?? false)
    {
        try
        {
            // A diffusion transformer (SD3, FLUX.1) names its latents hidden_states: [B, 16, h, w], or FLUX's 2×2-packed
            // tokens [B, (h/2)(w/2), 64].
            IsTransformer = componentName == "transformer" || !Inputs.ContainsKey("sample") && Inputs.ContainsKey(UNetExtraInputs.TransformerSampleName);
            string sampleName = IsTransformer ? UNetExtraInputs.TransformerSampleName : "sample";
            SampleSpec = Require(true, sampleName, [TensorElementType.Float, TensorElementType.Float16], IsTransformer ? [3, 4] : [4]);
            IsPacked = SampleSpec.Rank == 3;
            TimestepSpec = Require(true, "timestep", [TensorElementType.Float, TensorElementType.Float16, TensorElementType.Int64, TensorElementType.Int32], 0, 1);
            HiddenStatesSpec = Require(true, "encoder_hidden_states", [TensorElementType.Float, TensorElementType.Float16], 3);
            string outputName = IsTransformer ? "out_hidden_states" : "out_sample";
            var output = FirstOutput(outputName) ?? (Outputs.Count == 1 ? Outputs.Keys.First() : null)
                ?? throw new InvalidDataException($"The {componentName} model '{modelPath}' has no '{outputName}' output (it declares {string.Join(", ", Outputs.Values)}).");
            OutputSpec = Require(false, output, [TensorElementType.Float, TensorElementType.Float16], SampleSpec.Rank);
            Extras = UNetExtraInputs.Identify(Inputs, modelPath, guidanceEmbeddingWidth, componentName);
            Residuals = IsTransformer ? []
                : ControlResiduals.Identify([.. Inputs.Values.Where(s => s.Rank == 4 && !UNetExtraInputs.CoreInputs.Contains(s.Name))], "unet", modelPath, "input");
            foreach (var r in Residuals) ControlResiduals.Channels(r, null, modelPath);
            if (IsPacked)
            {
                int tokenWidth = SampleSpec.Dimensions[2] > 0 ? SampleSpec.Dimensions[2] : 4 * (latentChannels ?? FluxLatentChannels);
                if (tokenWidth % (LatentPacking.Patch * LatentPacking.Patch) != 0 || latentChannels is { } c && tokenWidth != 4 * c)
                    throw new InvalidDataException($"The {componentName} model '{modelPath}': {SampleSpec} holds tokens of {tokenWidth} values, which are not 2×2 patches of " +
                        $"{latentChannels?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "the latents'"} channels (FLUX.1: 64 = 4 × 16).");
                InChannels = tokenWidth / (LatentPacking.Patch * LatentPacking.Patch);
            }
            else
            {
                InChannels = SampleSpec.Dimensions[1] > 0 ? SampleSpec.Dimensions[1] : latentChannels ?? (IsTransformer ? Sd3LatentChannels : 4);
                if (!IsTransformer && InChannels is not (4 or 9))
                    throw new InvalidDataException($"The unet model '{modelPath}': sample has {InChannels} channels, expected 4 (text-to-image) or 9 (inpainting).");
                if (IsTransformer && latentChannels is { } c && InChannels != c)
                    throw new InvalidDataException($"The {componentName} model '{modelPath}': hidden_states has {InChannels} channels, but the VAE's latents have {c}.");
            }
            EmbeddingWidth = HiddenStatesSpec.Dimensions[2] > 0 ? HiddenStatesSpec.Dimensions[2] : 0;
            var options = sessions!.Options;
            _deviceId = options.DeviceId;
            _runPath = !options.UseIoBinding ? UNetRunPath.SessionRun
                : CudaGraph || options.ForceFixedBuffers ? UNetRunPath.FixedBuffers
                : UNetRunPath.IoBinding;
        }
        catch
        {
            Dispose(); // release the session now rather than at finalization
            throw;
        }
    }

    /// <summary>The <c>sample</c> input (a transformer's <c>hidden_states</c>).</summary>
    public TensorSpec SampleSpec { get; }

    /// <summary>Whether the denoiser is a diffusion transformer (SD3, FLUX.1: <c>hidden_states</c> → <c>out_hidden_states</c>).</summary>
    public bool IsTransformer { get; }

    /// <summary>Whether the latents reach the model as FLUX.1's 2×2-packed tokens [B, (h/2)(w/2), 4C] (<see cref="LatentPacking"/>).</summary>
    public bool IsPacked { get; }

    /// <summary>SD3's latent channels (its VAE's), when neither the model nor the VAE's config says.</summary>
    public const int Sd3LatentChannels = 16;

    /// <summary>FLUX.1's latent channels (its VAE's), when neither the model nor the VAE's config says.</summary>
    public const int FluxLatentChannels = 16;

    /// <summary>
    /// What the <c>timestep</c> input receives per unit of the scheduler's timestep: 1 (UNets and SD3 take 1000·σ), or
    /// 1/1000 for FLUX.1 (recognised by its position ids), whose pipeline passes σ itself (diffusers' <c>FluxPipeline</c>:
    /// <c>timestep=timestep / 1000</c>; the model multiplies by 1000 inside).
    /// </summary>
    public float TimestepScale => Extra(UNetExtraKind.ImageIds) is null ? 1f : 1f / 1000f;

    /// <summary>The sample buffer's shape for a batch: [B, C, h, w], or [B, (h/2)(w/2), 4C] packed.</summary>
    public long[] SampleShape(int batch, int latentHeight, int latentWidth) => IsPacked
        ? [batch, latentHeight / LatentPacking.Patch * (latentWidth / LatentPacking.Patch), InChannels * LatentPacking.Patch * LatentPacking.Patch]
        : [batch, InChannels, latentHeight, latentWidth];

    /// <summary>The output buffer's shape for a batch: [B, C, h, w], or [B, (h/2)(w/2), 4C] packed.</summary>
    public long[] OutputShape(int batch, int latentHeight, int latentWidth) => IsPacked
        ? SampleShape(batch, latentHeight, latentWidth)
        : [batch, OutChannels, latentHeight, latentWidth];

    /// <summary>The <c>timestep</c> input (float/int64; rank 0 or [batch]).</summary>
    public TensorSpec TimestepSpec { get; }

    /// <summary>The <c>encoder_hidden_states</c> input.</summary>
    public TensorSpec HiddenStatesSpec { get; }

    /// <summary>The extra inputs, identified (none for SD 1.x and 2.x).</summary>
    public IReadOnlyList<UNetExtraInput> Extras { get; }

    /// <summary>
    /// The ControlNet residual inputs (a ControlNet-ready UNet: 12 down-block residuals and the mid-block one for SD 1.x/2.x,
    /// 9 and the mid one for SDXL), down residuals first; empty for a plain UNet. Every binding of such a UNet holds one
    /// buffer per residual, zero unless a ControlNet writes into it.
    /// </summary>
    public IReadOnlyList<ControlResidual> Residuals { get; }

    /// <summary>Whether the UNet takes ControlNet residuals.</summary>
    public bool TakesControl => Residuals.Count > 0;

    /// <summary>The shape of each residual buffer for a batch of <paramref name="batch"/> rows of latents
    /// <paramref name="latentHeight"/>×<paramref name="latentWidth"/> (<see cref="ControlResiduals.Factor"/>).</summary>
    public long[][] ResidualShapes(int batch, int latentHeight, int latentWidth)
    {
        var shapes = new long[Residuals.Count][];
        int downs = Residuals.Count - 1;
        for (int i = 0; i < shapes.Length; i++)
        {
            var r = Residuals[i];
            int factor = ControlResiduals.Factor(r, downs);
            shapes[i] = [batch, r.Channels, ControlResiduals.Side(latentHeight, factor), ControlResiduals.Side(latentWidth, factor)];
        }
        return shapes;
    }

    /// <summary>The pooled text embedding input (SDXL), or null.</summary>
    public UNetExtraInput? TextEmbeds => Extra(UNetExtraKind.TextEmbeds);

    /// <summary>The time ids input (SDXL), or null.</summary>
    public UNetExtraInput? TimeIds => Extra(UNetExtraKind.TimeIds);

    /// <summary>The guidance embedding input (latent consistency models), or null.</summary>
    public UNetExtraInput? TimestepCond => Extra(UNetExtraKind.TimestepCond);

    private UNetExtraInput? Extra(UNetExtraKind kind)
    {
        foreach (var e in Extras) if (e.Kind == kind) return e;
        return null;
    }

    /// <summary>The predicted-noise output.</summary>
    public TensorSpec OutputSpec { get; }

    /// <summary>Input channels: 4, or 9 for an inpainting UNet (latents, mask, masked-image latents).</summary>
    public int InChannels { get; }

    /// <summary>The conditioning width D when the model fixes it, else 0.</summary>
    public int EmbeddingWidth { get; }

    /// <summary>Latent channels of the output (4; 16 for SD3 and FLUX.1).</summary>
    public int OutChannels => IsPacked || IsTransformer && OutputSpec.Dimensions[1] <= 0 ? InChannels : OutputSpec.Dimensions[1] > 0 ? OutputSpec.Dimensions[1] : 4;

    /// <summary>The latent channels the denoising works on: the output's (4, or 16 for SD3 and FLUX.1; an inpainting UNet takes 9 in, gives 4).</summary>
    public int LatentChannels => OutChannels;

    /// <summary>The guidance-scale input (FLUX.1-dev's <c>guidance</c>), or null.</summary>
    public UNetExtraInput? Guidance => Extra(UNetExtraKind.Guidance);

    /// <summary>
    /// Whether the model runs once per image whatever the guidance scale (no classifier-free guidance): a latent consistency
    /// model (the scale reaches it as <c>timestep_cond</c>) and FLUX.1 (dev takes the scale as <c>guidance</c>; schnell none).
    /// </summary>
    public bool TakesGuidanceWithoutCfg => TimestepCond is not null || Guidance is not null || Extra(UNetExtraKind.ImageIds) is not null;

    /// <summary>
    /// How new bindings pass their buffers to ONNX Runtime (from <see cref="DiffusionRuntimeOptions.UseIoBinding"/> and
    /// <see cref="DiffusionRuntimeOptions.EnableCudaGraph"/>). It can be switched between <see cref="UNetRunPath.IoBinding"/>
    /// and <see cref="UNetRunPath.SessionRun"/> after loading, so that the two paths can be compared on one session (the
    /// benchmarks do; two loads would also differ in their sessions' memory and threads); a binding keeps the path it was
    /// made with and is reused only for its own.
    /// </summary>
    /// <exception cref="ArgumentException">A switch to or from <see cref="UNetRunPath.FixedBuffers"/>, which needs the session's CUDA graph settings.</exception>
    public UNetRunPath RunPath
    {
        get => _runPath;
        internal set
        {
            if (value != _runPath && (value == UNetRunPath.FixedBuffers || _runPath == UNetRunPath.FixedBuffers))
                throw new ArgumentException($"The unet model '{ModelPath}' runs with {_runPath}; only IoBinding and SessionRun can be switched after loading.", nameof(value));
            _runPath = value;
        }
    }

    private UNetRunPath _runPath;

    /// <summary>
    /// Pixels per latent along each axis: the VAE's downsampling, 2^(number of VAE blocks − 1) = 8 for SD 1.x and 2.x
    /// (diffusers' <c>vae_scale_factor</c>).
    /// </summary>
    public const int PixelsPerLatent = 8;

    /// <summary>
    /// Checks that this UNet can make images of <paramref name="width"/>×<paramref name="height"/> pixels: an export
    /// may fix the <c>sample</c> input's height or width (the demo model fixes 16×16 latents, so it makes 128×128 images).
    /// </summary>
    /// <exception cref="ArgumentException">The UNet fixes another size; the message gives the sizes it makes and the size
    /// asked for, in pixels.</exception>
    public void CheckImageSize(int width, int height)
    {
        if (IsPacked)
        {
            if (width % (PixelsPerLatent * LatentPacking.Patch) != 0 || height % (PixelsPerLatent * LatentPacking.Patch) != 0)
                throw new ArgumentException($"The {ComponentName} model '{ModelPath}' takes 2×2 patches of latents (FLUX.1), so the image width and height must be multiples of " +
                    $"{PixelsPerLatent * LatentPacking.Patch} pixels; {width}×{height} was asked for. Ask for {width / 16 * 16}×{height / 16 * 16} or another multiple of 16.");
            int fixedTokens = SampleSpec.Dimensions[1];
            int tokens = height / (PixelsPerLatent * LatentPacking.Patch) * (width / (PixelsPerLatent * LatentPacking.Patch));
            if (fixedTokens > 0 && fixedTokens != tokens)
                throw new ArgumentException($"The {ComponentName} model '{ModelPath}' fixes its image tokens to {fixedTokens} ({SampleSpec}), but {width}×{height} pixels make {tokens} " +
                    "(one per 16×16 pixels). Ask for a size of that many tokens, or use a transformer exported with a dynamic token axis.");
            return;
        }
        int fixedHeight = SampleSpec.Dimensions[2] > 0 ? SampleSpec.Dimensions[2] * PixelsPerLatent : 0;
        int fixedWidth = SampleSpec.Dimensions[3] > 0 ? SampleSpec.Dimensions[3] * PixelsPerLatent : 0;
        if ((fixedHeight == 0 || fixedHeight == height) && (fixedWidth == 0 || fixedWidth == width)) return;
        string makes = (fixedWidth, fixedHeight) switch
        {
            ( > 0, > 0) => $"{fixedWidth}×{fixedHeight} pixels",
            (0, _) => $"{fixedHeight} pixels high (any width)",
            _ => $"{fixedWidth} pixels wide (any height)",
        };
        string instead = $"{(fixedWidth > 0 ? fixedWidth : width)}×{(fixedHeight > 0 ? fixedHeight : height)}";
        throw new ArgumentException(
            $"The unet model '{ModelPath}' makes images of {makes} only (its sample input is fixed to {SampleSpec}, one latent per " +
            $"{PixelsPerLatent}×{PixelsPerLatent} pixels), but {width}×{height} pixels were asked for. Ask for {instead} " +
            "(GenerationOptions.Width and Height, DiffusionOptions.Width and Height, or the CLI's --size), " +
            "or use a UNet exported with a dynamic height and width.");
    }

    /// <summary>
    /// The token positions an export fixes <c>encoder_hidden_states</c>' sequence axis (dimension 1) to, or 0 when the axis is
    /// dynamic (symbolic or −1 in the model's metadata). A dynamic axis takes prompts of any number of chunks of 77
    /// positions (long prompts); a fixed one takes exactly that many positions.
    /// </summary>
    public int FixedSequenceLength => HiddenStatesSpec.Dimensions[1] > 0 ? HiddenStatesSpec.Dimensions[1] : 0;

    /// <summary>
    /// The one rule for long prompts: a prompt of <paramref name="chunks"/> chunks of <paramref name="chunkLength"/>
    /// positions conditions this UNet when its sequence axis is dynamic, or fixed to exactly that many positions.
    /// </summary>
    /// <param name="owner">Whose prompt, to begin the message ("The prompt of image 2").</param>
    /// <param name="tokens">The prompt's content tokens.</param>
    /// <param name="chunks">Its chunks.</param>
    /// <param name="chunkLength">Positions per chunk (77: start token, 75 tokens, end token).</param>
    /// <exception cref="ArgumentException">The export fixes the axis to another length; the message names the model file, the
    /// axis, the prompt's token count and what to do.</exception>
    public void CheckPromptLength(string owner, int tokens, int chunks, int chunkLength)
    {
        int fixedLength = FixedSequenceLength, positions = chunks * chunkLength;
        if (fixedLength == 0 || fixedLength == positions) return;
        string takes = fixedLength % chunkLength == 0 && fixedLength / chunkLength > 1
            ? $"{fixedLength / chunkLength} chunks ({fixedLength} positions) exactly"
            : $"one chunk: at most {chunkLength - 2} tokens";
        throw new ArgumentException(
            $"{owner} has {tokens} tokens in {chunks} chunks of at most {chunkLength - 2} ({positions} positions; BREAK also starts a chunk), " +
            $"but the unet model '{ModelPath}' fixes encoder_hidden_states' sequence axis (dimension 1) to {fixedLength}, so it takes {takes}. " +
            $"Shorten the prompt to {chunkLength - 2} tokens without BREAK, or use a UNet exported with a dynamic sequence axis " +
            "(for torch.onnx.export, dynamic_axes {\"encoder_hidden_states\": {0: \"batch\", 1: \"sequence\"}}).");
    }

    /// <summary>
    /// Allocates the reusable input and output buffers for one generation's shape, so that each step only
    /// writes into them and runs.
    /// </summary>
    /// <param name="batch">UNet batch (images × 2 with classifier-free guidance).</param>
    /// <param name="latentHeight">h.</param>
    /// <param name="latentWidth">w.</param>
    /// <param name="sequenceLength">Token positions (77·k).</param>
    /// <param name="embeddingWidth">D.</param>
    /// <param name="extraWidths">The width of each extra input, in <see cref="Extras"/> order (null when there are none).</param>
    public UNetBinding Bind(int batch, int latentHeight, int latentWidth, int sequenceLength, int embeddingWidth, int[]? extraWidths = null)
    {
        ThrowIfDisposed();
        CheckDimension(SampleSpec, 0, batch, "batch");
        CheckImageSize(latentWidth * PixelsPerLatent, latentHeight * PixelsPerLatent);
        CheckDimension(HiddenStatesSpec, 1, sequenceLength, "sequence length");
        if (EmbeddingWidth > 0 && EmbeddingWidth != embeddingWidth)
            throw new ArgumentException($"The unet model '{ModelPath}' takes encoder_hidden_states of width {EmbeddingWidth}, but the text encoder gives {embeddingWidth}. The two come from different models.");
        extraWidths ??= [];
        if (extraWidths.Length != Extras.Count)
            throw new ArgumentException($"{extraWidths.Length} extra-input widths for the {Extras.Count} extra inputs of the unet model '{ModelPath}'.", nameof(extraWidths));
        for (int i = 0; i < extraWidths.Length; i++)
            if (extraWidths[i] < 1 || Extras[i].Width > 0 && Extras[i].Width != extraWidths[i])
                throw new ArgumentException($"The unet model '{ModelPath}' takes {Extras[i].Spec}, but {extraWidths[i]} values per row were given for it.", nameof(extraWidths));
        var key = new BindingShape(batch, latentHeight, latentWidth, sequenceLength, embeddingWidth, extraWidths);
        UNetBinding? reused = null;
        lock (_idleBindings)
        {
            ThrowIfDisposed();
            for (int i = _idleBindings.Count - 1; i >= 0; i--)
                if (_idleBindings[i].Shape.Equals(key) && _idleBindings[i].RunPath == _runPath)
                {
                    reused = _idleBindings[i];
                    _idleBindings.RemoveAt(i);
                    break;
                }
        }
        if (reused is null) return new UNetBinding(this, key);
        reused.Reopen();
        return reused;
    }

    /// <summary>
    /// The most bindings a UNet keeps for reuse after their generations end (the most recently returned ones; an older one
    /// is released when a newer one comes back). A guided generation with a guidance window holds two (the guided batch and
    /// the conditional half alone), so 4 cover two such shapes or two concurrent generations of one shape.
    /// </summary>
    public const int MaxIdleBindings = 4;

    /// <summary>Bindings kept for reuse (returned by their generations, not yet taken again).</summary>
    public int IdleBindingCount
    {
        get { lock (_idleBindings) return _idleBindings.Count; }
    }

    /// <summary>Releases the bindings kept for reuse (their pinned buffers and native values) now.</summary>
    public void ReleaseIdleBindings()
    {
        UNetBinding[] idle;
        lock (_idleBindings)
        {
            idle = [.. _idleBindings];
            _idleBindings.Clear();
        }
        foreach (var binding in idle) binding.Release();
    }

    /// <summary>
    /// Takes back a binding whose generation has ended, for the next <see cref="Bind"/> of its shape: false when the UNet is
    /// disposed (the caller releases it). Keeps at most <see cref="MaxIdleBindings"/>, releasing the oldest beyond that.
    /// </summary>
    internal bool TryKeepForReuse(UNetBinding binding)
    {
        UNetBinding? evicted = null;
        lock (_idleBindings)
        {
            if (_closed) return false;
            if (_idleBindings.Count == MaxIdleBindings)
            {
                evicted = _idleBindings[0];
                _idleBindings.RemoveAt(0);
            }
            _idleBindings.Add(binding);
        }
        evicted?.Release();
        return true;
    }

    /// <summary>How many times the UNet has run since it was loaded (each run is one batch; diagnostics and tests).</summary>
    public long RunCount => Interlocked.Read(ref _calls);

    /// <summary>
    /// The wall-clock time spent inside ONNX Runtime's run call, summed over all runs since the UNet was loaded
    /// (from all threads). The time a generation spends outside it (scheduler, guidance, copies and conversions)
    /// is its overhead.
    /// </summary>
    public TimeSpan RunTime => TimeSpan.FromSeconds((double)Interlocked.Read(ref _runTicks) / Stopwatch.Frequency);

    /// <summary>Batch rows the UNet has computed since it was loaded, over all runs: with classifier-free guidance two per
    /// image and call, without one (diagnostics, tests and the benchmarks' rows-per-image figure).</summary>
    public long RowCount => Interlocked.Read(ref _rows);

    private long _rows;
    private long _hostToDevice, _deviceToHost, _hostToDeviceBytes, _deviceToHostBytes;

    /// <summary>
    /// Host → device copies the bindings have caused since the UNet was loaded, on a device only (none on the CPU): a host
    /// buffer bound to the session's inputs (ONNX Runtime copies it when it is bound) or written into a fixed device buffer
    /// (<c>cudaMemcpy</c>). Copies ONNX Runtime inserts inside the graph (Memcpy nodes, for nodes placed on the CPU) are not
    /// counted here: ONNX Runtime logs a warning when it adds them.
    /// </summary>
    public long HostToDeviceCopies => Interlocked.Read(ref _hostToDevice);

    /// <summary>Device → host copies the bindings have caused (the prediction read back), on a device only; see <see cref="HostToDeviceCopies"/>.</summary>
    public long DeviceToHostCopies => Interlocked.Read(ref _deviceToHost);

    /// <summary>Bytes of <see cref="HostToDeviceCopies"/>.</summary>
    public long HostToDeviceBytes => Interlocked.Read(ref _hostToDeviceBytes);

    /// <summary>Bytes of <see cref="DeviceToHostCopies"/>.</summary>
    public long DeviceToHostBytes => Interlocked.Read(ref _deviceToHostBytes);

    /// <summary>Counts one copy of <paramref name="bytes"/> bytes between host and device memory (diagnostics).</summary>
    internal void CountCopy(bool toDevice, long bytes)
    {
        if (toDevice)
        {
            Interlocked.Increment(ref _hostToDevice);
            Interlocked.Add(ref _hostToDeviceBytes, bytes);
        }
        else
        {
            Interlocked.Increment(ref _deviceToHost);
            Interlocked.Add(ref _deviceToHostBytes, bytes);
        }
    }

    internal void RunBound(RunOptions options, string[] inputNames, OrtValue[] inputs, string[] outputNames, OrtValue[] outputs, int rows)
    {
        long start = Stopwatch.GetTimestamp();
        Run(options, inputNames, inputs, outputNames, outputs);
        Account(start, rows);
    }

    internal void RunBound(RunOptions options, OrtIoBinding binding, int rows)
    {
        long start = Stopwatch.GetTimestamp();
        Run(options, binding);
        Account(start, rows);
    }

    private void Account(long start, int rows)
    {
        Interlocked.Add(ref _runTicks, Stopwatch.GetTimestamp() - start);
        Interlocked.Increment(ref _calls);
        Interlocked.Add(ref _rows, rows);
    }

    /// <summary>A new IO binding on the session.</summary>
    internal OrtIoBinding CreateIoBinding()
    {
        ThrowIfDisposed();
        return Session.CreateIoBinding();
    }

    /// <summary>
    /// The fixed device buffers for one shape, created on first use and kept until the UNet is disposed (a
    /// captured CUDA graph refers to their addresses), and entered exclusively: a second generation of the same
    /// shape waits until the first disposes its binding.
    /// </summary>
    internal FixedBufferSet EnterFixedBuffers(int batch, int h, int w, int sequenceLength, int width, int[] extraWidths, long[][] residualShapes)
    {
        FixedBufferSet set;
        lock (_fixedSets)
        {
            ThrowIfDisposed();
            var key = (batch, h, w, sequenceLength, width);
            if (!_fixedSets.TryGetValue(key, out set!))
            {
                set = new FixedBufferSet(this, _fixedSets.Count, batch, h, w, sequenceLength, width, extraWidths, residualShapes);
                _fixedSets.Add(key, set);
            }
        }
        set.Gate.Wait();
        return set;
    }

    /// <summary>Allocates a zeroed tensor in the session's device memory (host memory on the CPU).</summary>
    internal OrtValue AllocateDeviceTensor(TensorElementType type, long[] shape)
    {
        if (Device == ExecutionDevice.Cpu)
        {
            var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, shape);
            value.GetTensorMutableRawData().Clear();
            return value;
        }
        // The values free their memory through this allocator, so it lives until the UNet is disposed.
        if (_deviceAllocator is null)
        {
            _deviceMemory = new OrtMemoryInfo(OrtMemoryInfo.allocatorCUDA, OrtAllocatorType.DeviceAllocator, _deviceId, OrtMemType.Default);
            _deviceAllocator = new OrtAllocator(Session, _deviceMemory);
        }
        return OrtValue.CreateAllocatedTensorValue(_deviceAllocator, type, shape);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        lock (_idleBindings) _closed = true;
        ReleaseIdleBindings();
        lock (_fixedSets)
        {
            foreach (var set in _fixedSets.Values) set.Dispose();
            _fixedSets.Clear();
            _deviceAllocator?.Dispose();
            _deviceMemory?.Dispose();
        }
    }
}

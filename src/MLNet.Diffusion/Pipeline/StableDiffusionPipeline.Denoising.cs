using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using MLNet.Diffusion.Control;
using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion;

// The denoising: for each UNet batch of a call, the timesteps, the starting latents and the loop.
public sealed partial class StableDiffusionPipeline
{
    /// <summary>Prepare the timesteps, the latents and run the denoising loop for every UNet batch of the plan: each request's final latents [4·h·w], in request order.</summary>
    private float[][] DenoiseCore(GenerationPlan plan, PromptEmbedding[] embeddings, IProgress<DiffusionProgress>? progress, CancellationToken cancellationToken)
    {
        // Long prompts: the rows of one UNet call share a sequence length, so each batch is split by chunk count.
        var groups = plan.SplitByChunks(i => ConditioningChunks(embeddings[i], plan.Resolved[i].Batch.Guided));
        // Every batch's scheduler first, so that progress counts the calls and encodings of the whole call.
        var schedulers = new DiffusionScheduler[groups.Length];
        int totalCalls = 0, totalEncodes = 0;
        for (int g = 0; g < schedulers.Length; g++)
        {
            var key = groups[g].Key;
            schedulers[g] = CreateScheduler(plan.Options, key.Steps, key.Width, key.Height);
            var (begin, end) = CallRange(schedulers[g], key, plan.Options);
            totalCalls += end - begin;
            totalEncodes += groups[g].Members.Count(i => NeedsEncoding(plan.Requests[i], key.StartStep));
        }
        var counter = new ProgressCounter(progress, totalCalls, totalEncodes);

        var result = new float[plan.Count][];
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        try
        {
            for (int g = 0; g < schedulers.Length; g++)
            {
                DenoiseBatch(plan, groups[g], embeddings, schedulers[g], counter, runOptions, result, cancellationToken);
            }
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("Generation was cancelled during a model call.", cancellationToken);
        }
        finally
        {
            // The low-memory mode keeps nothing between calls: not the bindings the UNet would keep for the next one either.
            if (_model.Model.LowMemory) DenoisingUNet(plan).ReleaseIdleBindings();
        }
        return result;
    }

    /// <summary>
    /// One UNet batch, in the order of diffusers' <c>StableDiffusionPipeline.__call__</c> after the prompts are encoded:
    /// prepare the timesteps, prepare the latents (noise, or init images noised to the first kept call), run the denoising
    /// loop. Writes each image's final latents [4·h·w] into <paramref name="result"/> at its request index.
    /// </summary>
    /// <remarks>
    /// The working arrays (initial noise, latents, model input, predictions) are the bindings' <see cref="UNetBinding.Scratch"/>
    /// arrays, and the bindings go back to the UNet for the next generation of their shape when the batch ends: a generation
    /// of a shape seen before allocates no latent-sized buffer but its results.
    /// </remarks>
    private void DenoiseBatch(GenerationPlan plan, RequestGroup group, PromptEmbedding[] embeddings, DiffusionScheduler scheduler,
        ProgressCounter counter, RunOptions runOptions, float[][] result, CancellationToken cancellationToken)
    {
        var rows = group.Members;
        var unetModel = DenoisingUNet(plan);
        var requests = Array.ConvertAll(rows, i => plan.Requests[i]);
        var guidance = Array.ConvertAll(rows, i => plan.Resolved[i].GuidanceScale);
        var shape = new BatchShape(rows.Length, UNet.LatentChannels, group.Key.Height / BatchShape.VaeScale, group.Key.Width / BatchShape.VaeScale,
            ConditioningLength * group.Chunks, ConditioningWidth, group.Key.Guided);

        // Prepare the timesteps: an init image starts at the first call of its start step (diffusers' get_timesteps), a
        // refiner at its denoising_start, and a base that hands over stops at its denoising_end.
        int startStep = group.Key.StartStep;
        var (begin, calls) = CallRange(scheduler, group.Key, plan.Options);

        // The bindings: a guided batch runs its unconditional and conditional halves together; calls outside the guidance
        // window (GuidanceWindow) run the conditional half alone through a second binding of half the batch.
        var window = shape.Guided ? GuidanceWindow.For(scheduler, plan.Options) : null;
        var plain = shape with { Guided = false };
        bool anyGuided = shape.Guided && (window is null || Array.IndexOf(window, true, begin, calls - begin) >= 0);
        bool anyPlain = !shape.Guided || window is not null && Array.IndexOf(window, false, begin, calls - begin) >= 0;
        using var guidedUnet = anyGuided ? BindConditioned(unetModel, shape, rows, embeddings, guidance, group.Key, plan.Options) : null;
        using var plainUnet = anyPlain ? BindConditioned(unetModel, plain, rows, embeddings, guidance, group.Key, plan.Options) : null;
        var buffers = guidedUnet ?? plainUnet!;
        var scheduled = ScheduledConditioning.For(rows, embeddings, shape, PooledExtraIndex()); // prompt editing, alternation

        // The ControlNets, per binding: they read the binding's buffers and write its residuals.
        var guidedControl = guidedUnet is null ? null : BindControl(plan, group, requests, guidedUnet, shape, begin, calls);
        var plainControl = plainUnet is null ? null : BindControl(plan, group, requests, plainUnet, plain, begin, calls);

        // Prepare the latents: each image's own generator draws its initial noise first, as in text-to-image.
        var generators = Array.ConvertAll(requests, r => NoiseFactory.Create(plan.Options.Noise, r.Seed));
        var noise = new BatchNoise(generators);
        var initialNoise = buffers.Scratch(0, shape.LatentLength);
        noise.Fill(initialNoise);
        var images = PrepareImages(rows, requests, startStep, shape, generators, counter, plan.Options.VaeTiling, cancellationToken);
        // FLUX.1 denoises 2×2-packed latents: the noise (drawn unpacked, as diffusers draws it) and init latents are packed
        // once here, and the loop runs on the packed layout (the scheduler's step is element-wise).
        if (unetModel.IsPacked) PackLatents(shape, buffers.Scratch(5, shape.LatentLength), initialNoise, images);
        if (InpaintingUNet)
        {
            if (guidedUnet is not null) WriteInpaintingChannels(guidedUnet, shape, images);
            if (plainUnet is not null) WriteInpaintingChannels(plainUnet, plain, images);
        }
        var latents = buffers.Scratch(1, shape.LatentLength);
        if (plan.Options.DenoisingStart is null) PrepareLatents(shape, scheduler, startStep, begin, initialNoise, images, latents);
        else HandedOverLatents(shape, requests, latents);
        if (begin > 0) scheduler.SetBeginIndex(begin);

        // The denoising loop.
        var modelInput = buffers.Scratch(2, shape.LatentLength);
        var guidedPrediction = guidedUnet?.Scratch(3, shape.LatentLength);
        var known = images.Blend ? buffers.Scratch(4, shape.LatentLength) : null;
        while (scheduler.StepIndex < calls)
        {
            cancellationToken.ThrowIfCancellationRequested();
            float t = scheduler.Timesteps[scheduler.StepIndex];
            int call = scheduler.StepIndex + 1;
            bool guide = shape.Guided && (window is null || window[scheduler.StepIndex]);
            var (unet, unetShape) = guide ? (guidedUnet!, shape) : (plainUnet!, plain);
            scheduled?.Apply(scheduler.StepIndex, unet, guide);                  // a scheduled row's conditioning, where it changes
            var input = ScaleModelInput(scheduler, latents, unet, unetShape, modelInput);  // latent_model_input
            (guide ? guidedControl : plainControl)?.Step(scheduler.StepIndex - begin, t, runOptions); // down/mid residuals = Σ controlnet(…)
            var unetOutput = unet.Run(t, runOptions);                            // noise_pred = unet(latent_model_input, t, …)
            var noisePrediction = unetOutput[..shape.LatentLength];
            if (guide)                                                           // noise_pred = uncond + g·(text − uncond)
            {
                ClassifierFreeGuidance.Apply(unetOutput, guidedPrediction, shape.Images, shape.ImageLength, guidance, plan.Options.GuidanceRescale);
                noisePrediction = guidedPrediction;
            }
            // One vectorised pass each over the model output and the new latents: a NaN or ±Infinity (fp16 overflow)
            // is reported at the call where it appears rather than decoded into a black image.
            NonFiniteLatentsException.ThrowIfNonFinite(noisePrediction, DiffusionStage.Denoising, "UNet output", call, calls, t, shape.ImageLength, rows,
                source: new NonFiniteSource(unetModel, input, modelOutput: unetOutput, derivedBy: guide ? "classifier-free guidance" : null, scheduler: scheduler));
            scheduler.Step(noisePrediction, latents, noise);                     // latents = scheduler.step(noise_pred, t, latents)
            if (known is not null) KeepInitImageOutsideMasks(scheduler, calls, images, initialNoise, known, latents, shape);
            NonFiniteLatentsException.ThrowIfNonFinite(latents, DiffusionStage.Denoising, "latents after the scheduler step", call, calls, t, shape.ImageLength, rows,
                source: new NonFiniteSource(unetModel, modelOutput: noisePrediction, derivedBy: "the scheduler step", scheduler: scheduler));
            counter.Step();
        }
        // The results leave the scratch arrays before the bindings go back to the UNet (FLUX.1's unpacked to [16, h, w]).
        for (int j = 0; j < rows.Length; j++)
        {
            var final = latents.AsSpan(j * shape.ImageLength, shape.ImageLength);
            result[rows[j]] = GC.AllocateUninitializedArray<float>(shape.ImageLength); // every value is written next
            if (unetModel.IsPacked) LatentPacking.Unpack(final, result[rows[j]], 1, shape.Channels, shape.LatentHeight, shape.LatentWidth);
            else final.CopyTo(result[rows[j]]);
        }
    }

    /// <summary>
    /// FLUX.1's latent layout for a batch: the initial noise and the init images' latents, drawn and encoded as [N, 16, h, w],
    /// become [N, (h/2)(w/2), 64] tokens (diffusers' <c>_pack_latents</c> in <c>prepare_latents</c>), in place through
    /// <paramref name="scratch"/>.
    /// </summary>
    private static void PackLatents(BatchShape shape, float[] scratch, float[] initialNoise, ImageConditioning images)
    {
        initialNoise.CopyTo(scratch, 0);
        LatentPacking.Pack(scratch, initialNoise, shape.Images, shape.Channels, shape.LatentHeight, shape.LatentWidth);
        if (images.Latents is { } init)
        {
            init.CopyTo(scratch, 0);
            LatentPacking.Pack(scratch, init, shape.Images, shape.Channels, shape.LatentHeight, shape.LatentWidth);
        }
    }

    /// <summary>
    /// A UNet binding for <paramref name="shape"/> (guided: both halves; not: the conditional half alone) with the batch's
    /// conditioning written once: the text embeddings and the extra inputs (an inpainting UNet's mask channels follow once
    /// the init images are encoded).
    /// </summary>
    private UNetBinding BindConditioned(UNet model, BatchShape shape, int[] rows, PromptEmbedding[] embeddings, float[] guidance, BatchKey key, GenerationOptions options)
    {
        var unet = model.Bind(shape.ModelBatch, shape.LatentHeight, shape.LatentWidth, shape.SequenceLength, shape.EmbeddingWidth, ExtraWidths(model, shape, rows, embeddings));
        try
        {
            WriteHiddenStates(unet, shape, rows, embeddings);
            WriteExtras(unet, shape, rows, embeddings, guidance, key, options);
            return unet;
        }
        catch
        {
            unet.Dispose();
            throw;
        }
    }

    /// <summary>The UNet a plan denoises with: the ControlNet-ready one when the call has ControlNets, else the folder's UNet.</summary>
    private UNet DenoisingUNet(GenerationPlan plan) => plan.ControlNets.Length > 0 ? _model.Model.ControlUNet : UNet;

    /// <summary>
    /// The ControlNets of a batch for one UNet binding, with their control images written once (each row's image, resized
    /// to the batch's size; with guidance both halves get it, diffusers' <c>torch.cat([image] * 2)</c>, except in guess
    /// mode, where the ControlNets see the conditional half only), their windows and their scales. Null without ControlNets.
    /// </summary>
    private static ControlSet? BindControl(GenerationPlan plan, RequestGroup group, ImagePrompt[] requests, UNetBinding unet, BatchShape shape, int begin, int calls)
    {
        var nets = plan.ControlNets;
        if (nets.Length == 0) return null;
        var options = plan.Options;
        bool conditionalOnly = options.ControlGuessMode && shape.Guided;
        var windows = new bool[nets.Length][];
        var scales = new float[nets.Length];
        for (int k = 0; k < nets.Length; k++)
        {
            var input = options.ControlNets[k];
            windows[k] = ControlWindow.For(input.Start, input.End, calls - begin);
            scales[k] = group.Key.ControlScale ?? input.Scale;
        }
        // The ControlNets' bindings travel with the UNet binding (reused by the next generation of its shape).
        var set = new ControlSet(nets, unet, conditionalOnly, options.ControlGuessMode, windows, scales);
        for (int k = 0; k < nets.Length; k++)
        {
            var binding = set.Bindings[k];
            var prepared = new Dictionary<Microsoft.ML.Data.MLImage, float[]>(ReferenceEqualityComparer.Instance);
            for (int j = 0; j < requests.Length; j++)
            {
                var image = ControlImageOf(requests[j], k, options)!;
                if (!prepared.TryGetValue(image, out var pixels))
                    prepared.Add(image, pixels = ControlImagePreprocessing.Apply(image, shape.Width, shape.Height, options.ControlNets[k].CannyThresholds));
                for (int row = j; row < binding.Batch; row += shape.Images) binding.WriteCond(pixels, row);
            }
        }
        return set;
    }

    /// <summary>
    /// The model calls a batch runs, [begin, end): from the first call of its start step (image-to-image) or from
    /// <see cref="GenerationOptions.DenoisingStart"/> (a refiner), to the end of the schedule or to
    /// <see cref="GenerationOptions.DenoisingEnd"/> (a base that hands over); <see cref="DenoisingSplit"/> has the rule.
    /// </summary>
    private static (int Begin, int End) CallRange(DiffusionScheduler scheduler, BatchKey key, GenerationOptions options)
    {
        int begin = options.DenoisingStart is float start ? DenoisingSplit.StartCallIndex(scheduler, start) : scheduler.FirstCallOfStep(key.StartStep);
        int end = options.DenoisingEnd is float stop ? DenoisingSplit.EndCallCount(scheduler, stop) : scheduler.CallCount;
        return (begin, Math.Max(begin, end));
    }

    /// <summary>A refiner's starting latents: each request's <see cref="ImagePrompt.InitLatents"/>, as they are (diffusers adds no noise with <c>denoising_start</c>).</summary>
    private static void HandedOverLatents(BatchShape shape, ImagePrompt[] requests, float[] latents)
    {
        Array.Clear(latents);
        for (int j = 0; j < requests.Length; j++) requests[j].InitLatents!.CopyTo(latents, j * shape.ImageLength);
    }

    /// <summary>The latent channels of the UNets that inpaint with a mask (SD 1.x, 2.x, SDXL: the VAE's <c>latent_channels</c>).</summary>
    private const int MaskedLatentChannels = 4;

    /// <summary>The positions of one prompt's conditioning in the denoiser (one chunk of a CLIP prompt): 77, SD3's 77 + T, FLUX.1's T.</summary>
    internal int ConditioningLength => PromptEncoder.ConditioningLength(T5Length);

    /// <summary>Whether the UNet is an inpainting UNet (sample = latents ++ mask ++ masked-image latents).</summary>
    private bool InpaintingUNet => UNet.InChannels == 9;

    private DiffusionScheduler CreateScheduler(GenerationOptions options, int steps, int width, int height)
    {
        var scheduler = SchedulerFactory.Create(options.Scheduler, SchedulerConfig);
        if (scheduler is DdimScheduler ddim) ddim.Eta = options.Eta;
        if (scheduler is FlowMatchEulerDiscreteScheduler flow)
        {
            // diffusers' FLUX pipelines pass σ = linspace(1, 1/n, n); both SD3's and FLUX's pipelines pass μ from the image's
            // token count (2×2 patches of latents) when the configuration shifts dynamically.
            flow.UsePipelineSigmas = Family == ModelFamily.Flux;
            if (flow.UsesDynamicShifting) flow.Mu = flow.ResolutionShift(height / BatchShape.VaeScale / LatentPacking.Patch * (width / BatchShape.VaeScale / LatentPacking.Patch));
        }
        scheduler.SetTimesteps(steps);
        return scheduler;
    }

    /// <summary>
    /// The starting latents (diffusers' <c>prepare_latents</c>): from the first step, the noise × init_noise_sigma; from a
    /// later step, the init images' latents noised to the first kept call; when a strength of 0 keeps no call, the init
    /// images' latents themselves.
    /// </summary>
    private static void PrepareLatents(BatchShape shape, DiffusionScheduler scheduler, int startStep, int begin, float[] initialNoise, ImageConditioning images, float[] latents)
    {
        if (startStep == 0)
            TensorPrimitives.Multiply(initialNoise, scheduler.InitNoiseSigma, latents);
        else if (begin == scheduler.CallCount)
            images.Latents!.CopyTo(latents, 0);
        else
            scheduler.AddNoise(images.Latents!, initialNoise, begin, latents);
    }

    /// <summary>
    /// Writes the UNet's <c>encoder_hidden_states</c> [B, 77·k, D] into its input buffer, once per batch: with guidance the
    /// negative prompts' rows, then the prompts' (diffusers' <c>torch.cat([negative_prompt_embeds, prompt_embeds])</c>); a
    /// guided request without negative-prompt embeddings takes the model's unconditional default. Of a prompt and its
    /// negative prompt, the one of fewer chunks is padded to the batch's k with the empty prompt's chunk (AUTOMATIC1111's
    /// <c>CFGDenoiser.pad_cond_uncond</c>); the default pads with itself (zeros stay zeros, as diffusers'
    /// <c>torch.zeros_like(prompt_embeds)</c>).
    /// </summary>
    private void WriteHiddenStates(UNetBinding unet, BatchShape shape, int[] rows, PromptEmbedding[] embeddings)
    {
        int length = shape.EmbeddingLength, conditional = shape.Guided ? shape.Images * length : 0;
        for (int j = 0; j < rows.Length; j++)
        {
            var e = embeddings[rows[j]];
            var negative = shape.Guided ? e.Unconditional ?? _unconditional.Value.Hidden : null;
            int chunk = ConditioningLength * shape.EmbeddingWidth;
            if (length == 0 || !FitsChunks(e.Conditional, chunk, length) || negative is not null && !FitsChunks(negative, chunk, length))
                throw new ArgumentException($"Image {rows[j]}: its prompt embeddings have {e.Conditional.Length} values and its negative-prompt embeddings {negative?.Length ?? 0}; " +
                    $"the images of one batch need {shape.SequenceLength} × {shape.EmbeddingWidth} = {length} each (or whole chunks of {ConditioningLength} × {shape.EmbeddingWidth}, padded).", nameof(embeddings));
            WritePadded(unet, e.Conditional, null, conditional + j * length, length);
            if (negative is not null) WritePadded(unet, negative, e.Unconditional is null ? negative : null, j * length, length);
        }
        unet.CommitHiddenStates();

        static bool FitsChunks(float[] values, int chunk, int length) => values.Length > 0 && values.Length % chunk == 0 && values.Length <= length;
    }

    /// <summary>Writes <paramref name="values"/> at <paramref name="offset"/>, then one chunk of <paramref name="pad"/> (null: the
    /// empty prompt's, encoded only when needed) after another until <paramref name="length"/> values are written.</summary>
    private void WritePadded(UNetBinding unet, float[] values, float[]? pad, int offset, int length)
    {
        unet.WriteHiddenStates(values, offset);
        if (values.Length == length) return;
        pad ??= _emptyPrompt.Value.Hidden;
        for (int at = values.Length; at < length; at += pad.Length) unet.WriteHiddenStates(pad.AsSpan(0, Math.Min(pad.Length, length - at)), offset + at);
    }

    /// <summary>
    /// The width D of one token's text conditioning: the text encoders' (summed for SDXL), else the UNet's, when the
    /// models fix it; else measured once on the empty prompt.
    /// </summary>
    private int ConditioningWidth => PromptEncoder.EmbeddingWidth > 0 ? PromptEncoder.EmbeddingWidth
        : UNet.EmbeddingWidth > 0 ? UNet.EmbeddingWidth
        : _emptyPrompt.Value.Hidden.Length / ConditioningLength;

    /// <summary>
    /// The chunks of 77 positions a request's conditioning takes in the UNet: its prompt's, or with guidance its negative
    /// prompt's where that has more (a request without one takes the one-chunk default).
    /// </summary>
    private int ConditioningChunks(PromptEmbedding e, bool guided)
    {
        int chunk = ConditioningLength * ConditioningWidth;
        int chunks = Math.Max(1, e.Conditional.Length / chunk);
        return guided && e.Unconditional is { } negative ? Math.Max(chunks, negative.Length / chunk) : chunks;
    }

    /// <summary>The width of each of the UNet's extra inputs: the pooled embeddings', SDXL's 6 or 5 time ids, the guidance embedding's.</summary>
    private int[]? ExtraWidths(UNet model, BatchShape shape, int[] rows, PromptEmbedding[] embeddings)
    {
        if (model.Extras.Count == 0) return null;
        var widths = new int[model.Extras.Count];
        for (int i = 0; i < widths.Length; i++)
        {
            var extra = model.Extras[i];
            widths[i] = extra.Kind switch
            {
                UNetExtraKind.TextEmbeds => embeddings[rows[0]].ConditionalPooled?.Length
                    ?? throw new ArgumentException($"The unet model '{model.ModelPath}' takes a pooled text embedding ({extra.Spec}), and image {rows[0]} has none: " +
                        "SDXL-family models need the pooled prompt embeddings as well as the per-token ones.", nameof(embeddings)),
                UNetExtraKind.TimeIds => extra.Width > 0 ? extra.Width : Folder.RequiresAestheticsScore ? UNetExtraInputs.RefinerTimeIds : UNetExtraInputs.BaseTimeIds,
                UNetExtraKind.ImageIds => shape.LatentHeight / LatentPacking.Patch * (shape.LatentWidth / LatentPacking.Patch),
                UNetExtraKind.TextIds => ConditioningLength,
                UNetExtraKind.Guidance => 1,
                _ => extra.Width > 0 ? extra.Width : Folder.UnetTimeCondProjDim ?? UNetExtraInputs.DefaultGuidanceEmbeddingWidth,
            };
        }
        return widths;
    }

    /// <summary>
    /// The UNet's extra inputs for one batch, rows in the order of <c>encoder_hidden_states</c> (with guidance the negative
    /// halves first): SDXL's pooled embeddings (diffusers' <c>add_text_embeds</c>) and time ids (<c>add_time_ids</c>,
    /// <see cref="MicroConditioning"/>), a latent consistency model's guidance embedding (<see cref="GuidanceScaleEmbedding"/>
    /// of each image's own guidance scale). They hold for every step, so they are written once.
    /// </summary>
    private void WriteExtras(UNetBinding unet, BatchShape shape, int[] rows, PromptEmbedding[] embeddings, float[] guidance, BatchKey key, GenerationOptions options)
    {
        for (int i = 0; i < unet.Extras.Count; i++)
        {
            switch (unet.Extras[i].Kind)
            {
                case UNetExtraKind.ImageIds: // the same positions for every row (an export's batch axis, where it has one, is 1)
                    unet.SetExtra(i, LatentPacking.ImageIds(shape.LatentHeight, shape.LatentWidth));
                    continue;
                case UNetExtraKind.TextIds:  // zeros (diffusers' FluxPipeline: txt_ids = torch.zeros(T, 3))
                    unet.SetExtra(i, new float[unet.ExtraLength(i)]);
                    continue;
            }
            var values = new float[unet.ExtraLength(i)];
            int width = values.Length / shape.ModelBatch, conditional = shape.Guided ? shape.Images : 0;
            for (int j = 0; j < rows.Length; j++)
            {
                var e = embeddings[rows[j]];
                var row = values.AsSpan((conditional + j) * width, width);
                var negativeRow = shape.Guided ? values.AsSpan(j * width, width) : default;
                switch (unet.Extras[i].Kind)
                {
                    case UNetExtraKind.TextEmbeds:
                        CopyPooled(e.ConditionalPooled, row, rows[j], "prompt");
                        if (shape.Guided) CopyPooled(e.Unconditional is null ? _unconditional.Value.Pooled : e.UnconditionalPooled, negativeRow, rows[j], "negative prompt");
                        break;
                    case UNetExtraKind.TimeIds:
                        MicroConditioning.Write(options, key.Width, key.Height, negative: false, row);
                        if (shape.Guided) MicroConditioning.Write(options, key.Width, key.Height, negative: true, negativeRow);
                        break;
                    case UNetExtraKind.Guidance:             // FLUX.1-dev: the scale itself (the model multiplies it by 1000)
                        row[0] = guidance[j];
                        if (shape.Guided) negativeRow[0] = guidance[j];
                        break;
                    default:
                        GuidanceScaleEmbedding.Write(guidance[j], row);
                        if (shape.Guided) GuidanceScaleEmbedding.Write(guidance[j], negativeRow);
                        break;
                }
            }
            unet.SetExtra(i, values);
        }
    }

    private static void CopyPooled(float[]? pooled, Span<float> destination, int image, string what)
    {
        if (pooled is null || pooled.Length != destination.Length)
            throw new ArgumentException($"Image {image}: its {what}'s pooled embedding has {pooled?.Length ?? 0} values; the UNet takes {destination.Length}.", "embeddings");
        pooled.CopyTo(destination);
    }

    /// <summary>
    /// <c>latent_model_input</c>: the scheduler scales the latents straight into a float UNet's sample buffer (the
    /// conditional half then copied from the unconditional one), or into <paramref name="modelInput"/> and from there into
    /// the sample (float16, inpainting). Returns the scaled latents [N·4·h·w].
    /// </summary>
    private ReadOnlySpan<float> ScaleModelInput(DiffusionScheduler scheduler, float[] latents, UNetBinding unet, BatchShape shape, float[] modelInput)
    {
        var sample = unet.SampleFloats;
        if (InpaintingUNet || sample.IsEmpty)
        {
            scheduler.ScaleModelInput(latents, modelInput);
            WriteModelInput(unet, shape, modelInput);
            return modelInput;
        }
        var first = sample[..shape.LatentLength];
        scheduler.ScaleModelInput(latents, first);
        if (shape.Guided) first.CopyTo(sample[shape.LatentLength..]);
        return first;
    }

    /// <summary>
    /// Writes <c>latent_model_input</c>, the scaled latents, into the UNet's sample: once per guidance half, and on an
    /// inpainting UNet into the first 4 of each row's 9 channels (the mask and masked-image channels stay as written).
    /// </summary>
    private void WriteModelInput(UNetBinding unet, BatchShape shape, float[] modelInput)
    {
        if (InpaintingUNet)
        {
            int rowStride = UNet.InChannels * shape.PlaneLength;
            for (int r = 0; r < unet.Batch; r++) unet.WriteSample(modelInput.AsSpan(r % shape.Images * shape.ImageLength, shape.ImageLength), r * rowStride);
        }
        else
        {
            unet.WriteSample(modelInput, 0);
            if (shape.Guided) unet.WriteSample(modelInput, shape.LatentLength);
        }
    }

    /// <summary>
    /// diffusers' <c>StableDiffusionInpaintPipeline</c>: sample = scaled latents ++ mask ++ masked-image latents, the last
    /// two the same for both guidance halves and for every call, so written once.
    /// </summary>
    private void WriteInpaintingChannels(UNetBinding unet, BatchShape shape, ImageConditioning images)
    {
        int hw = shape.PlaneLength, per = shape.ImageLength, rowStride = UNet.InChannels * hw;
        for (int r = 0; r < unet.Batch; r++)
        {
            unet.WriteSample(images.LatentMasks!.AsSpan(r % shape.Images * hw, hw), r * rowStride + per);
            unet.WriteSample(images.MaskedLatents!.AsSpan(r % shape.Images * per, per), r * rowStride + per + hw);
        }
    }
}

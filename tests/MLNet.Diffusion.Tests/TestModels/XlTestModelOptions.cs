using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>The model family whose folder layout <see cref="XlTestModelFactory"/> writes.</summary>
public enum XlTestFamily
{
    /// <summary>SDXL base (and SDXL-Turbo with <see cref="XlTestModelOptions.Turbo"/>): two tokenizer/encoder pairs,
    /// <c>text_embeds</c> and 6 <c>time_ids</c>.</summary>
    Sdxl,
    /// <summary>SDXL refiner: only <c>tokenizer_2</c>/<c>text_encoder_2</c>, 5 <c>time_ids</c> (with the aesthetic score),
    /// <c>requires_aesthetics_score</c>.</summary>
    SdxlRefiner,
    /// <summary>The SD 1.x layout (one tokenizer/encoder pair, UNet on <c>last_hidden_state</c>), for LCM exports
    /// (<see cref="XlTestModelOptions.Lcm"/>) whose UNet adds only <c>timestep_cond</c>.</summary>
    Sd,
}

/// <summary>How the UNet names its inputs beyond <c>sample</c>, <c>timestep</c> and <c>encoder_hidden_states</c>.</summary>
public enum XlExtraInputNaming
{
    /// <summary><c>text_embeds</c>, <c>time_ids</c>, <c>timestep_cond</c> (Optimum), in that order after the three.</summary>
    Canonical,
    /// <summary>Names that do not say their meaning (<see cref="XlTestModelFactory.UnnamedTextEmbeds"/>,
    /// <see cref="XlTestModelFactory.UnnamedTimeIds"/>, <see cref="XlTestModelFactory.UnnamedTimestepCond"/>), declared in
    /// a different order (time ids, guidance embedding, pooled) with fixed widths [B, n], [B, 256], [B, P], so an engine
    /// can tell them apart only by rank, shape and element type.</summary>
    Unnamed,
    /// <summary>The <see cref="Unnamed"/> names and order with every dimension symbolic: ambiguous, an engine must refuse.</summary>
    UnnamedSymbolic,
}

/// <summary>The text encoders of an SDXL-family folder.</summary>
public enum XlTextEncoder
{
    /// <summary>text_encoder/ (CLIPTextModel; SDXL's 768-wide CLIP ViT-L).</summary>
    TextEncoder = 1,
    /// <summary>text_encoder_2/ (CLIPTextModelWithProjection; SDXL's 1280-wide OpenCLIP ViT-bigG).</summary>
    TextEncoder2 = 2,
}

/// <summary>The UNet inputs beyond <c>sample</c>, <c>timestep</c> and <c>encoder_hidden_states</c>.</summary>
public enum XlUnetInput
{
    /// <summary>The pooled text embedding [B, P] (<c>text_embeds</c>).</summary>
    TextEmbeds,
    /// <summary>The micro-conditioning [B, 6] or [B, 5] (<c>time_ids</c>).</summary>
    TimeIds,
    /// <summary>LCM's guidance-scale embedding [B, 256] (<c>timestep_cond</c>).</summary>
    TimestepCond,
}

/// <summary>
/// The variations of the SDXL, SDXL refiner, Turbo and LCM export contracts that <see cref="XlTestModelFactory"/>
/// writes. Widths are small so the graphs are tiny. The defaults are an SDXL base folder as Optimum exports it: fp32,
/// int64 <c>input_ids</c>, float [B] <c>timestep</c>, canonical input names, symbolic batch and latent size.
/// </summary>
public sealed record XlTestModelOptions
{
    /// <summary>SDXL base 1.0's scheduler/scheduler_config.json (Euler, leading spacing, steps_offset 1).</summary>
    public const string SdxlSchedulerConfig =
        """{"_class_name":"EulerDiscreteScheduler","_diffusers_version":"0.19.0.dev0","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"clip_sample":false,"interpolation_type":"linear","num_train_timesteps":1000,"prediction_type":"epsilon","sample_max_value":1.0,"set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"timestep_spacing":"leading","trained_betas":null,"use_karras_sigmas":false}""";

    /// <summary>SDXL-Turbo's and SD-Turbo's scheduler config: Euler ancestral with <c>trailing</c> spacing (one step is
    /// timestep 999).</summary>
    public const string TurboSchedulerConfig =
        """{"_class_name":"EulerAncestralDiscreteScheduler","_diffusers_version":"0.24.0.dev0","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"clip_sample":false,"interpolation_type":"linear","num_train_timesteps":1000,"prediction_type":"epsilon","sample_max_value":1.0,"set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"timestep_spacing":"trailing","trained_betas":null,"use_karras_sigmas":false}""";

    /// <summary>The LCM exports' scheduler config (LCM-SD1.5 and LCM-SDXL): LCMScheduler, SD's scaled-linear betas,
    /// 50 original inference steps, timestep scaling 10, leading spacing.</summary>
    public const string LcmSchedulerConfig =
        """{"_class_name":"LCMScheduler","_diffusers_version":"0.22.0.dev0","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"clip_sample":false,"clip_sample_range":1.0,"dynamic_thresholding_ratio":0.995,"num_train_timesteps":1000,"original_inference_steps":50,"prediction_type":"epsilon","rescale_betas_zero_snr":false,"sample_max_value":1.0,"set_alpha_to_one":true,"steps_offset":1,"thresholding":false,"timestep_scaling":10.0,"timestep_spacing":"leading","trained_betas":null}""";

    /// <summary>The family (folder layout and UNet contract).</summary>
    public XlTestFamily Family { get; init; } = XlTestFamily.Sdxl;

    /// <summary>SDXL-Turbo: <see cref="TurboSchedulerConfig"/> and sample_size 64 (512² images) unless
    /// <see cref="SchedulerConfigJson"/> / <see cref="SampleSize"/> say otherwise. (SD-Turbo has SD 2.1's contract: use
    /// <see cref="TestModelFactory"/> with <see cref="TurboSchedulerConfig"/>, EmbeddingWidth 1024 and PadToken "!".)</summary>
    public bool Turbo { get; init; }

    /// <summary>LCM: the UNet takes <c>timestep_cond</c> [B, 256] (unet/config.json <c>time_cond_proj_dim</c> 256) and the
    /// scheduler is <see cref="LcmSchedulerConfig"/> unless <see cref="SchedulerConfigJson"/> says otherwise.</summary>
    public bool Lcm { get; init; }

    /// <summary>model_index.json's <c>_class_name</c>; null for the family's diffusers name
    /// (<c>StableDiffusionXLPipeline</c>, <c>StableDiffusionXLImg2ImgPipeline</c>, <c>LatentConsistencyModelPipeline</c> or
    /// <c>StableDiffusionPipeline</c>). Optimum's pipelines use e.g. <c>ORTStableDiffusionXLPipeline</c>.</summary>
    public string? PipelineClassName { get; init; }

    /// <summary>model_index.json's <c>force_zeros_for_empty_prompt</c> (SDXL families only); null for the family's value
    /// (true for base and Turbo, false for the refiner).</summary>
    public bool? ForceZerosForEmptyPrompt { get; init; }

    /// <summary>scheduler/scheduler_config.json; null for the family's (see <see cref="Turbo"/>, <see cref="Lcm"/>,
    /// otherwise <see cref="SdxlSchedulerConfig"/>, or SD 1.5's PNDM for <see cref="XlTestFamily.Sd"/>). The UNet's ᾱ
    /// table is computed from it.</summary>
    public string? SchedulerConfigJson { get; init; }

    /// <summary>unet/config.json's sample_size (latent pixels); null for the family's: 128 (SDXL base, refiner), 64
    /// (Turbo, Sd).</summary>
    public int? SampleSize { get; init; }

    /// <summary>text_encoder's width D1 (SDXL: 768); with <see cref="XlTestFamily.Sd"/>, the only encoder's width.</summary>
    public int TextEncoderWidth { get; init; } = 32;

    /// <summary>text_encoder_2's width D2 (SDXL: 1280).</summary>
    public int TextEncoder2Width { get; init; } = 48;

    /// <summary>text_encoder_2's projection width P, the width of <c>text_embeds</c> (SDXL: 1280); null for D2. It must
    /// differ from the time-id count and 256, or the UNet's rank-2 inputs could not be told apart by width.</summary>
    public int? PooledWidth { get; init; }

    /// <summary>text_encoder's layers L1: it outputs <c>hidden_states.0</c> … <c>hidden_states.L1</c> (SDXL: 12).</summary>
    public int TextEncoderLayers { get; init; } = 3;

    /// <summary>text_encoder_2's layers L2 (SDXL: 32).</summary>
    public int TextEncoder2Layers { get; init; } = 3;

    /// <summary>Whether text_encoder outputs <c>hidden_states.k</c> (false: an export an SDXL engine must refuse, as it lacks
    /// the penultimate hidden state). Default true for SDXL, false for <see cref="XlTestFamily.Sd"/> (SD 1.x exports).</summary>
    public bool? TextEncoderHiddenStates { get; init; }

    /// <summary>Whether text_encoder_2 outputs <c>hidden_states.k</c> (false: an export an engine must refuse).</summary>
    public bool TextEncoder2HiddenStates { get; init; } = true;

    /// <summary>The element type of text_encoder's <c>input_ids</c>: Int32 (diffusers' script) or Int64 (Optimum).</summary>
    public OnnxElementType TextEncoderIdType { get; init; } = OnnxElementType.Int64;

    /// <summary>The element type of text_encoder_2's <c>input_ids</c>.</summary>
    public OnnxElementType TextEncoder2IdType { get; init; } = OnnxElementType.Int64;

    /// <summary>The UNet's <c>timestep</c> form (float [B], int64 [B], float rank 0).</summary>
    public TimestepForm Timestep { get; init; } = TimestepForm.FloatBatch;

    /// <summary>Half precision at every float boundary (encoder outputs, every float UNet input and <c>out_sample</c>,
    /// VAE tensors); inside, the graphs compute in float32.</summary>
    public bool Fp16 { get; init; }

    /// <summary>How the UNet's extra inputs are named (and shaped).</summary>
    public XlExtraInputNaming ExtraInputs { get; init; } = XlExtraInputNaming.Canonical;

    /// <summary>A fixed batch for every UNet input and <c>out_sample</c> (e.g. 2, as static-shape exports for
    /// classifier-free guidance declare); null: symbolic "batch".</summary>
    public int? UnetStaticBatch { get; init; }

    /// <summary>Fixed latent height and width (= the sample size) on the UNet's <c>sample</c> and <c>out_sample</c>
    /// instead of symbolic "height"/"width".</summary>
    public bool UnetStaticLatentSize { get; init; }

    /// <summary>The VAE scaling factor; null for the family's: 0.13025 (SDXL families), 0.18215 (Sd).</summary>
    public float? ScalingFactor { get; init; }

    /// <summary>
    /// External weights: null (all inside model.onnx), "weights.pb" (diffusers' script: the UNet's initializers of 1 KiB
    /// or more in unet/weights.pb) or "model.onnx_data" (Optimum: in model.onnx_data beside the UNet's and each text
    /// encoder's model.onnx).
    /// </summary>
    public string? ExternalWeights { get; init; }

    /// <summary>The VAE encoder's output form.</summary>
    public VaeEncoderForm Encoder { get; init; } = VaeEncoderForm.LatentSample;

    /// <summary>True for the SDXL families (two-encoder contract with <c>text_embeds</c>/<c>time_ids</c>).</summary>
    public bool IsXl => Family != XlTestFamily.Sd;

    /// <summary>Whether the folder has tokenizer/ and text_encoder/ (not the refiner).</summary>
    public bool HasTextEncoder => Family != XlTestFamily.SdxlRefiner;

    /// <summary>Whether the folder has tokenizer_2/ and text_encoder_2/ (the SDXL families).</summary>
    public bool HasTextEncoder2 => IsXl;

    /// <summary>The number of <c>time_ids</c>: 6 (base), 5 (refiner), 0 (Sd).</summary>
    public int TimeIdCount => Family switch { XlTestFamily.Sdxl => 6, XlTestFamily.SdxlRefiner => 5, _ => 0 };

    /// <summary>The width of the UNet's <c>encoder_hidden_states</c>: D1 + D2 (base), D2 (refiner), D1 (Sd).</summary>
    public int ContextWidth => Family switch
    {
        XlTestFamily.Sdxl => TextEncoderWidth + TextEncoder2Width,
        XlTestFamily.SdxlRefiner => TextEncoder2Width,
        _ => TextEncoderWidth,
    };

    /// <summary>P, resolved.</summary>
    public int ResolvedPooledWidth => PooledWidth ?? TextEncoder2Width;

    /// <summary>Whether text_encoder outputs hidden states, resolved.</summary>
    public bool ResolvedTextEncoderHiddenStates => TextEncoderHiddenStates ?? IsXl;

    /// <summary>The sample size, resolved.</summary>
    public int ResolvedSampleSize => SampleSize ?? (Turbo || Family == XlTestFamily.Sd ? 64 : 128);

    /// <summary>The scaling factor, resolved.</summary>
    public float ResolvedScalingFactor => ScalingFactor ?? (IsXl ? 0.13025f : 0.18215f);

    /// <summary>The scheduler config, resolved.</summary>
    public string ResolvedSchedulerConfigJson => SchedulerConfigJson
        ?? (Lcm ? LcmSchedulerConfig
            : Turbo ? TurboSchedulerConfig
            : IsXl ? SdxlSchedulerConfig
            : TestModelOptions.Sd15PndmSchedulerConfig);

    /// <summary>force_zeros_for_empty_prompt, resolved.</summary>
    public bool ResolvedForceZerosForEmptyPrompt => ForceZerosForEmptyPrompt ?? Family == XlTestFamily.Sdxl;

    /// <summary>The options of the SD 1.x test model whose VAE graphs this folder reuses.</summary>
    internal TestModelOptions VaeOptions => new() { Fp16 = Fp16, ScalingFactor = ResolvedScalingFactor, Encoder = Encoder, SampleSize = ResolvedSampleSize };
}

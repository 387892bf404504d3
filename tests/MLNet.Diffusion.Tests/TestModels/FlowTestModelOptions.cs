using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>The flow-matching model family whose folder layout <see cref="FlowTestModelFactory"/> writes.</summary>
public enum FlowTestFamily
{
    /// <summary>Stable Diffusion 3 / 3.5: CLIP-L and CLIP-G with projection, T5, <c>SD3Transformer2DModel</c> on
    /// [B, 16, h, w] latents, timestep = 1000·σ.</summary>
    Sd3,
    /// <summary>FLUX.1 schnell: CLIP-L (pooler_output), T5, <c>FluxTransformer2DModel</c> on packed 2×2 patches,
    /// timestep = σ, no guidance input, scheduler shift 1.0 without dynamic shifting.</summary>
    FluxSchnell,
    /// <summary>FLUX.1 dev: as schnell plus the <c>guidance</c> [B] input, and a dynamically shifted scheduler.</summary>
    FluxDev,
}

/// <summary>How the folder's graphs declare their inputs (the exporters found in the wild).</summary>
public enum FlowExportConvention
{
    /// <summary>Optimum: int64 <c>input_ids</c>, float32 <c>timestep</c> [B], FLUX ids rank 2 ([N, 3], [T, 3]),
    /// external weights in <c>model.onnx_data</c> beside the transformer's and T5's model.onnx.</summary>
    Optimum,
    /// <summary>OnnxStack and older diffusers exports: int32 <c>input_ids</c>, FLUX ids with a batch axis ([1, N, 3],
    /// [1, T, 3]), all weights inside model.onnx.</summary>
    OnnxStack,
}

/// <summary>
/// The variations of the SD3 and FLUX.1 export contracts that <see cref="FlowTestModelFactory"/> writes. Widths are
/// small so the graphs are tiny; names, ranks and element types are the real ones. The defaults are an SD3 folder as
/// Optimum exports it: fp32, with T5, symbolic batch, sequence and latent size.
/// </summary>
public sealed record FlowTestModelOptions
{
    /// <summary>SD3 medium's scheduler/scheduler_config.json (FlowMatchEulerDiscreteScheduler, shift 3.0).</summary>
    public const string Sd3SchedulerConfig =
        """{"_class_name":"FlowMatchEulerDiscreteScheduler","_diffusers_version":"0.29.0.dev0","num_train_timesteps":1000,"shift":3.0}""";

    /// <summary>FLUX.1 schnell's scheduler config: shift 1.0, no dynamic shifting.</summary>
    public const string FluxSchnellSchedulerConfig =
        """{"_class_name":"FlowMatchEulerDiscreteScheduler","_diffusers_version":"0.30.0.dev0","base_image_seq_len":256,"base_shift":0.5,"max_image_seq_len":4096,"max_shift":1.15,"num_train_timesteps":1000,"shift":1.0,"use_dynamic_shifting":false}""";

    /// <summary>FLUX.1 dev's scheduler config: dynamic shifting between base_shift 0.5 (256 tokens) and max_shift 1.15
    /// (4096 tokens).</summary>
    public const string FluxDevSchedulerConfig =
        """{"_class_name":"FlowMatchEulerDiscreteScheduler","_diffusers_version":"0.30.0.dev0","base_image_seq_len":256,"base_shift":0.5,"max_image_seq_len":4096,"max_shift":1.15,"num_train_timesteps":1000,"shift":3.0,"use_dynamic_shifting":true}""";

    /// <summary>The family (folder layout and transformer contract).</summary>
    public FlowTestFamily Family { get; init; } = FlowTestFamily.Sd3;

    /// <summary>The exporter convention.</summary>
    public FlowExportConvention Convention { get; init; } = FlowExportConvention.Optimum;

    /// <summary>Half precision at the float boundaries: the text encoders' outputs, the transformer's
    /// <c>hidden_states</c>, <c>encoder_hidden_states</c>, <c>pooled_projections</c> and <c>out_hidden_states</c>, and
    /// the VAE tensors (as an fp16 export). Inside, the graphs compute in float32.</summary>
    public bool Fp16 { get; init; }

    /// <summary>With <see cref="Fp16"/>: the transformer's <c>timestep</c>, <c>guidance</c>, <c>img_ids</c> and
    /// <c>txt_ids</c> are float16 too (an export that converted every float input); false keeps them float32.</summary>
    public bool Fp16Scalars { get; init; }

    /// <summary>SD3 only: false writes the folder without tokenizer_3/ and text_encoder_3/ (model_index.json lists them
    /// as [null, null]), the common memory-saving layout.</summary>
    public bool IncludeT5 { get; init; } = true;

    /// <summary>CLIP-L's width D1 (real: 768); FLUX's <c>pooled_projections</c> width.</summary>
    public int ClipLWidth { get; init; } = 32;

    /// <summary>CLIP-L's layers L1: it outputs <c>hidden_states.0</c> … <c>hidden_states.L1</c> (real: 12).</summary>
    public int ClipLLayers { get; init; } = 3;

    /// <summary>SD3's CLIP-L projection width P1, the width of its <c>text_embeds</c> (real: 768).</summary>
    public int ClipLProjectionWidth { get; init; } = 24;

    /// <summary>SD3's CLIP-G width D2 (real: 1280).</summary>
    public int ClipGWidth { get; init; } = 48;

    /// <summary>SD3's CLIP-G layers L2 (real: 32).</summary>
    public int ClipGLayers { get; init; } = 3;

    /// <summary>SD3's CLIP-G projection width P2 (real: 1280).</summary>
    public int ClipGProjectionWidth { get; init; } = 40;

    /// <summary>The transformer's <c>joint_attention_dim</c> Dj, also T5's width (real: 4096). For SD3 it must be at
    /// least D1 + D2 (the CLIP states are zero-padded to it).</summary>
    public int JointAttentionDim { get; init; } = 96;

    /// <summary>tokenizer_3's (SD3) or tokenizer_2's (FLUX) <c>model_max_length</c>.</summary>
    public int T5ModelMaxLength { get; init; } = 512;

    /// <summary>The latent sample size (the default image is 8× this): SD3 transformer/config.json's sample_size; the
    /// VAE configs' sample_size is 8× it.</summary>
    public int SampleSize { get; init; } = 16;

    /// <summary>A fixed batch on every transformer input with a batch axis and on <c>out_hidden_states</c>; null:
    /// symbolic "batch".</summary>
    public int? TransformerStaticBatch { get; init; }

    /// <summary>A fixed length S of the transformer's <c>encoder_hidden_states</c> (and FLUX's <c>txt_ids</c>), as
    /// static exports declare (SD3: 77 + T; FLUX: T); null: symbolic "sequence".</summary>
    public int? TransformerStaticSequenceLength { get; init; }

    /// <summary>Fixed latent height and width (= <see cref="SampleSize"/>) on the transformer's latent input and output
    /// (FLUX: N = (SampleSize/2)² tokens) instead of symbolic ones.</summary>
    public bool TransformerStaticLatentSize { get; init; }

    /// <summary>model_index.json's <c>_class_name</c>; null for the family's diffusers name
    /// (<c>StableDiffusion3Pipeline</c> or <c>FluxPipeline</c>).</summary>
    public string? PipelineClassName { get; init; }

    /// <summary>scheduler/scheduler_config.json; null for the family's (<see cref="Sd3SchedulerConfig"/>,
    /// <see cref="FluxSchnellSchedulerConfig"/>, <see cref="FluxDevSchedulerConfig"/>).</summary>
    public string? SchedulerConfigJson { get; init; }

    /// <summary>The VAE scaling factor; null for the family's (SD3 1.5305, FLUX 0.3611).</summary>
    public float? ScalingFactor { get; init; }

    /// <summary>The VAE shift factor; null for the family's (SD3 0.0609, FLUX 0.1159).</summary>
    public float? ShiftFactor { get; init; }

    /// <summary>The VAE encoder's output form (<c>latent_sample</c> [B, 16, h, w] or Optimum ≥ 1.23's
    /// <c>latent_parameters</c> [B, 32, h, w]).</summary>
    public VaeEncoderForm Encoder { get; init; } = VaeEncoderForm.LatentSample;

    /// <summary>True for the FLUX families.</summary>
    public bool IsFlux => Family != FlowTestFamily.Sd3;

    /// <summary>True when the transformer takes <c>guidance</c> (FLUX dev).</summary>
    public bool HasGuidance => Family == FlowTestFamily.FluxDev;

    /// <summary>Whether the folder has a T5 encoder (always for FLUX).</summary>
    public bool HasT5 => IsFlux || IncludeT5;

    /// <summary>The folder of the T5 encoder: text_encoder_3 (SD3) or text_encoder_2 (FLUX).</summary>
    public string T5EncoderFolder => IsFlux ? "text_encoder_2" : "text_encoder_3";

    /// <summary>The folder of the T5 tokenizer: tokenizer_3 (SD3) or tokenizer_2 (FLUX).</summary>
    public string T5TokenizerFolder => IsFlux ? "tokenizer_2" : "tokenizer_3";

    /// <summary>The transformer's <c>pooled_projections</c> width: P1 + P2 (SD3) or D1 (FLUX).</summary>
    public int PooledWidth => IsFlux ? ClipLWidth : ClipLProjectionWidth + ClipGProjectionWidth;

    /// <summary>The element type of every <c>input_ids</c>.</summary>
    public OnnxElementType IdType => Convention == FlowExportConvention.Optimum ? OnnxElementType.Int64 : OnnxElementType.Int32;

    /// <summary>Whether FLUX's <c>img_ids</c>/<c>txt_ids</c> carry a batch axis of 1 (rank 3).</summary>
    public bool RankThreeIds => Convention == FlowExportConvention.OnnxStack;

    /// <summary>The external-data file of the transformer and the T5 encoder: model.onnx_data (Optimum) or none.</summary>
    public string? ExternalWeights => Convention == FlowExportConvention.Optimum ? "model.onnx_data" : null;

    /// <summary>The scaling factor, resolved.</summary>
    public float ResolvedScalingFactor => ScalingFactor ?? (IsFlux ? 0.3611f : 1.5305f);

    /// <summary>The shift factor, resolved.</summary>
    public float ResolvedShiftFactor => ShiftFactor ?? (IsFlux ? 0.1159f : 0.0609f);

    /// <summary>The scheduler config, resolved.</summary>
    public string ResolvedSchedulerConfigJson => SchedulerConfigJson ?? Family switch
    {
        FlowTestFamily.Sd3 => Sd3SchedulerConfig,
        FlowTestFamily.FluxSchnell => FluxSchnellSchedulerConfig,
        _ => FluxDevSchedulerConfig,
    };

    /// <summary>The SDXL-family options whose CLIP encoder graphs and closed forms this folder reuses (text_encoder =
    /// CLIP-L, text_encoder_2 = CLIP-G).</summary>
    internal XlTestModelOptions ClipOptions => new()
    {
        TextEncoderWidth = ClipLWidth,
        TextEncoderLayers = ClipLLayers,
        TextEncoder2Width = ClipGWidth,
        TextEncoder2Layers = ClipGLayers,
        PooledWidth = ClipGProjectionWidth,
        TextEncoderHiddenStates = !IsFlux,
        TextEncoderIdType = IdType,
        TextEncoder2IdType = IdType,
        Fp16 = Fp16,
    };
}

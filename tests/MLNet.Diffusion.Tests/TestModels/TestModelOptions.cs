using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.Tests.TestModels;

/// <summary>How the test UNet takes its <c>timestep</c> input.</summary>
public enum TimestepForm
{
    /// <summary>float [batch], as diffusers exports it (float16 when <see cref="TestModelOptions.Fp16"/>, as diffusers' fp16 export).</summary>
    FloatBatch,
    /// <summary>int64 [batch], as Optimum before 1.24.</summary>
    Int64Batch,
    /// <summary>float32 rank 0, as Optimum from 1.24.</summary>
    FloatScalar,
}

/// <summary>What the test VAE encoder outputs.</summary>
public enum VaeEncoderForm
{
    /// <summary><c>latent_sample</c> [B, 4, h, w] (diffusers; here the mean, no in-graph noise).</summary>
    LatentSample,
    /// <summary><c>latent_parameters</c> [B, 8, h, w]: mean ++ log-variance on channels (Optimum ≥ 1.23).</summary>
    LatentParameters,
}

/// <summary>The variations of the SD export contract that <see cref="TestModelFactory"/> can write.</summary>
public sealed record TestModelOptions
{
    /// <summary>SD 1.5's scheduler/scheduler_config.json (PNDM).</summary>
    public const string Sd15PndmSchedulerConfig =
        """{"_class_name":"PNDMScheduler","_diffusers_version":"0.6.0","beta_end":0.012,"beta_schedule":"scaled_linear","beta_start":0.00085,"num_train_timesteps":1000,"set_alpha_to_one":false,"skip_prk_steps":true,"steps_offset":1,"trained_betas":null,"clip_sample":false}""";

    /// <summary>The element type of the text encoder's <c>input_ids</c>: Int32 (diffusers) or Int64 (Optimum).</summary>
    public OnnxElementType IdType { get; init; } = OnnxElementType.Int32;

    /// <summary>The UNet's <c>timestep</c> input form.</summary>
    public TimestepForm Timestep { get; init; } = TimestepForm.FloatBatch;

    /// <summary>Half precision at the model boundaries: the text encoder's outputs, the UNet's <c>sample</c>,
    /// <c>encoder_hidden_states</c>, <c>out_sample</c> (and a <see cref="TimestepForm.FloatBatch"/> timestep),
    /// and the VAE tensors. Inside, every graph casts to float32, computes, and casts back.</summary>
    public bool Fp16 { get; init; }

    /// <summary>The text embedding width D: 768 (SD 1.x) or 1024 (SD 2.x).</summary>
    public int EmbeddingWidth { get; init; } = 768;

    /// <summary>
    /// External weights: null (all inside model.onnx), "weights.pb" (diffusers: the UNet's large
    /// initializers in unet/weights.pb) or "model.onnx_data" (Optimum: unet/model.onnx_data and
    /// text_encoder/model.onnx_data).
    /// </summary>
    public string? ExternalWeights { get; init; }

    /// <summary>"epsilon", "v_prediction" or "sample": the UNet's output form, also written to the scheduler config.</summary>
    public string PredictionType { get; init; } = "epsilon";

    /// <summary>
    /// The UNet's <c>encoder_hidden_states</c> sequence axis: null (the default) leaves it dynamic ("sequence"), so prompts
    /// of several chunks of 77 positions condition it; 77 fixes it, as some exports do. The oracle's target is the mean over
    /// positions, so any length has a closed-form answer (<see cref="TestModelFactory.TargetLatent(ReadOnlySpan{float}, int)"/>).
    /// </summary>
    public int? UnetSequenceLength { get; init; }

    /// <summary>The VAE encoder's output form.</summary>
    public VaeEncoderForm Encoder { get; init; } = VaeEncoderForm.LatentSample;

    /// <summary>4, or 9 for an inpainting UNet (sample ++ mask ++ masked-image latents on channels).</summary>
    public int UnetInChannels { get; init; } = 4;

    /// <summary>scheduler/scheduler_config.json; the UNet's ᾱ table is computed from it.</summary>
    public string SchedulerConfigJson { get; init; } = Sd15PndmSchedulerConfig;

    /// <summary>tokenizer_config.json's pad_token: null for &lt;|endoftext|&gt; (SD 1.x), "!" for SD 2.x.</summary>
    public string? PadToken { get; init; }

    /// <summary>The VAE scaling factor, written to vae_decoder/config.json and vae_encoder/config.json and
    /// built into both VAE graphs so that the engine's scaling round-trips.</summary>
    public float ScalingFactor { get; init; } = 0.18215f;

    /// <summary>
    /// The spread s of the data the oracle UNet denoises. 0 (the default): one point per prompt, so every start
    /// ends on the target. s &gt; 0: the exact denoiser for x₀ ~ N(target, s²) per element (<c>GaussianOracle</c>),
    /// so a deterministic scheduler keeps part of where it started, more the less noise it starts from
    /// (what image-to-image strength controls).
    /// </summary>
    public float DataStd { get; init; }

    /// <summary>unet/config.json's sample_size (latent pixels; the default image is 8× this).</summary>
    public int SampleSize { get; init; } = 8;

    /// <summary>A numerical fault: where a batch row's timestep is below this, the UNet outputs NaN for that row
    /// (null, the default: never). Proves that non-finite values are caught at the step where they appear.</summary>
    public float? NanBelowTimestep { get; init; }

    /// <summary>A numerical fault: where a batch row's timestep is below this, the UNet multiplies its output by 10⁹
    /// (null: never). With <see cref="Fp16"/> the cast to float16 overflows to ±Infinity, as a real fp16 export does.</summary>
    public float? OverflowBelowTimestep { get; init; }

    /// <summary>A numerical fault: the text encoder outputs NaN everywhere.</summary>
    public bool NanTextEncoder { get; init; }

    /// <summary>A numerical fault: the VAE decoder outputs NaN everywhere.</summary>
    public bool NanVaeDecoder { get; init; }

    /// <summary>
    /// Extra work per UNet call: this many 256×256 matrix products chained on a value that depends on the inputs (so
    /// ONNX Runtime cannot fold them away) and added as ×0 to the output, which is unchanged. It makes a call take
    /// long enough to cancel in the middle of it (ONNX Runtime checks for termination between operators, so many
    /// small products keep cancellation prompt); 0 (the default) adds nothing.
    /// </summary>
    public int UnetSlowdown { get; init; }

    /// <summary>The same extra work per VAE decoder call (see <see cref="UnetSlowdown"/>).</summary>
    public int VaeDecoderSlowdown { get; init; }
}

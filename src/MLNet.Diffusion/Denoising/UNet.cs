using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Denoising;

/// <summary>
/// The noise-predicting UNet (<c>unet/model.onnx</c>). Its inputs are read from the model's metadata, since
/// exporters differ: <c>sample</c> float or float16 [B, C, h, w] (C = 4, or 9 for inpainting UNets);
/// <c>timestep</c> float [B] (diffusers), int64 [B] (Optimum &lt; 1.24) or a float scalar (Optimum ≥ 1.24);
/// <c>encoder_hidden_states</c> [B, 77, D]. Output <c>out_sample</c> [B, 4, h, w].
/// </summary>
public sealed class UNet : OnnxModelComponent
{
    /// <summary>Loads the UNet and checks its contract.</summary>
    /// <exception cref="InvalidDataException">An input or output is missing or has another type or rank; the message names it.</exception>
    public UNet(string modelPath, OnnxSessionFactory sessions) : base("unet", modelPath, sessions)
    {
        try
        {
            SampleSpec = Require(true, "sample", [TensorElementType.Float, TensorElementType.Float16], 4);
            TimestepSpec = Require(true, "timestep", [TensorElementType.Float, TensorElementType.Float16, TensorElementType.Int64, TensorElementType.Int32], 0, 1);
            HiddenStatesSpec = Require(true, "encoder_hidden_states", [TensorElementType.Float, TensorElementType.Float16], 3);
            var output = FirstOutput("out_sample") ?? (Outputs.Count == 1 ? Outputs.Keys.First() : null)
                ?? throw new InvalidDataException($"The unet model '{modelPath}' has no 'out_sample' output (it declares {string.Join(", ", Outputs.Values)}).");
            OutputSpec = Require(false, output, [TensorElementType.Float, TensorElementType.Float16], 4);
            foreach (var extra in Inputs.Keys.Except(["sample", "timestep", "encoder_hidden_states"]))
                throw new InvalidDataException($"The unet model '{modelPath}' needs an input '{extra}' that SD 1.x/2.x UNets do not have (SDXL's text_embeds/time_ids are not supported).");
            InChannels = SampleSpec.Dimensions[1] > 0 ? SampleSpec.Dimensions[1] : 4;
            if (InChannels is not (4 or 9))
                throw new InvalidDataException($"The unet model '{modelPath}': sample has {InChannels} channels, expected 4 (text-to-image) or 9 (inpainting).");
            EmbeddingWidth = HiddenStatesSpec.Dimensions[2] > 0 ? HiddenStatesSpec.Dimensions[2] : 0;
        }
        catch
        {
            Dispose(); // release the session now rather than at finalization
            throw;
        }
    }

    /// <summary>The <c>sample</c> input.</summary>
    public TensorSpec SampleSpec { get; }

    /// <summary>The <c>timestep</c> input (float/int64; rank 0 or [batch]).</summary>
    public TensorSpec TimestepSpec { get; }

    /// <summary>The <c>encoder_hidden_states</c> input.</summary>
    public TensorSpec HiddenStatesSpec { get; }

    /// <summary>The predicted-noise output.</summary>
    public TensorSpec OutputSpec { get; }

    /// <summary>Input channels: 4, or 9 for an inpainting UNet (latents, mask, masked-image latents).</summary>
    public int InChannels { get; }

    /// <summary>The conditioning width D when the model fixes it, else 0.</summary>
    public int EmbeddingWidth { get; }

    /// <summary>Latent channels of the output (4).</summary>
    public int OutChannels => OutputSpec.Dimensions[1] > 0 ? OutputSpec.Dimensions[1] : 4;

    /// <summary>
    /// Allocates the reusable input and output buffers for one generation's shape, so that each step only
    /// writes into them and runs.
    /// </summary>
    /// <param name="batch">UNet batch (images × 2 with classifier-free guidance).</param>
    /// <param name="latentHeight">h.</param>
    /// <param name="latentWidth">w.</param>
    /// <param name="sequenceLength">Token positions (77).</param>
    /// <param name="embeddingWidth">D.</param>
    public UNetBinding Bind(int batch, int latentHeight, int latentWidth, int sequenceLength, int embeddingWidth)
    {
        ThrowIfDisposed();
        CheckDimension(SampleSpec, 0, batch, "batch");
        CheckDimension(SampleSpec, 2, latentHeight, "latent height");
        CheckDimension(SampleSpec, 3, latentWidth, "latent width");
        CheckDimension(HiddenStatesSpec, 1, sequenceLength, "sequence length");
        if (EmbeddingWidth > 0 && EmbeddingWidth != embeddingWidth)
            throw new ArgumentException($"The unet model '{ModelPath}' takes encoder_hidden_states of width {EmbeddingWidth}, but the text encoder gives {embeddingWidth}. The two come from different models.");
        return new UNetBinding(this, batch, latentHeight, latentWidth, sequenceLength, embeddingWidth);
    }

    private long _calls;

    /// <summary>How many times the UNet has run since it was loaded (each run is one batch; diagnostics and tests).</summary>
    public long RunCount => Interlocked.Read(ref _calls);

    internal void RunBound(Microsoft.ML.OnnxRuntime.RunOptions options, string[] inputNames, Microsoft.ML.OnnxRuntime.OrtValue[] inputs, string[] outputNames, Microsoft.ML.OnnxRuntime.OrtValue[] outputs)
    {
        Run(options, inputNames, inputs, outputNames, outputs);
        Interlocked.Increment(ref _calls);
    }
}

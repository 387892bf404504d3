using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Vae;

/// <summary>
/// The VAE decoder (<c>vae_decoder/model.onnx</c>): latents / scaling factor → RGB in [−1, 1]
/// (<c>latent_sample</c> [B, 4, h, w] → <c>sample</c> [B, 3, 8h, 8w]). Images are decoded one at a time,
/// as diffusers' ONNX pipeline does, which bounds memory at large sizes.
/// </summary>
internal sealed class VaeDecoder : OnnxModelComponent
{
    private readonly TensorSpec _input;
    private readonly string _output;

    /// <summary>Loads the decoder and checks its contract.</summary>
    /// <param name="modelPath">The .onnx file.</param>
    /// <param name="sessions">Creates the session.</param>
    /// <param name="scalingFactor">The VAE scaling factor (0.18215 for SD 1.x/2.x, 0.13025 for SDXL).</param>
    public VaeDecoder(string modelPath, OnnxSessionFactory sessions, float scalingFactor) : base("vae_decoder", modelPath, sessions)
    {
        try
        {
            if (!(scalingFactor > 0) || !float.IsFinite(scalingFactor))
                throw new ArgumentOutOfRangeException(nameof(scalingFactor), scalingFactor, "The VAE scaling factor must be a positive number.");
            ScalingFactor = scalingFactor;
            _input = Require(true, "latent_sample", [TensorElementType.Float, TensorElementType.Float16], 4);
            _output = FirstOutput("sample") ?? (Outputs.Count == 1 ? Outputs.Keys.First() : null)
                ?? throw new InvalidDataException($"The vae_decoder model '{modelPath}' has no 'sample' output (it declares {string.Join(", ", Outputs.Values)}).");
            Require(false, _output, [TensorElementType.Float, TensorElementType.Float16], 4);
        }
        catch
        {
            Dispose(); // release the session now rather than at finalization
            throw;
        }
    }

    /// <summary>Latents are divided by this before decoding.</summary>
    public float ScalingFactor { get; }

    /// <summary>
    /// Decodes one image's latents [4, h, w] and returns its pixels [3, H, W] in [−1, 1] with the image size.
    /// </summary>
    public float[] Decode(ReadOnlySpan<float> latents, int latentHeight, int latentWidth, out int height, out int width, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        int channels = latents.Length / (latentHeight * latentWidth);
        if (channels * latentHeight * latentWidth != latents.Length || channels < 1)
            throw new ArgumentException($"{latents.Length} latent values do not form [C, {latentHeight}, {latentWidth}].", nameof(latents));
        using var input = OrtTensor.Create(_input.ElementType, 1, channels, latentHeight, latentWidth);
        var scaled = new float[latents.Length];
        System.Numerics.Tensors.TensorPrimitives.Multiply(latents, 1f / ScalingFactor, scaled);
        input.Write(scaled);
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        using var outputs = Run(runOptions, ["latent_sample"], [input.Value], [_output]);
        var info = outputs[0].GetTensorTypeAndShape();
        var shape = info.Shape;
        if (shape.Length != 4 || shape[0] != 1 || shape[1] != 3)
            throw new InvalidDataException($"The vae_decoder model '{ModelPath}' returned '{_output}' of shape [{string.Join(", ", shape)}], expected [1, 3, H, W].");
        height = (int)shape[2];
        width = (int)shape[3];
        var pixels = new float[3 * height * width];
        OrtTensor.ReadFloats(outputs[0], info.ElementDataType, pixels);
        return pixels;
    }
}

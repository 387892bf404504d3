using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Schedulers;

namespace MLNet.Diffusion.Vae;

/// <summary>
/// The VAE encoder (<c>vae_encoder/model.onnx</c>): RGB in [−1, 1] → latents × scaling factor. Two export
/// forms exist: <c>latent_sample</c> (sampled inside the graph, diffusers' export) and
/// <c>latent_parameters</c> [B, 8, h, w] (Optimum ≥ 1.23: mean and log-variance stacked on channels), which is
/// sampled here as mean + exp(½·clamp(logvar, −30, 20))·ε with the image's own noise, as diffusers'
/// <c>DiagonalGaussianDistribution</c> does.
/// </summary>
internal sealed class VaeEncoder : OnnxModelComponent
{
    private readonly TensorSpec _input;
    private readonly string _output;
    private readonly bool _parameters;

    /// <summary>Loads the encoder and checks its contract.</summary>
    public VaeEncoder(string modelPath, OnnxSessionFactory sessions, float scalingFactor) : base("vae_encoder", modelPath, sessions)
    {
        try
        {
            if (!(scalingFactor > 0) || !float.IsFinite(scalingFactor))
                throw new ArgumentOutOfRangeException(nameof(scalingFactor), scalingFactor, "The VAE scaling factor must be a positive number.");
            ScalingFactor = scalingFactor;
            _input = Require(true, "sample", [TensorElementType.Float, TensorElementType.Float16], 4);
            _output = FirstOutput("latent_sample", "latent_parameters") ?? (Outputs.Count == 1 ? Outputs.Keys.First() : null)
                ?? throw new InvalidDataException($"The vae_encoder model '{modelPath}' has neither 'latent_sample' nor 'latent_parameters' output (it declares {string.Join(", ", Outputs.Values)}).");
            _parameters = _output == "latent_parameters";
            Require(false, _output, [TensorElementType.Float, TensorElementType.Float16], 4);
        }
        catch
        {
            Dispose(); // release the session now rather than at finalization
            throw;
        }
    }

    /// <summary>Encoder latents are multiplied by this.</summary>
    public float ScalingFactor { get; }

    /// <summary>Whether the model returns mean and log-variance (Optimum's <c>latent_parameters</c>) rather than a sample.</summary>
    public bool ReturnsDistribution => _parameters;

    /// <summary>Encodes one image [3, H, W] in [−1, 1] into scaled latents [4, H/8, W/8].</summary>
    /// <param name="pixels">The image, channel-major.</param>
    /// <param name="height">H.</param>
    /// <param name="width">W.</param>
    /// <param name="noise">Noise for sampling a <c>latent_parameters</c> output.</param>
    /// <param name="latentHeight">h of the result.</param>
    /// <param name="latentWidth">w of the result.</param>
    /// <param name="cancellationToken">Cancels the run.</param>
    public float[] Encode(ReadOnlySpan<float> pixels, int height, int width, INoiseSource noise, out int latentHeight, out int latentWidth, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        if (pixels.Length != 3 * height * width)
            throw new ArgumentException($"{pixels.Length} pixel values do not form [3, {height}, {width}].", nameof(pixels));
        using var input = OrtTensor.Create(_input.ElementType, 1, 3, height, width);
        input.Write(pixels);
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        using var outputs = Run(runOptions, ["sample"], [input.Value], [_output]);
        var info = outputs[0].GetTensorTypeAndShape();
        var shape = info.Shape;
        int expectedChannels = _parameters ? 8 : 4;
        if (shape.Length != 4 || shape[0] != 1 || shape[1] != expectedChannels)
            throw new InvalidDataException($"The vae_encoder model '{ModelPath}' returned '{_output}' of shape [{string.Join(", ", shape)}], expected [1, {expectedChannels}, h, w].");
        latentHeight = (int)shape[2];
        latentWidth = (int)shape[3];
        int plane = latentHeight * latentWidth, n = 4 * plane;
        var raw = new float[expectedChannels * plane];
        OrtTensor.ReadFloats(outputs[0], info.ElementDataType, raw);
        var latents = new float[n];
        if (_parameters)
        {
            noise.Fill(latents);
            for (int i = 0; i < n; i++)
            {
                float logVar = Math.Clamp(raw[n + i], -30f, 20f);
                latents[i] = raw[i] + MathF.Exp(0.5f * logVar) * latents[i];
            }
        }
        else
        {
            raw.AsSpan(0, n).CopyTo(latents);
        }
        System.Numerics.Tensors.TensorPrimitives.Multiply(latents, ScalingFactor, latents);
        return latents;
    }
}

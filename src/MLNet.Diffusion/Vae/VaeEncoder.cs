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
/// <c>DiagonalGaussianDistribution</c> does. A large image is encoded in overlapping tiles (<see cref="VaeTiling"/>).
/// </summary>
internal sealed class VaeEncoder : OnnxModelComponent
{
    private readonly TensorSpec _input;
    private readonly string _output;
    private readonly bool _parameters;

    /// <summary>Loads the encoder and checks its contract.</summary>
    /// <param name="modelPath">The .onnx file.</param>
    /// <param name="sessions">Creates the session.</param>
    /// <param name="scalingFactor">The VAE scaling factor.</param>
    /// <param name="shiftFactor">The VAE shift factor (SD3, FLUX.1): latents are (z − shift) · scaling, diffusers'
    /// <c>(image_latents - vae.config.shift_factor) * vae.config.scaling_factor</c>; 0 for the other families.</param>
    public VaeEncoder(string modelPath, OnnxSessionFactory sessions, float scalingFactor, float shiftFactor = 0f) : base("vae_encoder", modelPath, sessions)
    {
        try
        {
            ShiftFactor = float.IsFinite(shiftFactor) ? shiftFactor : throw new ArgumentOutOfRangeException(nameof(shiftFactor), shiftFactor, "The VAE shift factor must be a finite number.");
            if (!(scalingFactor > 0) || !float.IsFinite(scalingFactor))
                throw new ArgumentOutOfRangeException(nameof(scalingFactor), scalingFactor, "The VAE scaling factor must be a positive number.");
            ScalingFactor = scalingFactor;
            _input = Require(true, "sample", [TensorElementType.Float, TensorElementType.Float16], 4);
            _output = FirstOutput("latent_sample", "latent_parameters") ?? (Outputs.Count == 1 ? Outputs.Keys.First() : null)
                ?? throw new InvalidDataException($"The vae_encoder model '{modelPath}' has neither 'latent_sample' nor 'latent_parameters' output (it declares {string.Join(", ", Outputs.Values)}).");
            _parameters = _output == "latent_parameters";
            var output = Require(false, _output, [TensorElementType.Float, TensorElementType.Float16], 4);
            int declared = output.Dimensions[1];
            LatentChannels = declared > 0 ? (_parameters ? declared / 2 : declared) : 4;
        }
        catch
        {
            Dispose(); // release the session now rather than at finalization
            throw;
        }
    }

    /// <summary>Encoder latents are multiplied by this.</summary>
    public float ScalingFactor { get; }

    /// <summary>Subtracted from the encoder's latents before scaling (SD3, FLUX.1; else 0).</summary>
    public float ShiftFactor { get; }

    /// <summary>The latent channels C (the model's output channels, halved for <c>latent_parameters</c>; 4 when symbolic).</summary>
    public int LatentChannels { get; }

    /// <summary>Whether the model returns mean and log-variance (Optimum's <c>latent_parameters</c>) rather than a sample.</summary>
    public bool ReturnsDistribution => _parameters;

    /// <summary>The tile side in latents for an axis the model does not fix (<see cref="LatentTiles.DefaultTile"/>:
    /// 512 pixels; smaller in tests).</summary>
    internal int TileSize
    {
        get => _tileSize;
        set => _tileSize = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "The VAE tile size must be at least 1 latent.");
    }

    private int _tileSize = LatentTiles.DefaultTile;

    /// <summary>The encoder's downsampling factor: pixels per latent along each axis (SD's VAE, every version).</summary>
    private const int PixelsPerLatent = 8;

    /// <summary>Encodes one image [3, H, W] in [−1, 1] into scaled latents [C, H/8, W/8], whole or in overlapping tiles.</summary>
    /// <param name="pixels">The image, channel-major.</param>
    /// <param name="height">H.</param>
    /// <param name="width">W.</param>
    /// <param name="noise">Noise for sampling a <c>latent_parameters</c> output.</param>
    /// <param name="latentHeight">h of the result.</param>
    /// <param name="latentWidth">w of the result.</param>
    /// <param name="cancellationToken">Cancels the run in progress and stops before the next tile.</param>
    /// <param name="tiling">Whether to encode in tiles (see <see cref="VaeTiling"/>; an image whose sides are not
    /// multiples of 8 is encoded whole).</param>
    /// <param name="onTile">Called after each tile with the tiles done and the tiles in all (not called for a whole-image encode).</param>
    /// <exception cref="OperationCanceledException">Cancelled between tiles (a run stopped in progress throws ONNX Runtime's exception, as before).</exception>
    public float[] Encode(ReadOnlySpan<float> pixels, int height, int width, INoiseSource noise, out int latentHeight, out int latentWidth, CancellationToken cancellationToken = default,
        VaeTiling tiling = VaeTiling.Auto, Action<int, int>? onTile = null)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        if (pixels.Length != 3 * height * width)
            throw new ArgumentException($"{pixels.Length} pixel values do not form [3, {height}, {width}].", nameof(pixels));
        if (tiling is not (VaeTiling.Auto or VaeTiling.On or VaeTiling.Off))
            throw new ArgumentOutOfRangeException(nameof(tiling), tiling, "VAE tiling must be Auto, On or Off.");
        // Tiles start on latent boundaries, so only sides that are whole multiples of 8 pixels (here and in a fixed
        // export, whose symbolic sides read as −1) can be tiled; any other image is encoded whole.
        int fixedHeight = Math.Max(_input.Dimensions[2], 0), fixedWidth = Math.Max(_input.Dimensions[3], 0);
        var tiles = height % PixelsPerLatent == 0 && width % PixelsPerLatent == 0 && fixedHeight % PixelsPerLatent == 0 && fixedWidth % PixelsPerLatent == 0
            ? LatentTiles.Choose(tiling, height / PixelsPerLatent, width / PixelsPerLatent, fixedHeight / PixelsPerLatent, fixedWidth / PixelsPerLatent, TileSize)
            : null;
        var raw = tiles is null
            ? EncodeWhole(pixels, height, width, out latentHeight, out latentWidth, cancellationToken)
            : EncodeTiles(pixels, tiles, out latentHeight, out latentWidth, cancellationToken, onTile);
        int n = LatentChannels * latentHeight * latentWidth;
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
        if (ShiftFactor != 0) System.Numerics.Tensors.TensorPrimitives.Subtract(latents, ShiftFactor, latents);
        System.Numerics.Tensors.TensorPrimitives.Multiply(latents, ScalingFactor, latents);
        return latents;
    }

    /// <summary>The channels of the model's output: 2C (mean ++ log-variance) or C (a sample).</summary>
    private int OutputChannels => _parameters ? 2 * LatentChannels : LatentChannels;

    /// <summary>One run over the whole image; returns the model's output [C, h, w] (a sample, or mean ++ log-variance).</summary>
    private float[] EncodeWhole(ReadOnlySpan<float> pixels, int height, int width, out int latentHeight, out int latentWidth, CancellationToken cancellationToken)
    {
        using var input = OrtTensor.Create(_input.ElementType, 1, 3, height, width);
        input.Write(pixels);
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        using var outputs = Run(runOptions, ["sample"], [input.Value], [_output]);
        var info = outputs[0].GetTensorTypeAndShape();
        var shape = info.Shape;
        int expectedChannels = OutputChannels;
        if (shape.Length != 4 || shape[0] != 1 || shape[1] != expectedChannels)
            throw new InvalidDataException($"The vae_encoder model '{ModelPath}' returned '{_output}' of shape [{string.Join(", ", shape)}], expected [1, {expectedChannels}, h, w].");
        latentHeight = (int)shape[2];
        latentWidth = (int)shape[3];
        var raw = new float[expectedChannels * latentHeight * latentWidth];
        OrtTensor.ReadFloats(outputs[0], info.ElementDataType, raw);
        return raw;
    }

    /// <summary>
    /// Encodes tile by tile (diffusers' <c>AutoencoderKL.tiled_encode</c>: pixel tiles encoded alone, their outputs
    /// blended linearly across the overlaps and cropped). A <c>latent_parameters</c> model's mean and log-variance are
    /// blended, and the caller samples once from the blend, as diffusers builds one <c>DiagonalGaussianDistribution</c>
    /// from the blended moments. The tile's input tensor is made once and reused; the latent-sized output is the only
    /// buffer that grows with the image.
    /// </summary>
    private float[] EncodeTiles(ReadOnlySpan<float> pixels, LatentTiles tiles, out int latentHeight, out int latentWidth, CancellationToken cancellationToken, Action<int, int>? onTile)
    {
        latentHeight = tiles.Rows.Length;
        latentWidth = tiles.Columns.Length;
        int height = latentHeight * PixelsPerLatent, width = latentWidth * PixelsPerLatent;
        int tileHeight = tiles.Rows.Tile * PixelsPerLatent, tileWidth = tiles.Columns.Tile * PixelsPerLatent;
        int channels = OutputChannels;
        using var input = OrtTensor.Create(_input.ElementType, 1, 3, tileHeight, tileWidth);
        var raw = new float[channels * latentHeight * latentWidth];
        var rowWeights = tiles.Rows.Weights(1);
        var columnWeights = tiles.Columns.Weights(1);
        var line = new float[tiles.Columns.Tile];
        float[]? converted = null;
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        for (int t = 0; t < tiles.Count; t++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (top, left, _, _) = tiles[t];
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < tileHeight; y++)
                    input.Write(pixels.Slice((c * height + top * PixelsPerLatent + y) * width + left * PixelsPerLatent, tileWidth), (c * tileHeight + y) * tileWidth);
            using var outputs = Run(runOptions, ["sample"], [input.Value], [_output]);
            var info = outputs[0].GetTensorTypeAndShape();
            var shape = info.Shape;
            if (shape.Length != 4 || shape[0] != 1 || shape[1] != channels || shape[2] != tiles.Rows.Tile || shape[3] != tiles.Columns.Tile)
                throw new InvalidDataException($"The vae_encoder model '{ModelPath}' returned '{_output}' of shape [{string.Join(", ", shape)}] for a tile of {tileWidth}×{tileHeight} pixels, " +
                    $"expected [1, {channels}, {tiles.Rows.Tile}, {tiles.Columns.Tile}] (one latent per 8×8 pixels). Encode this model without tiling (VaeTiling.Off).");
            ReadOnlySpan<float> encoded;
            if (info.ElementDataType == TensorElementType.Float)
            {
                encoded = outputs[0].GetTensorDataAsSpan<float>();
            }
            else
            {
                converted ??= new float[channels * tiles.Rows.Tile * tiles.Columns.Tile];
                OrtTensor.ReadFloats(outputs[0], info.ElementDataType, converted);
                encoded = converted;
            }
            tiles.Accumulate(t, encoded, channels, 1, rowWeights, columnWeights, raw, line);
            onTile?.Invoke(t + 1, tiles.Count);
        }
        return raw;
    }
}

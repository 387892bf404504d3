using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.Diffusion.Runtime;

namespace MLNet.Diffusion.Vae;

/// <summary>
/// The VAE decoder (<c>vae_decoder/model.onnx</c>): latents / scaling factor (+ shift factor, SD3 and FLUX.1) → RGB in [−1, 1]
/// (<c>latent_sample</c> [B, 4, h, w] → <c>sample</c> [B, 3, 8h, 8w]). Images are decoded one at a time,
/// as diffusers' ONNX pipeline does, and a large image in overlapping tiles (<see cref="VaeTiling"/>,
/// <see cref="LatentTiles"/>), which bounds memory as the image grows.
/// </summary>
internal sealed class VaeDecoder : OnnxModelComponent
{
    private readonly TensorSpec _input;
    private readonly string _output;

    /// <summary>Loads the decoder and checks its contract.</summary>
    /// <param name="modelPath">The .onnx file.</param>
    /// <param name="sessions">Creates the session.</param>
    /// <param name="scalingFactor">The VAE scaling factor (0.18215 for SD 1.x/2.x, 0.13025 for SDXL).</param>
    /// <param name="shiftFactor">The VAE shift factor (SD3 0.0609, FLUX.1 0.1159), added after the division: diffusers'
    /// <c>latents / vae.config.scaling_factor + vae.config.shift_factor</c>; 0 for the other families.</param>
    public VaeDecoder(string modelPath, OnnxSessionFactory sessions, float scalingFactor, float shiftFactor = 0f) : base("vae_decoder", modelPath, sessions)
    {
        try
        {
            ShiftFactor = float.IsFinite(shiftFactor) ? shiftFactor : throw new ArgumentOutOfRangeException(nameof(shiftFactor), shiftFactor, "The VAE shift factor must be a finite number.");
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

    /// <summary>Added to the latents after the division (SD3, FLUX.1; else 0).</summary>
    public float ShiftFactor { get; }

    /// <summary>The latent channels the model declares (4; 16 for SD3 and FLUX.1), or null when symbolic.</summary>
    public int? LatentChannels => _input.Dimensions[1] > 0 ? _input.Dimensions[1] : null;

    /// <summary>The tile side in latents for an axis the model does not fix (<see cref="LatentTiles.DefaultTile"/>;
    /// smaller in tests).</summary>
    internal int TileSize
    {
        get => _tileSize;
        set => _tileSize = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "The VAE tile size must be at least 1 latent.");
    }

    private int _tileSize = LatentTiles.DefaultTile;

    /// <summary>
    /// Decodes one image's latents [C, h, w] and returns its pixels [3, H, W] in [−1, 1] with the image size, whole or
    /// in overlapping tiles (<paramref name="tiling"/>; see <see cref="VaeTiling"/>).
    /// </summary>
    /// <param name="latents">The latents, channel-major (not yet divided by <see cref="ScalingFactor"/>).</param>
    /// <param name="latentHeight">h.</param>
    /// <param name="latentWidth">w.</param>
    /// <param name="height">H of the result.</param>
    /// <param name="width">W of the result.</param>
    /// <param name="cancellationToken">Cancels the run in progress and stops before the next tile.</param>
    /// <param name="tiling">Whether to decode in tiles.</param>
    /// <param name="onTile">Called after each tile with the tiles done and the tiles in all (not called for a whole-image decode).</param>
    /// <exception cref="OperationCanceledException">Cancelled between tiles (a run stopped in progress throws ONNX Runtime's exception, as before).</exception>
    public float[] Decode(ReadOnlySpan<float> latents, int latentHeight, int latentWidth, out int height, out int width, CancellationToken cancellationToken = default,
        VaeTiling tiling = VaeTiling.Auto, Action<int, int>? onTile = null)
    {
        ThrowIfDisposed();
        cancellationToken.ThrowIfCancellationRequested();
        if (latentHeight < 1 || latentWidth < 1)
            throw new ArgumentOutOfRangeException(latentHeight < 1 ? nameof(latentHeight) : nameof(latentWidth), $"The latent size must be at least 1×1; got {latentHeight}×{latentWidth}.");
        int channels = latents.Length / (latentHeight * latentWidth);
        if (channels * latentHeight * latentWidth != latents.Length || channels < 1)
            throw new ArgumentException($"{latents.Length} latent values do not form [C, {latentHeight}, {latentWidth}].", nameof(latents));
        var tiles = LatentTiles.Choose(tiling, latentHeight, latentWidth, _input.Dimensions[2], _input.Dimensions[3], TileSize);
        return tiles is null
            ? DecodeWhole(latents, channels, latentHeight, latentWidth, out height, out width, cancellationToken)
            : DecodeTiles(latents, channels, tiles, out height, out width, cancellationToken, onTile);
    }

    private float[] DecodeWhole(ReadOnlySpan<float> latents, int channels, int latentHeight, int latentWidth, out int height, out int width, CancellationToken cancellationToken)
    {
        using var input = OrtTensor.Create(_input.ElementType, 1, channels, latentHeight, latentWidth);
        var scaled = new float[latents.Length];
        System.Numerics.Tensors.TensorPrimitives.Multiply(latents, 1f / ScalingFactor, scaled);
        if (ShiftFactor != 0) System.Numerics.Tensors.TensorPrimitives.Add(scaled, ShiftFactor, scaled);
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

    /// <summary>
    /// Decodes tile by tile (diffusers' <c>AutoencoderKL.tiled_decode</c>: each tile decoded alone, blended linearly
    /// across the overlaps, cropped to the image) into one image-sized buffer, the only allocation that grows with the
    /// image: the tile's input tensor and the scratch rows are made once, and every tile has the same shape, so ONNX
    /// Runtime reuses its memory plan and arena from tile to tile. The decoder's upscale factor (8 for SD's VAE) is
    /// read from the first tile's output.
    /// </summary>
    private float[] DecodeTiles(ReadOnlySpan<float> latents, int channels, LatentTiles tiles, out int height, out int width, CancellationToken cancellationToken, Action<int, int>? onTile)
    {
        int latentHeight = tiles.Rows.Length, latentWidth = tiles.Columns.Length;
        int tileHeight = tiles.Rows.Tile, tileWidth = tiles.Columns.Tile;
        using var input = OrtTensor.Create(_input.ElementType, 1, channels, tileHeight, tileWidth);
        var latentRow = new float[tileWidth];
        float inverse = 1f / ScalingFactor;
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(() => runOptions.Terminate = true);
        float[]? pixels = null, rowWeights = null, columnWeights = null, line = null, converted = null;
        int scale = 0;
        height = width = 0;
        for (int t = 0; t < tiles.Count; t++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (top, left, _, _) = tiles[t];
            for (int c = 0; c < channels; c++)
            {
                for (int y = 0; y < tileHeight; y++)
                {
                    System.Numerics.Tensors.TensorPrimitives.Multiply(latents.Slice((c * latentHeight + top + y) * latentWidth + left, tileWidth), inverse, latentRow);
                    if (ShiftFactor != 0) System.Numerics.Tensors.TensorPrimitives.Add(latentRow, ShiftFactor, latentRow);
                    input.Write(latentRow, (c * tileHeight + y) * tileWidth);
                }
            }
            using var outputs = Run(runOptions, ["latent_sample"], [input.Value], [_output]);
            var info = outputs[0].GetTensorTypeAndShape();
            var shape = info.Shape;
            if (pixels is null)
            {
                scale = shape.Length == 4 && shape[2] % tileHeight == 0 ? (int)(shape[2] / tileHeight) : 0;
                if (scale < 1 || shape[0] != 1 || shape[1] != 3 || shape[3] != (long)scale * tileWidth || (long)scale * latentHeight * scale * latentWidth * 3 > Array.MaxLength)
                    throw new InvalidDataException($"The vae_decoder model '{ModelPath}' returned '{_output}' of shape [{string.Join(", ", shape)}] for a tile of {tileWidth}×{tileHeight} latents, " +
                        "expected [1, 3, H, W] with H and W the same whole multiple of the tile's height and width. Decode this model without tiling (VaeTiling.Off).");
                height = scale * latentHeight;
                width = scale * latentWidth;
                pixels = new float[3 * height * width];
                rowWeights = tiles.Rows.Weights(scale);
                columnWeights = tiles.Columns.Weights(scale);
                line = new float[scale * tileWidth];
                if (info.ElementDataType != TensorElementType.Float) converted = new float[3 * scale * tileHeight * scale * tileWidth];
            }
            else if (shape.Length != 4 || shape[2] != (long)scale * tileHeight || shape[3] != (long)scale * tileWidth || shape[1] != 3)
            {
                throw new InvalidDataException($"The vae_decoder model '{ModelPath}' returned '{_output}' of shape [{string.Join(", ", shape)}] for tile {t + 1}, where the first tile gave [1, 3, {scale * tileHeight}, {scale * tileWidth}].");
            }
            ReadOnlySpan<float> decoded;
            if (converted is null)
            {
                decoded = outputs[0].GetTensorDataAsSpan<float>();
            }
            else
            {
                OrtTensor.ReadFloats(outputs[0], info.ElementDataType, converted);
                decoded = converted;
            }
            tiles.Accumulate(t, decoded, 3, scale, rowWeights, columnWeights, pixels, line);
            onTile?.Invoke(t + 1, tiles.Count);
        }
        return pixels!;
    }
}

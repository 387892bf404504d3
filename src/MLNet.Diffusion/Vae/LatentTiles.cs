using System.Numerics.Tensors;

namespace MLNet.Diffusion.Vae;

/// <summary>
/// The tiles of one image's latent grid (rows × columns of <see cref="TileAxis"/>) and the choice of whether to tile
/// at all (<see cref="Choose"/>). A tile's output is added into the image-sized result with its row weight times its
/// column weight; since each axis's weights sum to one, so do the products, and the result is the tiles blended
/// linearly across every overlap and cropped to the image.
/// </summary>
internal sealed class LatentTiles
{
    /// <summary>The tile side, in latents: 64 (512 pixels), SD 1.x's VAE <c>sample_size</c>, which diffusers uses as
    /// its tile (<c>tile_latent_min_size</c>).</summary>
    public const int DefaultTile = 64;

    /// <summary>The least overlap of neighbouring tiles: a quarter of the tile (diffusers' <c>tile_overlap_factor</c> 0.25).</summary>
    public const double OverlapFactor = 0.25;

    /// <summary>The area above which <see cref="VaeTiling.Auto"/> tiles: 128×128 latents, a 1024×1024 image.</summary>
    public const long AutoThreshold = 128 * 128;

    private LatentTiles(TileAxis rows, TileAxis columns)
    {
        Rows = rows;
        Columns = columns;
    }

    /// <summary>How the latent height is cut.</summary>
    public TileAxis Rows { get; }

    /// <summary>How the latent width is cut.</summary>
    public TileAxis Columns { get; }

    /// <summary>The number of tiles.</summary>
    public int Count => Rows.Count * Columns.Count;

    /// <summary>Plans <paramref name="height"/>×<paramref name="width"/> latents in tiles of the given size (square
    /// unless the model fixes one axis), each overlapping its neighbours by at least a quarter of its side.</summary>
    public static LatentTiles Plan(int height, int width, int tileHeight, int tileWidth) =>
        new(new TileAxis(height, tileHeight, (int)(tileHeight * OverlapFactor)), new TileAxis(width, tileWidth, (int)(tileWidth * OverlapFactor)));

    /// <summary>
    /// Whether to tile <paramref name="height"/>×<paramref name="width"/> latents, and how: null to run the whole image.
    /// </summary>
    /// <param name="tiling">The caller's choice.</param>
    /// <param name="height">Latent height.</param>
    /// <param name="width">Latent width.</param>
    /// <param name="fixedHeight">The latent height the model's graph fixes, or 0 (or less) when it is symbolic.</param>
    /// <param name="fixedWidth">The latent width the model fixes, or 0 (or less).</param>
    /// <param name="tile">The tile side along an axis the model does not fix (<see cref="DefaultTile"/>).</param>
    /// <returns>
    /// Null for <see cref="VaeTiling.Off"/>, for an image that fits one tile, for <see cref="VaeTiling.Auto"/> at
    /// <see cref="AutoThreshold"/> latents or fewer on a model that does not fix its size, and where a fixed size is
    /// larger than the image (such a model cannot run a part of the image, so the whole is run and the model's own
    /// check reports the mismatch); otherwise the plan, whose tile along a fixed axis is the fixed size.
    /// </returns>
    public static LatentTiles? Choose(VaeTiling tiling, int height, int width, int fixedHeight, int fixedWidth, int tile = DefaultTile)
    {
        if (tiling is not (VaeTiling.Auto or VaeTiling.On or VaeTiling.Off))
            throw new ArgumentOutOfRangeException(nameof(tiling), tiling, "VAE tiling must be Auto, On or Off.");
        if (tiling == VaeTiling.Off) return null;
        bool fixedSize = fixedHeight > 0 || fixedWidth > 0;
        int tileHeight = fixedHeight > 0 ? fixedHeight : tile, tileWidth = fixedWidth > 0 ? fixedWidth : tile;
        if ((fixedHeight > 0 && height < fixedHeight) || (fixedWidth > 0 && width < fixedWidth)) return null; // cannot be cut to the fixed size
        if (height <= tileHeight && width <= tileWidth) return null;               // one tile is the whole image
        if (tiling == VaeTiling.Auto && !fixedSize && (long)height * width <= AutoThreshold) return null;
        return Plan(height, width, tileHeight, tileWidth);
    }

    /// <summary>The latent rectangle of tile <paramref name="index"/> (row-major): its top, left, height and width.</summary>
    public (int Top, int Left, int Height, int Width) this[int index] =>
        (Rows.Starts[index / Columns.Count], Columns.Starts[index % Columns.Count], Rows.Tile, Columns.Tile);

    /// <summary>
    /// Adds tile <paramref name="index"/>'s output (<paramref name="channels"/> planes of <c>Tile·scale</c> rows and
    /// columns) into <paramref name="output"/> (<paramref name="channels"/> planes of the whole image at
    /// <paramref name="scale"/>), weighted by <paramref name="rowWeights"/> and <paramref name="columnWeights"/> (from
    /// <see cref="TileAxis.Weights"/> at the same scale). <paramref name="scratch"/> holds one tile row.
    /// </summary>
    public void Accumulate(int index, ReadOnlySpan<float> tile, int channels, int scale, ReadOnlySpan<float> rowWeights, ReadOnlySpan<float> columnWeights,
        Span<float> output, Span<float> scratch)
    {
        int row = index / Columns.Count, column = index % Columns.Count;
        int tileHeight = Rows.Tile * scale, tileWidth = Columns.Tile * scale;
        int top = Rows.Starts[row] * scale, left = Columns.Starts[column] * scale;
        int imageHeight = Rows.Length * scale, imageWidth = Columns.Length * scale;
        var wy = rowWeights.Slice(row * tileHeight, tileHeight);
        var wx = columnWeights.Slice(column * tileWidth, tileWidth);
        var line = scratch[..tileWidth];
        for (int c = 0; c < channels; c++)
        {
            for (int y = 0; y < tileHeight; y++)
            {
                TensorPrimitives.Multiply(tile.Slice((c * tileHeight + y) * tileWidth, tileWidth), wx, line);
                var target = output.Slice((c * imageHeight + top + y) * imageWidth + left, tileWidth);
                TensorPrimitives.MultiplyAdd(line, wy[y], target, target);
            }
        }
    }
}

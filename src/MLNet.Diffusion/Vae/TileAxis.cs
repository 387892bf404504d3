namespace MLNet.Diffusion.Vae;

/// <summary>
/// How one axis of a latent grid (its height or width) is cut into tiles: every tile has the same size
/// (<see cref="Tile"/>, or the whole axis when it is no longer than that), the first starts at 0, the last ends at the
/// axis's end, and the starts in between are evenly spaced, so neighbours overlap by at least <see cref="Overlap"/>
/// latents. With the overlap at a quarter of the tile this is diffusers' layout (<c>AutoencoderKL.tiled_decode</c>:
/// a stride of <c>tile·(1 − tile_overlap_factor)</c> with <c>tile_overlap_factor = 0.25</c>), except that diffusers
/// cuts the last tiles short at the image's edge, where here they move back to stay whole, so that one model input
/// shape serves every tile (and a VAE exported for one size can be tiled).
/// </summary>
internal sealed class TileAxis
{
    /// <summary>Plans an axis of <paramref name="length"/> latents in tiles of <paramref name="tile"/> overlapping by
    /// at least <paramref name="overlap"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A length or tile below 1, or an overlap outside [0, tile).</exception>
    public TileAxis(int length, int tile, int overlap)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(length, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tile, 1);
        if (overlap < 0 || overlap >= tile)
            throw new ArgumentOutOfRangeException(nameof(overlap), overlap, $"The tile overlap must be from 0 to {tile - 1} latents (less than the tile).");
        Length = length;
        Tile = Math.Min(tile, length);
        Overlap = overlap;
        int count = length <= tile ? 1 : 1 + (length - tile + (tile - overlap) - 1) / (tile - overlap);
        var starts = new int[count];
        for (int k = 1; k < count; k++)
            starts[k] = (int)(((long)k * (length - Tile) + (count - 1) / 2) / (count - 1)); // rounded k·(L − T)/(n − 1)
        Starts = starts;
    }

    /// <summary>The axis's length in latents.</summary>
    public int Length { get; }

    /// <summary>The size of every tile along the axis, in latents.</summary>
    public int Tile { get; }

    /// <summary>The least overlap of two neighbouring tiles, in latents.</summary>
    public int Overlap { get; }

    /// <summary>Where each tile starts, in latents, in increasing order.</summary>
    public IReadOnlyList<int> Starts { get; }

    /// <summary>The number of tiles.</summary>
    public int Count => Starts.Count;

    /// <summary>
    /// The blend weights at <paramref name="scale"/> output values per latent (8 for a decoder's pixels, 1 for an
    /// encoder's latents): <c>Count × Tile·scale</c> values, tile k's at <c>[k·Tile·scale, (k+1)·Tile·scale)</c>.
    /// Across the overlap of two neighbours the earlier tile's weight falls linearly and the later one's rises (at
    /// pixel centres, so no tile's edge value gets the whole weight nor none), as diffusers' <c>blend_v</c> and
    /// <c>blend_h</c> do; then every position's weights are divided by their sum, so that they sum to one (to float rounding) even
    /// where three tiles meet (short axes with a large overlap).
    /// </summary>
    public float[] Weights(int scale)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(scale, 1);
        int size = Tile * scale, count = Count;
        var weights = new float[count * size];
        var sums = new double[Length * scale];
        for (int k = 0; k < count; k++)
        {
            int start = Starts[k] * scale, end = start + size;
            int previousEnd = k > 0 ? Starts[k - 1] * scale + size : start; // the rise spans [start, previousEnd)
            int nextStart = k + 1 < count ? Starts[k + 1] * scale : end;     // the fall spans [nextStart, end)
            for (int i = 0; i < size; i++)
            {
                int p = start + i;
                double w = 1;
                if (p < previousEnd) w *= (p - start + 0.5) / (previousEnd - start);
                if (p >= nextStart) w *= (end - p - 0.5) / (end - nextStart);
                weights[k * size + i] = (float)w;
                sums[p] += w;
            }
        }
        for (int k = 0; k < count; k++)
        {
            int start = Starts[k] * scale;
            for (int i = 0; i < size; i++) weights[k * size + i] = (float)(weights[k * size + i] / sums[start + i]);
        }
        return weights;
    }
}

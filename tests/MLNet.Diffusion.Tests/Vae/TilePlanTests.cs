using MLNet.Diffusion.Vae;

namespace MLNet.Diffusion.Tests.Vae;

/// <summary>The tile layout of one axis (<see cref="TileAxis"/>) and the choice to tile (<see cref="LatentTiles.Choose"/>).</summary>
public sealed class TilePlanTests
{
    [Theory]
    [InlineData(100, 64, 16, new[] { 0, 36 })]            // 2 tiles: the second moves back to end at 100
    [InlineData(200, 64, 16, new[] { 0, 45, 91, 136 })]   // stride ≤ 48 = 64 − 16, evenly spread over 136
    [InlineData(112, 64, 16, new[] { 0, 48 })]            // exactly diffusers' stride
    [InlineData(64, 64, 16, new[] { 0 })]
    [InlineData(40, 64, 16, new[] { 0 })]                 // shorter than a tile: one tile, the whole axis
    [InlineData(9, 4, 1, new[] { 0, 3, 5 })]             // 2.5 rounds up
    public void TileStartsAreEvenlySpreadAndTheLastTileEndsAtTheEdge(int length, int tile, int overlap, int[] starts)
    {
        var axis = new TileAxis(length, tile, overlap);
        Assert.Equal(starts, axis.Starts);
        Assert.Equal(Math.Min(tile, length), axis.Tile);
    }

    [Theory]
    [InlineData(1, 64, 16)]
    [InlineData(65, 64, 16)]
    [InlineData(113, 64, 16)]
    [InlineData(129, 64, 16)]
    [InlineData(512, 64, 16)]
    [InlineData(500, 96, 24)]
    [InlineData(37, 5, 1)]
    [InlineData(30, 3, 0)]
    [InlineData(11, 8, 7)]
    public void TilesCoverEveryPositionOverlapEnoughAndTheirWeightsSumToOne(int length, int tile, int overlap)
    {
        var axis = new TileAxis(length, tile, overlap);
        Assert.Equal(0, axis.Starts[0]);
        Assert.Equal(length, axis.Starts[^1] + axis.Tile);
        for (int k = 1; k < axis.Count; k++)
        {
            Assert.True(axis.Starts[k] > axis.Starts[k - 1], $"start {k} does not advance");
            Assert.True(axis.Starts[k - 1] + axis.Tile - axis.Starts[k] >= overlap, $"tiles {k - 1} and {k} overlap by less than {overlap}");
        }
        foreach (int scale in new[] { 1, 8 })
        {
            var weights = axis.Weights(scale);
            int size = axis.Tile * scale;
            Assert.Equal(axis.Count * size, weights.Length);
            var sums = new double[length * scale];
            var covered = new int[length * scale];
            for (int k = 0; k < axis.Count; k++)
                for (int i = 0; i < size; i++)
                {
                    Assert.True(weights[k * size + i] > 0 && weights[k * size + i] <= 1, $"weight {weights[k * size + i]} at tile {k}, offset {i}");
                    sums[axis.Starts[k] * scale + i] += weights[k * size + i];
                    covered[axis.Starts[k] * scale + i]++;
                }
            for (int p = 0; p < sums.Length; p++)
            {
                Assert.True(covered[p] >= 1, $"position {p} is in no tile");
                Assert.True(Math.Abs(sums[p] - 1) < 1e-6, $"weights at {p} (scale {scale}) sum to {sums[p]}");
            }
        }
    }

    [Fact]
    public void AcrossAnOverlapTheWeightsRiseAndFallLinearlyAndAreOneElsewhere()
    {
        var axis = new TileAxis(112, 64, 16);   // tiles [0, 64) and [48, 112): the overlap is latents 48 … 63
        var w = axis.Weights(8);               // pixels: overlap 384 … 511 (128 pixels)
        int size = 512;
        for (int p = 0; p < 384; p++) Assert.Equal(1f, w[p]);
        for (int i = 0; i < 128; i++)
        {
            Assert.Equal(1 - (i + 0.5f) / 128, w[384 + i], 5);   // the first tile falls
            Assert.Equal((i + 0.5f) / 128, w[size + i], 5);      // the second rises
        }
        for (int i = 128; i < size; i++) Assert.Equal(1f, w[size + i]);
    }

    [Theory]
    [InlineData(0, 64, 16)]
    [InlineData(10, 0, 0)]
    [InlineData(10, 8, 8)]
    [InlineData(10, 8, -1)]
    public void ImpossibleAxesAreRefused(int length, int tile, int overlap) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new TileAxis(length, tile, overlap));

    [Theory]
    [InlineData(128, 128, false)]   // 1024×1024: SDXL's own size is decoded whole
    [InlineData(64, 256, false)]    // 512×2048: 16 384 latents, not more
    [InlineData(128, 129, true)]
    [InlineData(136, 128, true)]
    [InlineData(96, 192, true)]     // 768×1536
    [InlineData(65, 65, false)]
    public void AutoTilesAboveOneMegapixel(int height, int width, bool tiled) =>
        Assert.Equal(tiled, LatentTiles.Choose(VaeTiling.Auto, height, width, 0, 0) is not null);

    [Theory]
    [InlineData(64, 64, false)]
    [InlineData(40, 30, false)]
    [InlineData(150, 40, true)]     // one axis shorter than a tile: one column, the whole width
    [InlineData(65, 64, true)]
    [InlineData(64, 65, true)]
    [InlineData(128, 128, true)]
    public void OnTilesEveryImageLargerThanOneTile(int height, int width, bool tiled) =>
        Assert.Equal(tiled, LatentTiles.Choose(VaeTiling.On, height, width, 0, 0) is not null);

    [Theory]
    [InlineData(65, 65)]
    [InlineData(512, 512)]
    public void OffNeverTiles(int height, int width)
    {
        Assert.Null(LatentTiles.Choose(VaeTiling.Off, height, width, 0, 0));
        Assert.Null(LatentTiles.Choose(VaeTiling.Off, height, width, 64, 64));
    }

    [Fact]
    public void AModelWithAFixedSizeIsTiledAtThatSizeWheneverTheImageIsLarger()
    {
        var plan = LatentTiles.Choose(VaeTiling.Auto, 100, 80, 64, 48);   // small enough that a symbolic model runs it whole
        Assert.NotNull(plan);
        Assert.Equal((64, 48), (plan.Rows.Tile, plan.Columns.Tile));
        Assert.Equal((16, 12), (plan.Rows.Overlap, plan.Columns.Overlap));
        Assert.Null(LatentTiles.Choose(VaeTiling.Auto, 64, 48, 64, 48));   // the fixed size itself: one run
        Assert.Null(LatentTiles.Choose(VaeTiling.On, 40, 80, 64, 64));     // smaller than the fixed size: cannot be cut to it
        Assert.Null(LatentTiles.Choose(VaeTiling.Off, 100, 80, 64, 64));
        var wide = LatentTiles.Choose(VaeTiling.On, 64, 200, 64, 0, tile: 32);   // only the height fixed
        Assert.Equal((64, 32, 1), (wide!.Rows.Tile, wide.Columns.Tile, wide.Rows.Count));
    }

    [Fact]
    public void AnUnknownTilingValueIsRefused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => LatentTiles.Choose((VaeTiling)7, 200, 200, 0, 0));
}

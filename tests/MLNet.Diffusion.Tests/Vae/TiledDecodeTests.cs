using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Vae;

namespace MLNet.Diffusion.Tests.Vae;

/// <summary>Tiled VAE decoding (<see cref="VaeDecoder.Decode"/> with <see cref="VaeTiling"/>) against whole-image decoding.</summary>
public sealed class TiledDecodeTests : IDisposable
{
    /// <summary>2/255 of the [0, 1] range of an 8-bit image, on the decoder's [−1, 1] scale.</summary>
    private const float Tolerance = 2 * 2f / 255;

    private readonly LocalVae _vae = new();

    [Theory]
    [InlineData(100, 72)]   // 800×576 pixels: 2×2 tiles of 64 latents, neither side a multiple of the tile
    [InlineData(65, 130)]   // 2×3 tiles whose overlaps are nearly the whole tile along the height
    [InlineData(150, 40)]   // one column narrower than a tile
    public void TiledDecodeEqualsWholeDecodeOnALocalDecoder(int latentHeight, int latentWidth)
    {
        using var decoder = _vae.Decoder();
        var latents = LocalVae.Latents(latentHeight, latentWidth);
        var whole = decoder.Decode(latents, latentHeight, latentWidth, out int h0, out int w0, default, VaeTiling.Off);
        int tiles = 0;
        var tiled = decoder.Decode(latents, latentHeight, latentWidth, out int h1, out int w1, default, VaeTiling.On, (done, total) => tiles = total);
        Assert.Equal((latentHeight * 8, latentWidth * 8), (h0, w0));
        Assert.Equal((h0, w0), (h1, w1));
        Assert.True(tiles > 1, $"{tiles} tiles");
        float difference = LocalVae.MaxDifference(whole, tiled);
        Assert.True(difference <= Tolerance, $"tiled and whole decodes differ by {difference} (at most {Tolerance})");
        Assert.True(difference > 0, "the tiles' edge pixels should differ a little from the whole image's (the 3×3 conv's zero padding)");
    }

    [Fact]
    public void TheTestModelsFloat16DecoderTilesToTheSameImage()
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { Fp16 = true });
        using var decoder = new VaeDecoder(Path.Combine(folder.Path, "vae_decoder", "model.onnx"), new OnnxSessionFactory(new DiffusionRuntimeOptions()), 0.18215f);
        var latents = LocalVae.Latents(90, 70);
        var whole = decoder.Decode(latents, 90, 70, out _, out _, default, VaeTiling.Off);
        var tiled = decoder.Decode(latents, 90, 70, out _, out _, default, VaeTiling.On);
        Assert.True(LocalVae.MaxDifference(whole, tiled) <= 1e-3f, $"differ by {LocalVae.MaxDifference(whole, tiled)}");
    }

    [Theory]
    [InlineData(128, 128, 0)]     // 1024×1024: whole
    [InlineData(136, 128, 9)]     // more than a megapixel: 3×3 tiles
    public void AutoDecodesWholeUpToOneMegapixelAndTilesAbove(int latentHeight, int latentWidth, int expectedTiles)
    {
        using var decoder = _vae.Decoder();
        var latents = LocalVae.Latents(latentHeight, latentWidth);
        int tiles = 0;
        var auto = decoder.Decode(latents, latentHeight, latentWidth, out _, out _, default, VaeTiling.Auto, (_, total) => tiles = total);
        Assert.Equal(expectedTiles, tiles);
        var whole = decoder.Decode(latents, latentHeight, latentWidth, out _, out _, default, VaeTiling.Off, (_, _) => Assert.Fail("Off decoded a tile"));
        if (expectedTiles == 0) Assert.Equal(whole, auto);
        else Assert.True(LocalVae.MaxDifference(whole, auto) <= Tolerance);
    }

    [Fact]
    public void TheDefaultIsAuto()
    {
        using var decoder = _vae.Decoder();
        var latents = LocalVae.Latents(136, 128);
        var byDefault = decoder.Decode(latents, 136, 128, out _, out _);
        Assert.Equal(decoder.Decode(latents, 136, 128, out _, out _, default, VaeTiling.Auto), byDefault);
        Assert.NotEqual(decoder.Decode(latents, 136, 128, out _, out _, default, VaeTiling.Off), byDefault);
    }

    [Fact]
    public void ADecoderFixedToOneSizeIsTiledAtThatSizeAndMatchesTheSameWeightsRunWhole()
    {
        using var fixedDecoder = _vae.Decoder(seed: 5, fixedLatent: (64, 64));
        using var symbolic = _vae.Decoder(seed: 5);
        var latents = LocalVae.Latents(100, 80);
        int tiles = 0;
        var tiled = fixedDecoder.Decode(latents, 100, 80, out int h, out int w, default, VaeTiling.Auto, (_, total) => tiles = total);
        Assert.Equal((800, 640, 4), (h, w, tiles));
        var whole = symbolic.Decode(latents, 100, 80, out _, out _, default, VaeTiling.Off);
        Assert.True(LocalVae.MaxDifference(whole, tiled) <= Tolerance);
        Assert.Throws<ModelRunException>(() => fixedDecoder.Decode(latents, 100, 80, out _, out _, default, VaeTiling.Off));
    }

    [Fact]
    public void CancellationStopsBeforeTheNextTile()
    {
        using var decoder = _vae.Decoder();
        using var cts = new CancellationTokenSource();
        var reported = new List<int>();
        Assert.ThrowsAny<OperationCanceledException>(() => decoder.Decode(LocalVae.Latents(150, 150), 150, 150, out _, out _, cts.Token, VaeTiling.On, (done, _) =>
        {
            reported.Add(done);
            cts.Cancel();
        }));
        Assert.Equal([1], reported);
    }

    [Fact]
    public void ManagedMemoryDoesNotGrowWithTheNumberOfTiles()
    {
        using var decoder = _vae.Decoder();
        decoder.TileSize = 16;   // many small tiles: a tile-sized copy per tile would show
        long Extra(int h, int w, out int tiles)
        {
            var latents = LocalVae.Latents(h, w);
            int count = 0;
            decoder.Decode(latents, h, w, out _, out _, default, VaeTiling.On, (_, total) => count = total); // warm-up
            long before = GC.GetAllocatedBytesForCurrentThread();
            var pixels = decoder.Decode(latents, h, w, out _, out _, default, VaeTiling.On);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            tiles = count;
            return allocated - (long)pixels.Length * sizeof(float);
        }
        long few = Extra(40, 40, out int fewTiles), many = Extra(160, 160, out int manyTiles);
        Assert.True(manyTiles >= 8 * fewTiles, $"{fewTiles} and {manyTiles} tiles");
        // About 0.8 KB per tile (ONNX Runtime's managed wrappers of each run); one tile's pixels would be 196 KB.
        long perTile = (many - few) / (manyTiles - fewTiles);
        Assert.True(perTile < 4096, $"beyond the image, {few} bytes for {fewTiles} tiles and {many} for {manyTiles}: {perTile} bytes per tile");
    }

    public void Dispose() => _vae.Dispose();
}

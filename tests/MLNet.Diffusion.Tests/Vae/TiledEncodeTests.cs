using MLNet.Diffusion.Noise;
using MLNet.Diffusion.Runtime;
using MLNet.Diffusion.Tests.TestModels;
using MLNet.Diffusion.Vae;

namespace MLNet.Diffusion.Tests.Vae;

/// <summary>Tiled VAE encoding (<see cref="VaeEncoder.Encode"/> with <see cref="VaeTiling"/>) against whole-image encoding.</summary>
public sealed class TiledEncodeTests : IDisposable
{
    private const float Tolerance = 2f / 255;

    private readonly LocalVae _vae = new();

    [Theory]
    [InlineData(800, 576)]   // 100×72 latents: 2×2 tiles of 512 pixels, sides not multiples of the tile
    [InlineData(520, 1040)]
    [InlineData(1200, 320)]  // one column narrower than a tile
    public void TiledEncodeEqualsWholeEncodeOnALocalEncoder(int height, int width)
    {
        using var encoder = _vae.Encoder(parameters: false);
        var image = LocalVae.Image(height, width);
        var whole = encoder.Encode(image, height, width, LocalVae.NoNoise, out int h0, out int w0, default, VaeTiling.Off);
        int tiles = 0;
        var tiled = encoder.Encode(image, height, width, LocalVae.NoNoise, out int h1, out int w1, default, VaeTiling.On, (_, total) => tiles = total);
        Assert.Equal((height / 8, width / 8), (h0, w0));
        Assert.Equal((h0, w0), (h1, w1));
        Assert.True(tiles > 1, $"{tiles} tiles");
        float difference = LocalVae.MaxDifference(whole, tiled);
        Assert.True(difference <= Tolerance, $"tiled and whole encodes differ by {difference} (at most {Tolerance})");
        Assert.True(difference > 0, "the tiles' edge latents should differ a little from the whole image's (the 3×3 conv's zero padding)");
    }

    [Fact]
    public void ForLatentParametersTheMeanAndLogVarianceAreBlendedThenSampledOnce()
    {
        using var encoder = _vae.Encoder(parameters: true);
        Assert.True(encoder.ReturnsDistribution);
        var image = LocalVae.Image(800, 576);
        var whole = encoder.Encode(image, 800, 576, new GaussianNoise(11), out _, out _, default, VaeTiling.Off);
        int tiles = 0;
        var tiled = encoder.Encode(image, 800, 576, new GaussianNoise(11), out _, out _, default, VaeTiling.On, (_, total) => tiles = total);
        Assert.Equal(4, tiles);
        // One draw of the whole image's noise: the same seed gives the same sample wherever the tiles fall.
        Assert.True(LocalVae.MaxDifference(whole, tiled) <= 2 * Tolerance, $"differ by {LocalVae.MaxDifference(whole, tiled)}");
        var mean = encoder.Encode(image, 800, 576, LocalVae.NoNoise, out _, out _, default, VaeTiling.On);
        Assert.True(LocalVae.MaxDifference(mean, tiled) > 0.1f, "the sample should differ from the mean (the log-variance is large enough to matter)");
    }

    [Theory]
    [InlineData(VaeEncoderForm.LatentSample)]
    [InlineData(VaeEncoderForm.LatentParameters)]
    public void TheTestModelsFloat16EncoderTilesToTheSameLatents(VaeEncoderForm form)
    {
        using var folder = TestModelFactory.CreateTemp(new TestModelOptions { Fp16 = true, Encoder = form });
        using var encoder = new VaeEncoder(Path.Combine(folder.Path, "vae_encoder", "model.onnx"), new OnnxSessionFactory(new DiffusionRuntimeOptions()), 0.18215f);
        var image = LocalVae.Image(720, 560);
        var whole = encoder.Encode(image, 720, 560, new GaussianNoise(5), out _, out _, default, VaeTiling.Off);
        var tiled = encoder.Encode(image, 720, 560, new GaussianNoise(5), out _, out _, default, VaeTiling.On);
        Assert.True(LocalVae.MaxDifference(whole, tiled) <= 1e-3f, $"differ by {LocalVae.MaxDifference(whole, tiled)}");
    }

    [Theory]
    [InlineData(1024, 1024, VaeTiling.Auto, 0)]
    [InlineData(1088, 1024, VaeTiling.Auto, 9)]
    [InlineData(1088, 1024, VaeTiling.Off, 0)]
    [InlineData(1084, 1024, VaeTiling.On, 0)]   // not a multiple of 8: whole
    [InlineData(520, 512, VaeTiling.On, 2)]
    public void TilesFollowTheSetting(int height, int width, VaeTiling tiling, int expectedTiles)
    {
        using var encoder = _vae.Encoder(parameters: false);
        int tiles = 0;
        encoder.Encode(LocalVae.Image(height, width), height, width, LocalVae.NoNoise, out _, out _, default, tiling, (_, total) => tiles = total);
        Assert.Equal(expectedTiles, tiles);
    }

    [Fact]
    public void AnEncoderFixedToOneSizeIsTiledAtThatSize()
    {
        using var fixedEncoder = _vae.Encoder(parameters: false, seed: 6, fixedPixels: (512, 512));
        using var symbolic = _vae.Encoder(parameters: false, seed: 6);
        var image = LocalVae.Image(800, 640);
        int tiles = 0;
        var tiled = fixedEncoder.Encode(image, 800, 640, LocalVae.NoNoise, out int h, out int w, default, VaeTiling.Auto, (_, total) => tiles = total);
        Assert.Equal((100, 80, 4), (h, w, tiles));
        var whole = symbolic.Encode(image, 800, 640, LocalVae.NoNoise, out _, out _, default, VaeTiling.Off);
        Assert.True(LocalVae.MaxDifference(whole, tiled) <= Tolerance);
    }

    [Fact]
    public void CancellationStopsBeforeTheNextTile()
    {
        using var encoder = _vae.Encoder(parameters: true);
        using var cts = new CancellationTokenSource();
        var reported = new List<int>();
        Assert.ThrowsAny<OperationCanceledException>(() => encoder.Encode(LocalVae.Image(1200, 1200), 1200, 1200, LocalVae.NoNoise, out _, out _, cts.Token, VaeTiling.On, (done, _) =>
        {
            reported.Add(done);
            cts.Cancel();
        }));
        Assert.Equal([1], reported);
    }

    public void Dispose() => _vae.Dispose();
}

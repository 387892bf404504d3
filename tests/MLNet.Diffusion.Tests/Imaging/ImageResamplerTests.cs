using Microsoft.ML.Data;
using MLNet.Diffusion.Imaging;

namespace MLNet.Diffusion.Tests.Imaging;

public class ImageResamplerTests
{
    [Fact]
    public void SameSizeIsACopy()
    {
        float[] src = [1, 2, 3, 4, 5, 6];
        var dst = ImageResampler.Bilinear(src, 1, 3, 2, 3, 2);
        Assert.Equal(src, dst);
        Assert.NotSame(src, dst);
    }

    [Fact]
    public void UpscalingInterpolatesBetweenPixelCentres()
    {
        // PIL: Image.fromarray(np.float32([[0, 1]]), "F").resize((4, 1), Image.BILINEAR) → [0, .25, .75, 1].
        var dst = ImageResampler.Bilinear([0f, 1f], 1, 2, 1, 4, 1);
        Assert.Equal([0f, 0.25f, 0.75f, 1f], dst);
    }

    [Fact]
    public void DownscalingAveragesEverySourcePixel()
    {
        // ×½ widens the triangle to 4 taps: interior weights 1/8, 3/8, 3/8, 1/8; at the edges the in-range taps are renormalised.
        float[] row = [8, 0, 0, 0, 8, 0, 0, 16];
        var dst = ImageResampler.Bilinear(row, 1, 8, 1, 4, 1);
        Assert.Equal(8 * 0.75 / 1.75, dst[0], 5);
        Assert.Equal(8 * 0.125 / 1.0, dst[1], 5);
        Assert.Equal(8 * 0.375, dst[2], 5);
        Assert.Equal(16 * 0.75 / 1.75, dst[3], 5);
        // A large shrink still sees a single bright pixel (a two-tap bilinear would miss it).
        var dot = new float[64];
        dot[37] = 64;
        Assert.True(ImageResampler.Bilinear(dot, 1, 64, 1, 4, 1).Sum() > 3);
    }

    [Fact]
    public void ConstantPlanesStayConstantAndChannelsStaySeparate()
    {
        var src = new float[3 * 5 * 7];
        for (int c = 0; c < 3; c++) Array.Fill(src, c - 0.5f, c * 35, 35);
        var dst = ImageResampler.Bilinear(src, 3, 7, 5, 16, 3);
        for (int c = 0; c < 3; c++)
            Assert.All(dst.Skip(c * 48).Take(48), v => Assert.Equal(c - 0.5f, v, 6));
    }

    [Fact]
    public void RowsAndColumnsAreResizedIndependently()
    {
        // A vertical ramp stretched horizontally keeps each row's value.
        var src = new float[4 * 2];
        for (int y = 0; y < 4; y++) { src[2 * y] = y; src[2 * y + 1] = y; }
        var dst = ImageResampler.Bilinear(src, 1, 2, 4, 6, 4);
        for (int y = 0; y < 4; y++)
            Assert.All(dst.Skip(6 * y).Take(6), v => Assert.Equal(y, v, 6));
    }

    [Fact]
    public void BadShapesAreRefused()
    {
        Assert.Throws<ArgumentException>(() => ImageResampler.Bilinear(new float[5], 1, 2, 2, 4, 4));
        Assert.Throws<ArgumentException>(() => ImageResampler.Bilinear(new float[4], 1, 2, 2, 0, 4));
    }

    [Fact]
    public void ImagesOfAnySizeBecomeTensorsOfTheRequestedSize()
    {
        var rgba = new byte[3 * 2 * 4];
        for (int i = 0; i < 6; i++) { rgba[4 * i] = 255; rgba[4 * i + 1] = 0; rgba[4 * i + 2] = 51; rgba[4 * i + 3] = 7; }
        using var image = MLImage.CreateFromPixels(3, 2, MLPixelFormat.Rgba32, rgba);
        var pixels = ImageTensor.FromImageResized(image, 8, 16);
        Assert.Equal(3 * 8 * 16, pixels.Length);
        Assert.All(pixels.Take(128), v => Assert.Equal(1f, v, 6));
        Assert.All(pixels.Skip(128).Take(128), v => Assert.Equal(-1f, v, 6));
        Assert.All(pixels.Skip(256), v => Assert.Equal(51 / 127.5f - 1, v, 6));
    }

    [Fact]
    public void MasksAreGreyLevelsBinarisedAtHalf()
    {
        // Left column pure green (L = 0.587: repaint), right column pure red (L = 0.299: keep), alpha ignored.
        byte[] rgba = [0, 255, 0, 0, 255, 0, 0, 255, 0, 255, 0, 0, 255, 0, 0, 0];
        using var mask = MLImage.CreateFromPixels(2, 2, MLPixelFormat.Rgba32, rgba);
        var m = ImageTensor.MaskFromImage(mask, 4, 2);
        Assert.Equal([1f, 1f, 0f, 0f, 1f, 1f, 0f, 0f], m);
    }
}

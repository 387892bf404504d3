using System.Text.Json;
using MLNet.Diffusion.Denoising;
using Xunit;

namespace MLNet.Diffusion.Tests.Pipeline;

/// <summary>FLUX's 2×2 latent packing and image ids against diffusers' torch operations (Data/reference/make_flux_packing_reference.py).</summary>
public sealed class LatentPackingTests
{
    private static readonly JsonElement Reference = JsonDocument.Parse(File.ReadAllText(
        Path.Combine(AppContext.BaseDirectory, "Data", "reference", "flux_packing_reference.json"))).RootElement;

    [Fact]
    public void PackingAndIdsEqualDiffusers()
    {
        int b = Reference.GetProperty("batch").GetInt32(), c = Reference.GetProperty("channels").GetInt32();
        int h = Reference.GetProperty("height").GetInt32(), w = Reference.GetProperty("width").GetInt32();
        var latents = Enumerable.Range(0, b * c * h * w).Select(i => (float)i).ToArray();
        var packed = new float[latents.Length];
        LatentPacking.Pack(latents, packed, b, c, h, w);
        Assert.Equal(Reference.GetProperty("packed").EnumerateArray().Select(e => (float)e.GetInt32()), packed);
        Assert.Equal(Reference.GetProperty("image_ids").EnumerateArray().Select(e => (float)e.GetInt32()), LatentPacking.ImageIds(h, w));

        var unpacked = new float[latents.Length];
        LatentPacking.Unpack(packed, unpacked, b, c, h, w);
        Assert.Equal(latents, unpacked);
    }

    [Theory]
    [InlineData(3, 4)]
    [InlineData(4, 5)]
    public void OddLatentSidesAreRefused(int height, int width)
    {
        var error = Assert.Throws<ArgumentException>(() => LatentPacking.ImageIds(height, width));
        Assert.Contains($"{height}×{width}", error.Message);
    }
}

using System.ClientModel;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OpenAI.Images;
using AIImageGenerationOptions = Microsoft.Extensions.AI.ImageGenerationOptions;
using OpenAIImageGenerationOptions = OpenAI.Images.ImageGenerationOptions;

namespace MLNet.Diffusion.Server.Tests;

/// <summary>The official OpenAI .NET SDK and Microsoft.Extensions.AI's OpenAI image generator against the server.</summary>
public sealed class OpenAIClientTests
{
    private static OpenAIImageGenerationOptions Options(int size = 256) =>
        new() { Size = new GeneratedImageSize(size, size), ResponseFormat = GeneratedImageFormat.Bytes };

    private static Dictionary<string, object> Extra(long seed, int steps) => new() { ["seed"] = seed, ["steps"] = steps };

    [Fact]
    public async Task The_OpenAI_sdk_generates_png_images_of_the_size_asked()
    {
        await using var host = await ServerHost.StartAsync();
        var client = host.ImageClient(extra: Extra(seed: 11, steps: 3));

        ClientResult<GeneratedImageCollection> result = await client.GenerateImagesAsync("a red circle", 2, Options());

        Assert.Equal(2, result.Value.Count);
        foreach (var image in result.Value) Png.AssertImage(image.ImageBytes.ToArray(), 256, 256);
        // Seeds 11 and 12 draw different pictures.
        Assert.NotEqual(result.Value[0].ImageBytes.ToArray(), result.Value[1].ImageBytes.ToArray());
    }

    [Fact]
    public async Task The_OpenAI_sdk_sees_a_refused_url_format_as_a_400_naming_the_field()
    {
        await using var host = await ServerHost.StartAsync();
        var options = Options();
        options.ResponseFormat = GeneratedImageFormat.Uri;

        var error = await Assert.ThrowsAsync<ClientResultException>(() => host.ImageClient().GenerateImageAsync("x", options));

        Assert.Equal(400, error.Status);
        Assert.Contains("response_format", error.Message);
        Assert.Contains("b64_json", error.Message);
    }

    [Fact]
    public async Task Microsoft_Extensions_AI_over_http_gives_the_bytes_of_the_in_process_generator_for_the_same_seed()
    {
        await using var host = await ServerHost.StartAsync();
        IImageGenerator remote = host.ImageClient(extra: Extra(seed: 42, steps: 4)).AsIImageGenerator();
        var remoteResponse = await remote.GenerateAsync(new ImageGenerationRequest("a blue square"), new AIImageGenerationOptions
        {
            Count = 2,
            ImageSize = new System.Drawing.Size(256, 256),
        });

        using var pipeline = StableDiffusionPipeline.Load(ServerHost.DemoFolder);
        using var local = new StableDiffusionImageGenerator(pipeline);
        var localResponse = await local.GenerateAsync(new ImageGenerationRequest("a blue square"), new AIImageGenerationOptions
        {
            Count = 2,
            ImageSize = new System.Drawing.Size(256, 256),
            AdditionalProperties = new() { [StableDiffusionImageGenerator.SeedProperty] = 42L, [StableDiffusionImageGenerator.StepsProperty] = 4 },
        });

        var remoteBytes = remoteResponse.Contents.OfType<DataContent>().Select(c => c.Data.ToArray()).ToArray();
        var localBytes = localResponse.Contents.OfType<DataContent>().Select(c => c.Data.ToArray()).ToArray();
        Assert.Equal(2, remoteBytes.Length);
        Assert.Equal(localBytes.Length, remoteBytes.Length);
        for (int i = 0; i < localBytes.Length; i++) Assert.Equal(localBytes[i], remoteBytes[i]);
    }

    [Fact]
    public async Task Models_lists_the_served_names_in_OpenAIs_shape()
    {
        await using var host = await ServerHost.StartAsync();
        var json = await ServerHost.JsonAsync(await host.Client.GetAsync("/v1/models"));
        Assert.Equal("list", json.GetProperty("object").GetString());
        var model = Assert.Single(json.GetProperty("data").EnumerateArray());
        Assert.Equal("demo", model.GetProperty("id").GetString());
        Assert.Equal("model", model.GetProperty("object").GetString());
    }

    [Fact]
    public async Task Edits_redraws_an_uploaded_image_and_repaints_where_the_mask_is_transparent()
    {
        await using var host = await ServerHost.StartAsync();
        // An init image from the server itself.
        var first = await host.ImageClient(extra: Extra(seed: 5, steps: 2)).GenerateImageAsync("a red circle", Options());
        byte[] init = first.Value.ImageBytes.ToArray();

        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(init), "image", "init.png" },
            { new ByteArrayContent(TransparentTopHalfMask(256, 256)), "mask", "mask.png" },
            { new StringContent("a green triangle"), "prompt" },
            { new StringContent("256x256"), "size" },
            { new StringContent("2"), "steps" },
            { new StringContent("9"), "seed" },
        };
        var response = await host.Client.PostAsync("/v1/images/edits", form);
        var json = await ServerHost.JsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        var bytes = json.GetProperty("data")[0].GetProperty("b64_json").GetBytesFromBase64();
        Png.AssertImage(bytes, 256, 256);
        Assert.NotEqual(init, bytes);
    }

    [Fact]
    public async Task The_OpenAI_sdk_edits_an_image_with_a_mask()
    {
        await using var host = await ServerHost.StartAsync();
        var first = await host.ImageClient(extra: Extra(seed: 5, steps: 2)).GenerateImageAsync("a red circle", Options());
        using var image = new MemoryStream(first.Value.ImageBytes.ToArray());
        using var mask = new MemoryStream(TransparentTopHalfMask(256, 256));

        var edited = await host.ImageClient().GenerateImageEditAsync(image, "init.png", "a green triangle", mask, "mask.png",
            new ImageEditOptions { Size = new GeneratedImageSize(256, 256), ResponseFormat = GeneratedImageFormat.Bytes });

        byte[] bytes = edited.Value.ImageBytes.ToArray();
        Png.AssertImage(bytes, 256, 256);
        Assert.NotEqual(first.Value.ImageBytes.ToArray(), bytes);
    }

    /// <summary>A PNG whose top half is fully transparent (OpenAI's "edit here") and bottom half opaque.</summary>
    internal static byte[] TransparentTopHalfMask(int width, int height)
    {
        var rgba = new byte[width * height * 4];
        for (int y = height / 2; y < height; y++)
            for (int x = 0; x < width; x++) rgba[(y * width + x) * 4 + 3] = 255;
        return Png.Encode(width, height, rgba);
    }
}

using System.Net;
using System.Text;
using System.Text.Json;

namespace MLNet.Diffusion.Server.Tests;

/// <summary>What a client can get wrong: each is the right 4xx in its API's error shape, naming the field.</summary>
public sealed class BadInputTests
{
    /// <summary>Asserts an OpenAI-shaped error: status, <c>param</c>, and a message containing <paramref name="words"/>.</summary>
    private static async Task AssertOpenAIError(HttpResponseMessage response, HttpStatusCode status, string? param, params string[] words)
    {
        var json = await ServerHost.JsonAsync(response);
        Assert.Equal(status, response.StatusCode);
        var error = json.GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal((int)status >= 500 ? "server_error" : (int)status == 429 ? "rate_limit_error" : "invalid_request_error", error.GetProperty("type").GetString());
        Assert.True(error.TryGetProperty("code", out _));
        foreach (var word in words) Assert.Contains(word, error.GetProperty("message").GetString());
    }

    [Theory]
    [InlineData("""{"prompt": "x", "n": 1""", null, "not valid JSON")]
    [InlineData("""["prompt"]""", null, "JSON object")]
    [InlineData("""{"n": 1}""", "prompt", "'prompt' is required")]
    [InlineData("""{"prompt": 5}""", "prompt", "'prompt' must be a string")]
    [InlineData("""{"prompt": "x", "n": "two"}""", "n", "'n' must be a whole number", "\"two\"")]
    [InlineData("""{"prompt": "x", "n": 1.5}""", "n", "'n' must be a whole number")]
    [InlineData("""{"prompt": "x", "n": 0}""", "n", "'n' must be from 1")]
    [InlineData("""{"prompt": "x", "n": 9}""", "n", "'n' must be from 1 to 8")]
    [InlineData("""{"prompt": "x", "size": "100x100"}""", "size", "multiple of 8", "100", "104x104")]
    [InlineData("""{"prompt": "x", "size": "big"}""", "size", "WIDTHxHEIGHT")]
    [InlineData("""{"prompt": "x", "size": "2048x2048"}""", "size", "at most 1048576")]
    [InlineData("""{"prompt": "x", "steps": 0}""", "steps", "'steps' must be from 1 to 1000")]
    [InlineData("""{"prompt": "x", "steps": 151}""", "steps", "at most 150")]
    [InlineData("""{"prompt": "x", "guidance_scale": "high"}""", "guidance_scale", "finite number")]
    [InlineData("""{"prompt": "x", "scheduler": "warp-drive"}""", "scheduler", "warp-drive")]
    [InlineData("""{"prompt": "x", "response_format": "url"}""", "response_format", "stores no images", "b64_json")]
    [InlineData("""{"prompt": "x", "output_format": "jpeg"}""", "output_format", "png")]
    public async Task A_bad_generations_request_is_a_400_naming_the_field(string body, string? param, params string[] words)
    {
        await using var host = await ServerHost.StartAsync();
        await AssertOpenAIError(await host.PostJsonAsync("/v1/images/generations", body), HttpStatusCode.BadRequest, param, words);
    }

    [Fact]
    public async Task An_unknown_model_is_a_404_listing_the_served_names_and_a_path_is_just_an_unknown_name()
    {
        await using var host = await ServerHost.StartAsync();
        await AssertOpenAIError(await host.PostJsonAsync("/v1/images/generations", """{"prompt": "x", "model": "dall-e-3"}"""),
            HttpStatusCode.NotFound, "model", "'dall-e-3' does not exist", "demo");
        string path = JsonSerializer.Serialize(ServerHost.DemoFolder);
        await AssertOpenAIError(await host.PostJsonAsync("/v1/images/generations", $$"""{"prompt": "x", "model": {{path}}}"""),
            HttpStatusCode.NotFound, "model", "does not exist");

        var a1111 = await host.PostJsonAsync("/sdapi/v1/txt2img", """{"prompt": "x", "override_settings": {"sd_model_checkpoint": "sd_xl_base_1.0.safetensors [31e35c80fc]"}}""");
        Assert.Equal(HttpStatusCode.NotFound, a1111.StatusCode);
        Assert.Contains("sd_xl_base_1.0.safetensors", (await ServerHost.JsonAsync(a1111)).GetProperty("detail").GetString());
    }

    [Fact]
    public async Task A_50_MB_body_is_a_413_before_it_is_read()
    {
        await using var host = await ServerHost.StartAsync();
        var big = new ByteArrayContent(new byte[50 << 20]);
        big.Headers.ContentType = new("application/json");
        await AssertOpenAIError(await host.Client.PostAsync("/v1/images/generations", big), HttpStatusCode.RequestEntityTooLarge, null, "limit of 16777216 bytes");
    }

    [Fact]
    public async Task A_body_over_the_limit_without_a_length_is_a_413_too()
    {
        await using var host = await ServerHost.StartAsync(o => o.MaxRequestBodyBytes = 1000);
        var stream = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes($$"""{"prompt": "{{new string('a', 5000)}}"}""")));
        stream.Headers.ContentType = new("application/json");
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images/generations") { Content = stream };
        request.Headers.TransferEncodingChunked = true;
        await AssertOpenAIError(await host.Client.SendAsync(request), HttpStatusCode.RequestEntityTooLarge, null, "limit of 1000 bytes");
    }

    [Fact]
    public async Task An_upload_that_is_not_an_image_is_a_400_naming_the_field()
    {
        await using var host = await ServerHost.StartAsync();
        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(Encoding.UTF8.GetBytes("this is not a picture")), "image", "notes.png" },
            { new StringContent("x"), "prompt" },
        };
        await AssertOpenAIError(await host.Client.PostAsync("/v1/images/edits", form), HttpStatusCode.BadRequest, "image", "'image' is not an image");

        using var noImage = new MultipartFormDataContent { { new StringContent("x"), "prompt" } };
        await AssertOpenAIError(await host.Client.PostAsync("/v1/images/edits", noImage), HttpStatusCode.BadRequest, "image", "'image' is required");

        var json = await host.PostJsonAsync("/v1/images/edits", """{"prompt": "x"}""");
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, json.StatusCode);
    }

    [Theory]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "steps": "many"}""", "steps", "'steps' must be a whole number")]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "width": 500}""", "width", "multiple of 8")]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "cfg_scale": [7]}""", "cfg_scale", "finite number")]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "batch_size": 4, "n_iter": 3}""", "batch_size", "12 images", "at most 8")]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "sampler_name": "Restart"}""", "sampler_name", "Restart", "Euler a")]
    [InlineData("/sdapi/v1/txt2img", """{"prompt": "x", "override_settings": "demo"}""", "override_settings", "JSON object")]
    [InlineData("/sdapi/v1/img2img", """{"prompt": "x"}""", "init_images", "'init_images' is required")]
    [InlineData("/sdapi/v1/img2img", """{"prompt": "x", "init_images": ["%%%"]}""", "init_images[0]", "not valid base64")]
    [InlineData("/sdapi/v1/img2img", """{"prompt": "x", "init_images": ["aGVsbG8gd29ybGQ="]}""", "init_images[0]", "not an image")]
    [InlineData("/sdapi/v1/img2img", """{"prompt": "x", "init_images": [1]}""", "init_images[0]", "must be a string")]
    public async Task A_bad_A1111_request_is_a_422_with_FastAPIs_loc_naming_the_field(string path, string body, string field, params string[] words)
    {
        await using var host = await ServerHost.StartAsync();
        var response = await host.PostJsonAsync(path, body);
        var json = await ServerHost.JsonAsync(response);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, response.StatusCode);
        var detail = Assert.Single(json.GetProperty("detail").EnumerateArray());
        Assert.Equal(["body", field], detail.GetProperty("loc").EnumerateArray().Select(l => l.GetString()));
        foreach (var word in words) Assert.Contains(word, detail.GetProperty("msg").GetString());
    }

    [Fact]
    public async Task Malformed_JSON_to_A1111_is_a_400_detail()
    {
        await using var host = await ServerHost.StartAsync();
        var response = await host.PostJsonAsync("/sdapi/v1/txt2img", "{prompt: x}");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("not valid JSON", (await ServerHost.JsonAsync(response)).GetProperty("detail").GetString());
    }

    [Fact]
    public async Task With_a_key_a_missing_or_wrong_bearer_token_is_a_401_and_the_right_one_passes()
    {
        await using var host = await ServerHost.StartAsync(o => o.ApiKey = "s3cret-key");

        var missing = await host.Client.GetAsync("/v1/models");
        await AssertOpenAIError(missing, HttpStatusCode.Unauthorized, null, "No API key", "Authorization: Bearer");
        Assert.Equal("Bearer", missing.Headers.WwwAuthenticate.Single().Scheme);

        host.UseKey("s3cret-kez");
        await AssertOpenAIError(await host.Client.GetAsync("/v1/models"), HttpStatusCode.Unauthorized, null, "Incorrect API key");
        var a1111 = await host.Client.GetAsync("/sdapi/v1/sd-models");
        Assert.Equal(HttpStatusCode.Unauthorized, a1111.StatusCode);
        Assert.Contains("Incorrect API key", (await ServerHost.JsonAsync(a1111)).GetProperty("detail").GetString());

        // The health check stays open; the right key opens the rest, and the OpenAI SDK sends it as a bearer token.
        host.Client.DefaultRequestHeaders.Authorization = null;
        Assert.Equal(HttpStatusCode.OK, (await host.Client.GetAsync("/healthz")).StatusCode);
        host.UseKey("s3cret-key");
        Assert.Equal(HttpStatusCode.OK, (await host.Client.GetAsync("/v1/models")).StatusCode);
        host.Client.DefaultRequestHeaders.Authorization = null;
        var options = new OpenAI.Images.ImageGenerationOptions { Size = new(256, 256) };
        var steps = new Dictionary<string, object> { ["steps"] = 1 };
        var image = await host.ImageClient(apiKey: "s3cret-key", extra: steps).GenerateImageAsync("x", options);
        Png.AssertImage(image.Value.ImageBytes.ToArray(), 256, 256);
        var refused = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(() => host.ImageClient(apiKey: "wrong", extra: steps).GenerateImageAsync("x", options));
        Assert.Equal(401, refused.Status);
    }
}

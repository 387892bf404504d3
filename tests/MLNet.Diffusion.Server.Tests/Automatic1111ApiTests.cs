using System.Text.Json;

namespace MLNet.Diffusion.Server.Tests;

/// <summary>AUTOMATIC1111-shaped requests, as its wiki's API examples write them, against the server.</summary>
public sealed class Automatic1111ApiTests
{
    [Fact]
    public async Task The_wikis_txt2img_example_returns_one_base64_png_with_parameters_and_info()
    {
        await using var host = await ServerHost.StartAsync();
        // The A1111 wiki's example payload: {"prompt": "maltese puppy", "steps": 5}.
        var response = await host.PostJsonAsync("/sdapi/v1/txt2img", """{"prompt": "maltese puppy", "steps": 5}""");
        var json = await ServerHost.JsonAsync(response);

        Assert.True(response.IsSuccessStatusCode, json.ToString());
        var image = Assert.Single(json.GetProperty("images").EnumerateArray());
        Png.AssertImage(Convert.FromBase64String(image.GetString()!), 256, 256);   // the demo model's own size
        Assert.Equal("maltese puppy", json.GetProperty("parameters").GetProperty("prompt").GetString());
        using var info = JsonDocument.Parse(json.GetProperty("info").GetString()!);
        Assert.Equal(5, info.RootElement.GetProperty("steps").GetInt32());
        Assert.Single(info.RootElement.GetProperty("all_seeds").EnumerateArray());
    }

    [Fact]
    public async Task Txt2img_with_batch_size_n_iter_seed_sampler_and_size_gives_seed_plus_i_images()
    {
        await using var host = await ServerHost.StartAsync();
        string body = """
            {"prompt": "a red circle", "negative_prompt": "blue", "seed": 100, "steps": 3, "cfg_scale": 7,
             "width": 256, "height": 256, "sampler_name": "Euler a", "batch_size": 2, "n_iter": 2,
             "override_settings": {"sd_model_checkpoint": "demo"}, "restore_faces": false, "styles": []}
            """;
        var json = await ServerHost.JsonAsync(await host.PostJsonAsync("/sdapi/v1/txt2img", body));

        var images = json.GetProperty("images").EnumerateArray().Select(i => Convert.FromBase64String(i.GetString()!)).ToArray();
        Assert.Equal(4, images.Length);
        foreach (var png in images) Png.AssertImage(png, 256, 256);
        using var info = JsonDocument.Parse(json.GetProperty("info").GetString()!);
        Assert.Equal([100L, 101, 102, 103], info.RootElement.GetProperty("all_seeds").EnumerateArray().Select(s => s.GetInt64()));
        Assert.Equal("euler-a", info.RootElement.GetProperty("sampler_name").GetString());

        // The same seed alone gives the same first image: image i depends only on seed + i.
        var single = await ServerHost.JsonAsync(await host.PostJsonAsync("/sdapi/v1/txt2img",
            """{"prompt": "a red circle", "negative_prompt": "blue", "seed": 102, "steps": 3, "cfg_scale": 7, "width": 256, "height": 256, "sampler_name": "k_euler_a"}"""));
        Assert.Equal(images[2], Convert.FromBase64String(single.GetProperty("images")[0].GetString()!));
    }

    [Fact]
    public async Task Img2img_and_inpainting_take_base64_images_with_or_without_a_data_url_prefix()
    {
        await using var host = await ServerHost.StartAsync();
        var first = await ServerHost.JsonAsync(await host.PostJsonAsync("/sdapi/v1/txt2img",
            """{"prompt": "a red circle", "seed": 1, "steps": 2, "width": 256, "height": 256}"""));
        string init = first.GetProperty("images")[0].GetString()!;
        var mask = new byte[256 * 256 * 4];
        for (int i = 0; i < 256 * 128 * 4; i++) mask[i] = 255;                        // top half white: repaint it
        for (int i = 3; i < mask.Length; i += 4) mask[i] = 255;
        string maskBase64 = Convert.ToBase64String(Png.Encode(256, 256, mask));

        var img2img = await host.PostJsonAsync("/sdapi/v1/img2img", JsonSerializer.Serialize(new
        {
            init_images = new[] { init },
            prompt = "a green square",
            denoising_strength = 0.5,
            steps = 4,
            seed = 3,
        }));
        var inpaint = await host.PostJsonAsync("/sdapi/v1/img2img", JsonSerializer.Serialize(new
        {
            init_images = new[] { "data:image/png;base64," + init },
            mask = maskBase64,
            prompt = "a green square",
            steps = 4,
            seed = 3,
        }));

        foreach (var response in new[] { img2img, inpaint })
        {
            var json = await ServerHost.JsonAsync(response);
            Assert.True(response.IsSuccessStatusCode, json.ToString());
            var png = Convert.FromBase64String(json.GetProperty("images")[0].GetString()!);
            Png.AssertImage(png, 256, 256);
        }
    }

    [Fact]
    public async Task Samplers_models_progress_and_interrupt_answer_in_A1111s_shapes()
    {
        await using var host = await ServerHost.StartAsync();

        var samplers = await ServerHost.JsonAsync(await host.Client.GetAsync("/sdapi/v1/samplers"));
        var euler = samplers.EnumerateArray().Single(s => s.GetProperty("name").GetString() == "Euler a");
        Assert.Contains("k_euler_a", euler.GetProperty("aliases").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal(JsonValueKind.Object, euler.GetProperty("options").ValueKind);

        var models = await ServerHost.JsonAsync(await host.Client.GetAsync("/sdapi/v1/sd-models"));
        var model = Assert.Single(models.EnumerateArray());
        Assert.Equal("demo", model.GetProperty("model_name").GetString());
        Assert.DoesNotContain(ServerHost.DemoFolder, models.ToString());               // no server path leaks

        var progress = await ServerHost.JsonAsync(await host.Client.GetAsync("/sdapi/v1/progress"));
        Assert.Equal(0, progress.GetProperty("progress").GetDouble());
        Assert.Equal(0, progress.GetProperty("state").GetProperty("job_count").GetInt32());
        Assert.Equal(JsonValueKind.Null, progress.GetProperty("current_image").ValueKind);

        var interrupt = await host.Client.PostAsync("/sdapi/v1/interrupt", null);
        Assert.True(interrupt.IsSuccessStatusCode);
        Assert.Equal("{}", await interrupt.Content.ReadAsStringAsync());
    }
}

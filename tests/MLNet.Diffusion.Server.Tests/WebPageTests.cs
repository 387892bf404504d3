using System.Net;
using System.Text.RegularExpressions;

namespace MLNet.Diffusion.Server.Tests;

/// <summary>The web page at <c>/</c>: served without a key, its form's fields present, and every endpoint it calls answering.</summary>
public sealed partial class WebPageTests
{
    [Fact]
    public async Task The_page_is_served_at_the_root_even_when_the_API_needs_a_key()
    {
        await using var host = await ServerHost.StartAsync(o => o.ApiKey = "k");
        var response = await host.Client.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        string html = await response.Content.ReadAsStringAsync();
        foreach (var id in new[] { "prompt", "negative", "width", "height", "steps", "seed", "model", "key", "progress", "gallery", "interrupt" })
            Assert.Contains($"id=\"{id}\"", html);
    }

    [Fact]
    public async Task Every_endpoint_the_page_calls_answers_the_request_the_page_makes()
    {
        await using var host = await ServerHost.StartAsync();
        string html = await host.Client.GetStringAsync("/");
        var paths = FetchPattern().Matches(html).Select(m => m.Groups[1].Value).Distinct().Order().ToArray();
        Assert.Equal(["/sdapi/v1/interrupt", "/sdapi/v1/progress", "/sdapi/v1/txt2img", "/v1/models"], paths);

        Assert.Equal(HttpStatusCode.OK, (await host.Client.GetAsync("/v1/models")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await host.Client.GetAsync("/sdapi/v1/progress?id_task=page-x")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await host.Client.PostAsync("/sdapi/v1/interrupt", null)).StatusCode);
        // The body the page's script builds (empty size fields are left out by JSON.stringify).
        var response = await host.PostJsonAsync("/sdapi/v1/txt2img",
            """{"prompt":"a red circle","negative_prompt":"","steps":2,"seed":-1,"force_task_id":"page-x","override_settings":{"sd_model_checkpoint":"demo"}}""");
        var json = await ServerHost.JsonAsync(response);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Single(json.GetProperty("images").EnumerateArray());
    }

    [GeneratedRegex("""fetch\("(/[^"?]+)""")]
    private static partial Regex FetchPattern();
}

using System.Net;
using System.Text.RegularExpressions;
using MLNet.Diffusion.Cli;

namespace MLNet.Diffusion.Server.Tests;

/// <summary><c>mlnet-diffusion serve</c>: its security defaults, its errors, and a real Kestrel server on loopback.</summary>
public sealed partial class ServeCommandTests
{
    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Program.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Help_lists_serve_and_its_options()
    {
        var (code, output, _) = Run("--help");
        Assert.Equal(Program.Success, code);
        Assert.Contains("serve", output);
        (code, output, _) = Run("serve", "--help");
        Assert.Equal(Program.Success, code);
        foreach (var option in new[] { "--model", "--urls", "--api-key", "--device", "--max-concurrency", "--max-queue", "--max-steps", "--max-images", "--max-size", "--max-body-mb" })
            Assert.Contains(option, output);
        Assert.Contains("http://127.0.0.1:7860", output);
    }

    [Theory]
    [InlineData("http://0.0.0.0:7860")]
    [InlineData("http://*:7860")]
    [InlineData("http://127.0.0.1:7860;http://192.168.1.20:7860")]
    public void A_non_loopback_address_without_an_API_key_is_refused_with_exit_code_2(string urls)
    {
        var (code, _, error) = Run("serve", "--urls", urls);
        Assert.Equal(Program.UsageError, code);
        Assert.Contains("not a loopback address", error);
        Assert.Contains("--api-key", error);
        Assert.Contains("MLNET_DIFFUSION_API_KEY", error);
    }

    [Theory]
    [InlineData(new[] { "--model", "/no/such/folder" }, "does not exist")]
    [InlineData(new[] { "--urls", "ftp://127.0.0.1:21" }, "is not an http")]
    [InlineData(new[] { "--max-concurrency", "0" }, "--max-concurrency must be from 1")]
    [InlineData(new[] { "--max-size", "100x100" }, "multiple of 8")]
    public void Bad_options_are_usage_errors_naming_the_option(string[] options, string words)
    {
        var (code, _, error) = Run(["serve", .. options]);
        Assert.Equal(Program.UsageError, code);
        Assert.Contains(words, error);
    }

    [Fact]
    public async Task Serve_listens_on_loopback_with_Kestrel_requires_its_key_and_stops_on_cancellation()
    {
        var output = new StringWriter();
        var synchronizedOutput = TextWriter.Synchronized(output);
        using var stop = new CancellationTokenSource();
        var run = Task.Run(() => Program.Run(["serve", "--model", $"demo={ServerHost.DemoFolder}", "--urls", "http://127.0.0.1:0", "--api-key", "k1"],
            synchronizedOutput, TextWriter.Null, stop.Token));

        string? address = null;
        await ServerHost.WaitUntilAsync(() => (address = AddressPattern().Match(Read()).Value) is { Length: > 0 } || run.IsCompleted,
            TimeSpan.FromSeconds(60), "the server to start");
        Assert.False(run.IsCompleted, Read());

        using var client = new HttpClient { BaseAddress = new Uri(address!) };
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/v1/models")).StatusCode);
        client.DefaultRequestHeaders.Authorization = new("Bearer", "k1");
        var response = await client.PostAsync("/sdapi/v1/txt2img", new StringContent("""{"prompt": "x", "steps": 1}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        stop.Cancel();
        Assert.Equal(Program.Success, await run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("Stopped.", Read());

        string Read() { lock (synchronizedOutput) return output.ToString(); }
    }

    [GeneratedRegex(@"http://127\.0\.0\.1:\d+")]
    private static partial Regex AddressPattern();
}

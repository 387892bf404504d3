using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using MLNet.Diffusion.Cli;

namespace MLNet.Diffusion.Server.Tests;

/// <summary>
/// The web page in a real headless browser (Chromium: Debian's <c>chromium</c> package, or the browser named by
/// <c>$CHROMIUM</c>): a link that fills the form and submits it makes the page's script call the server, follow the
/// progress and put the result in its gallery; the image shown is the one the API gives for the same request.
/// Skipped, saying why, on a machine without Chromium (CI installs it: <c>.ci/run</c>).
/// </summary>
public sealed partial class BrowserPageTests
{
    [SkippableFact]
    public async Task The_page_generates_an_image_in_a_headless_browser()
    {
        string? browser = FindBrowser();
        Skip.If(browser is null, "No Chromium found (install Debian's chromium package or set CHROMIUM).");

        var output = new StringWriter();
        var synchronizedOutput = TextWriter.Synchronized(output);
        using var stop = new CancellationTokenSource();
        var run = Task.Run(() => Program.Run(["serve", "--model", $"demo={ServerHost.DemoFolder}", "--urls", "http://127.0.0.1:0"],
            synchronizedOutput, TextWriter.Null, stop.Token));
        try
        {
            string? address = null;
            await ServerHost.WaitUntilAsync(() => (address = AddressPattern().Match(Read()).Value) is { Length: > 0 } || run.IsCompleted,
                TimeSpan.FromSeconds(60), "the server to start");
            Assert.False(run.IsCompleted, Read());

            string dom = await DumpDomAsync(browser!, $"{address}/?prompt=a%20red%20circle&seed=42&steps=6&run=1");
            Assert.Contains(">Done.</div>", dom);
            Assert.Contains("seed 42 · 256×256 · 6 steps · a red circle", dom);
            var shown = ImagePattern().Matches(dom).Select(m => m.Groups[1].Value).ToArray();
            Assert.Single(shown);

            using var client = new HttpClient { BaseAddress = new Uri(address!) };
            var response = await client.PostAsync("/sdapi/v1/txt2img", new StringContent(
                """{"prompt": "a red circle", "negative_prompt": "", "seed": 42, "steps": 6}""", System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal(json.RootElement.GetProperty("images")[0].GetString(), shown[0]);
        }
        finally
        {
            stop.Cancel();
            await run.WaitAsync(TimeSpan.FromSeconds(30));
        }

        string Read() { lock (synchronizedOutput) return output.ToString(); }
    }

    /// <summary>Chromium's DOM of <paramref name="url"/> once the page is idle (virtual time lets the page's timers run; network waits are real).</summary>
    private static async Task<string> DumpDomAsync(string browser, string url)
    {
        var start = new ProcessStartInfo(browser)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     $"--user-data-dir={Directory.CreateTempSubdirectory("mlnd-chromium-").FullName}", "--virtual-time-budget=120000", "--dump-dom", url })
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(180));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"{browser} exited with {process.ExitCode}: {await stderr}");
        return await stdout;
    }

    private static string? FindBrowser()
    {
        if (Environment.GetEnvironmentVariable("CHROMIUM") is { Length: > 0 } configured && File.Exists(configured)) return configured;
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            foreach (var name in new[] { "chromium", "chromium-browser", "google-chrome" })
                if (File.Exists(Path.Combine(directory, name))) return Path.Combine(directory, name);
        return null;
    }

    [GeneratedRegex(@"http://127\.0\.0\.1:\d+")]
    private static partial Regex AddressPattern();

    [GeneratedRegex("""<img src="data:image/png;base64,([^"]+)""")]
    private static partial Regex ImagePattern();
}

using System.Diagnostics;
using Microsoft.Extensions.Logging;
using MLNet.Diffusion.ModelBuilder.Demo;
using MLNet.Diffusion.Models;

namespace MLNet.Diffusion;

/// <summary>
/// The built-in demo model: a small Stable Diffusion ONNX folder (256×256 coloured shapes) that the project generates
/// itself, so that everything runs with no download. It is built on first use into <see cref="Directory"/>, the cache
/// folder the <c>mlnet-diffusion</c> tool uses too, and rebuilt when the builder's version changes.
/// </summary>
public static class DemoModel
{
    /// <summary>The environment variable that moves the cache folder.</summary>
    public const string CacheVariable = "MLNET_DIFFUSION_CACHE";

    /// <summary>
    /// The cache folder: <c>$MLNET_DIFFUSION_CACHE</c>; else <c>%LOCALAPPDATA%\mlnet-diffusion</c> on Windows,
    /// <c>$XDG_CACHE_HOME/mlnet-diffusion</c> or <c>~/.cache/mlnet-diffusion</c> elsewhere.
    /// </summary>
    public static string CacheDirectory => CacheDirectoryFrom(Environment.GetEnvironmentVariable);

    /// <summary>The demo model's folder, <c>demo-model</c> in <see cref="CacheDirectory"/>.</summary>
    public static string Directory => Path.Combine(CacheDirectory, "demo-model");

    /// <summary>
    /// The demo model's folder, built first if it is missing or was made by another builder version (one log line
    /// says so). Concurrent callers, in this process or others, wait for one build.
    /// </summary>
    /// <param name="logger">Receives the line that says the model is being built; null for none.</param>
    public static string EnsureBuilt(ILogger? logger = null) => EnsureBuilt(Directory, logger);

    /// <summary>
    /// The demo model's outline ControlNet, a folder inside <see cref="Directory"/> (built with it): give it a control image
    /// of white lines on black — a sketched outline, or the Canny edges of a drawn shape — and the generated shape follows
    /// the outline's shape, size and place, while the prompt still chooses the colours.
    /// </summary>
    public static string OutlineControlNetDirectory => Path.Combine(Directory, DemoModelBuilder.OutlineControlNetFolder);

    /// <summary>The demo model's SDXL-layout sibling's folder, <c>demo-xl-model</c> in <see cref="CacheDirectory"/>.</summary>
    public static string XlDirectory => Path.Combine(CacheDirectory, "demo-xl-model");

    /// <summary>
    /// The folder of the demo model's SDXL-layout sibling, built first if needed: the same pictures as the demo model, made
    /// through SDXL's contract (two tokenizers and text encoders whose penultimate hidden states are concatenated, the second
    /// encoder's pooled embedding, and time ids), so that the SDXL path runs with no download.
    /// </summary>
    /// <param name="logger">Receives the line that says the model is being built; null for none.</param>
    public static string EnsureBuiltXl(ILogger? logger = null) =>
        EnsureBuilt(XlDirectory, logger is null ? null : line => logger.LogInformation("{Message}", line), xl: true);

    /// <summary>The demo model's flow-matching sibling's folder, <c>demo-flow-model</c> in <see cref="CacheDirectory"/>.</summary>
    public static string FlowDirectory => Path.Combine(CacheDirectory, "demo-flow-model");

    /// <summary>
    /// The folder of the demo model's flow-matching sibling in Stable Diffusion 3's layout, built first if needed: the same
    /// pictures as the demo model, made through SD3's contract (two CLIP encoders and a T5 encoder, a transformer that gives
    /// the exact flow-matching velocity of the demo dataset, a 16-channel VAE and FlowMatchEulerDiscreteScheduler), so that
    /// the flow-matching path runs with no download. Without T5 (<see cref="DiffusionRuntimeOptions.WithoutT5"/>) the
    /// picture's place is left to chance, since the demo's T5 carries it.
    /// </summary>
    /// <param name="logger">Receives the line that says the model is being built; null for none.</param>
    public static string EnsureBuiltFlow(ILogger? logger = null) =>
        EnsureBuiltFlow(FlowDirectory, logger is null ? null : line => logger.LogInformation("{Message}", line));

    /// <summary>Builds the demo flow model into <paramref name="directory"/> unless a current one is there, reporting as
    /// <see cref="EnsureBuilt(string, Action{string}?, bool)"/> does; returns the folder.</summary>
    internal static string EnsureBuiltFlow(string directory, Action<string>? report) =>
        EnsureBuilt(directory, report, "demo flow model", DemoFlowModelBuilder.IsCurrent, DemoFlowModelBuilder.EnsureBuilt);

    /// <summary>The cache folder as read through <paramref name="getVariable"/> (the CLI passes its own environment).</summary>
    internal static string CacheDirectoryFrom(Func<string, string?> getVariable)
    {
        var configured = getVariable(CacheVariable);
        if (!string.IsNullOrWhiteSpace(configured)) return Path.GetFullPath(configured);
        if (OperatingSystem.IsWindows())
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "mlnet-diffusion");
        var xdg = getVariable("XDG_CACHE_HOME");
        var root = !string.IsNullOrWhiteSpace(xdg) && Path.IsPathRooted(xdg) ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "mlnet-diffusion");
    }

    /// <summary>Builds the demo model into <paramref name="directory"/> unless a current one is there; returns the folder.</summary>
    internal static string EnsureBuilt(string directory, ILogger? logger) =>
        EnsureBuilt(directory, logger is null ? null : line => logger.LogInformation("{Message}", line));

    /// <summary>
    /// Builds the demo model into <paramref name="directory"/> unless a current one is there, saying so through
    /// <paramref name="report"/> (one line before, one after with the time; the CLI prints them); returns the folder.
    /// </summary>
    internal static string EnsureBuilt(string directory, Action<string>? report, bool xl = false) => xl
        ? EnsureBuilt(directory, report, "demo XL model", DemoXlModelBuilder.IsCurrent, DemoXlModelBuilder.EnsureBuilt)
        : EnsureBuilt(directory, report, "demo model", DemoModelBuilder.IsCurrent, DemoModelBuilder.EnsureBuilt);

    /// <summary>Builds the demo model <paramref name="which"/> names with <paramref name="build"/> unless
    /// <paramref name="isCurrent"/> says the folder holds it, reporting as above; returns the folder.</summary>
    private static string EnsureBuilt(string directory, Action<string>? report, string which, Func<string, bool> isCurrent, Func<string, bool> build)
    {
        if (isCurrent(directory)) return directory;
        report?.Invoke($"Building the built-in {which} into {directory} (first use)…");
        var clock = Stopwatch.StartNew();
        if (build(directory))
            report?.Invoke($"Built the {which} in {clock.Elapsed.TotalSeconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)} s.");
        return directory;
    }
}

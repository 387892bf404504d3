using System.Diagnostics;
using System.Globalization;

namespace MLNet.Diffusion.Benchmarks;

/// <summary>
/// <c>guidance</c>: UNet rows and wall time per image with classifier-free guidance on every call, ended after a fraction
/// of the calls (<see cref="GenerationOptions.GuidanceEnd"/>), and limited to an interval of noise levels
/// (<see cref="GenerationOptions.GuidanceIntervalLow"/>/<see cref="GenerationOptions.GuidanceIntervalHigh"/>): rounds
/// interleaved, medians printed. Rows come from <c>UNet.RowCount</c>.
/// </summary>
public static class GuidanceRows
{
    private const int Rounds = 5, Images = 2, Steps = 25;

    /// <summary>Runs the table for the demo model and the synthetic SD 1.5-shaped one.</summary>
    public static int Run(string[] args)
    {
        var settings = new (string Name, Action<GenerationOptions> Apply)[]
        {
            ("every call guided", _ => { }),
            ("GuidanceEnd 0.6", o => o.GuidanceEnd = 0.6f),
            ("interval (0.28, 5.42]", o => { o.GuidanceIntervalLow = 0.28f; o.GuidanceIntervalHigh = 5.42f; }),
        };
        Console.WriteLine("| model | guidance | UNet rows per image | wall per image (median) |");
        Console.WriteLine("| --- | --- | --- | --- |");
        foreach (var (model, folder, size) in new[] { ("demo-3", ModelFolders.Demo, 256), ("synthetic SD 1.5-shaped", ModelFolders.SyntheticSd15, 512) })
        {
            using var pipeline = StableDiffusionPipeline.Load(folder);
            int steps = model == "demo-3" ? Steps : 8;
            var times = new List<double>[settings.Length];
            var rows = new long[settings.Length];
            for (int i = 0; i < settings.Length; i++) times[i] = [];
            Generate(pipeline, settings[0].Apply, size, 1); // warm-up
            for (int round = 0; round < Rounds; round++)
                for (int i = 0; i < settings.Length; i++)
                {
                    long before = pipeline.UNet.RowCount;
                    var clock = Stopwatch.StartNew();
                    Generate(pipeline, settings[i].Apply, size, steps);
                    times[i].Add(clock.Elapsed.TotalMilliseconds / Images);
                    rows[i] = (pipeline.UNet.RowCount - before) / Images;
                }
            for (int i = 0; i < settings.Length; i++)
            {
                times[i].Sort();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {model}, {steps} Euler steps | {settings[i].Name} | {rows[i]} | {times[i][times[i].Count / 2]:F1} ms |"));
            }
        }
        return 0;
    }

    private static void Generate(StableDiffusionPipeline pipeline, Action<GenerationOptions> apply, int size, int steps)
    {
        var options = new GenerationOptions { Steps = steps, GuidanceScale = 7.5f, Scheduler = "euler", Width = size, Height = size };
        apply(options);
        var requests = Enumerable.Range(0, Images).Select(i => new ImagePrompt("a red circle", i)).ToArray();
        foreach (var image in pipeline.Generate(requests, options)) image.Dispose();
    }
}

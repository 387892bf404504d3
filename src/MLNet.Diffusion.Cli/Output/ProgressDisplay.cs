using MLNet.Diffusion.Pipeline;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace MLNet.Diffusion.Cli.Output;

/// <summary>The progress bars of the generating commands.</summary>
internal static class ProgressDisplay
{
    /// <summary>A progress display with description, bar, count, images/s, elapsed time and ETA.</summary>
    public static Progress Create(IAnsiConsole console) => console.Progress()
        .AutoClear(false)
        .HideCompleted(false)
        .Columns(
            new TaskDescriptionColumn { Alignment = Justify.Left },
            new ProgressBarColumn(),
            new PercentageColumn(),
            new CountColumn(),
            new ImagesPerSecondColumn(),
            new ElapsedTimeColumn(),
            new RemainingTimeColumn());

    /// <summary>Reports the engine's denoising steps of the current batch into <paramref name="task"/> (0…1 of one batch).</summary>
    public static IProgress<DiffusionProgress> StepsInto(ProgressTask task) => new StepReporter(task);

    private sealed class StepReporter(ProgressTask task) : IProgress<DiffusionProgress>
    {
        public void Report(DiffusionProgress value)
        {
            if (value.Stage != DiffusionStage.Denoising || value.Total <= 0) return;
            task.MaxValue = value.Total;
            task.Value = value.Step;
        }
    }

    /// <summary>"done/total".</summary>
    private sealed class CountColumn : ProgressColumn
    {
        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
            new Text($"{task.Value:0}/{task.MaxValue:0}", new Style(Color.Grey));
    }

    /// <summary>Throughput in images per second (over the task's recent samples).</summary>
    private sealed class ImagesPerSecondColumn : ProgressColumn
    {
        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
            new Text(task.Speed is double speed && task.Description.StartsWith("images", StringComparison.Ordinal)
                ? speed >= 10 ? $"{speed:F0} img/s" : $"{speed:F2} img/s"
                : "", new Style(Color.Aqua));
    }
}

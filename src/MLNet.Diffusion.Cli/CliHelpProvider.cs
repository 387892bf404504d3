using MLNet.Diffusion.Schedulers;
using Spectre.Console;
using Spectre.Console.Cli;
using Spectre.Console.Cli.Help;
using Spectre.Console.Rendering;

namespace MLNet.Diffusion.Cli;

/// <summary>
/// Spectre.Console's help, plus a SCHEDULERS section under the options of every command that takes
/// <c>--scheduler</c>. The section lists <see cref="SchedulerFactory.ShortNames"/>, the library's one table of names,
/// so the help never lists fewer or other names than <c>--scheduler</c> accepts (an option's description is an
/// attribute, a constant, and cannot be made from the table).
/// </summary>
internal sealed class CliHelpProvider(ICommandAppSettings settings) : HelpProvider(settings)
{
    /// <summary>The option whose values the section lists.</summary>
    internal const string SchedulerOption = "scheduler";

    /// <summary>The section's heading.</summary>
    internal const string SchedulersHeading = "SCHEDULERS (--scheduler):";

    /// <summary>The section's text: the short names, then what else is accepted.</summary>
    internal static string SchedulerList =>
        $"{string.Join(", ", SchedulerFactory.ShortNames)}; or a diffusers class name (EulerDiscreteScheduler, …). " +
        $"SD3 and FLUX.1 (flow matching): {string.Join(", ", SchedulerFactory.FlowMatchingNames)}. " +
        "Without --scheduler, the model's scheduler_config.json chooses.";

    /// <inheritdoc/>
    public override IEnumerable<IRenderable> GetFooter(ICommandModel model, ICommandInfo? command)
    {
        foreach (var renderable in base.GetFooter(model, command)) yield return renderable;
        bool takesScheduler = command?.Parameters.OfType<ICommandOption>().Any(o => o.LongNames.Contains(SchedulerOption)) ?? false;
        if (!takesScheduler) yield break;
        yield return Text.NewLine;
        yield return new Text(SchedulersHeading + "\n");
        yield return new Padder(new Text(SchedulerList), new Padding(4, 0, 0, 0));
    }
}

using MLNet.Diffusion.Denoising;
using MLNet.Diffusion.Pipeline;
using MLNet.Diffusion.TextEncoding;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion;

// Prompt editing and alternation: which texts a request's prompts stand for, and their conditioning over the UNet calls.
public sealed partial class StableDiffusionPipeline
{
    /// <summary>A request's prompt and negative prompt as scheduled texts over its batch's UNet calls; null where a text
    /// has no prompt editing or alternation (it is encoded as it is, exactly as without this feature).</summary>
    private readonly record struct RequestTexts(IReadOnlyList<ScheduledText>? Prompt, IReadOnlyList<ScheduledText>? Negative, int Calls);

    /// <summary>
    /// Each request's schedules (<see cref="PromptSchedule"/>) over the UNet calls of its batch's full schedule
    /// (<see cref="ConditioningSchedule"/> says how calls are counted); <paramref name="negativeOf"/> gives the negative
    /// text a request encodes, or null when it encodes none.
    /// </summary>
    private RequestTexts[] ScheduleTexts(GenerationPlan plan, Func<int, string?> negativeOf)
    {
        var result = new RequestTexts[plan.Count];
        Dictionary<int, int>? callsOfSteps = null;
        for (int i = 0; i < result.Length; i++)
        {
            string? prompt = plan.Requests[i].Prompt, negative = negativeOf(i);
            bool promptScheduled = prompt is not null && PromptSchedule.IsScheduled(prompt), negativeScheduled = negative is not null && PromptSchedule.IsScheduled(negative);
            if (!promptScheduled && !negativeScheduled) continue;
            int steps = plan.Resolved[i].Batch.Steps;
            callsOfSteps ??= [];
            if (!callsOfSteps.TryGetValue(steps, out int calls)) callsOfSteps[steps] = calls = CreateScheduler(plan.Options, steps, plan.Resolved[i].Batch.Width, plan.Resolved[i].Batch.Height).CallCount;
            result[i] = new RequestTexts(promptScheduled ? PromptSchedule.Parse(prompt!, calls) : null, negativeScheduled ? PromptSchedule.Parse(negative!, calls) : null, calls);
        }
        return result;
    }

    /// <summary>Adds <paramref name="text"/> to a text-encoder batch: each of its scheduled texts, or the text itself.</summary>
    private static void AddTexts(List<string> texts, List<TextOwner> owners, string text, IReadOnlyList<ScheduledText>? schedule, TextOwner owner)
    {
        if (schedule is null)
        {
            texts.Add(text);
            owners.Add(owner);
            return;
        }
        foreach (var entry in schedule)
        {
            texts.Add(entry.Text);
            owners.Add(owner);
        }
    }

    /// <summary>The conditioning schedule of the texts <see cref="AddTexts"/> added at <paramref name="start"/>; null when
    /// one text conditions every call.</summary>
    private static ConditioningSchedule? ScheduleOf(IReadOnlyList<ScheduledText>? schedule, TextEmbedding[] encoded, int start, int calls) =>
        schedule is { Count: > 1 } ? new ConditioningSchedule(schedule, encoded.AsSpan(start, schedule.Count), calls) : null;

    /// <summary>The index of the UNet's pooled-text-embedding input among its extras, or −1.</summary>
    private int PooledExtraIndex()
    {
        for (int i = 0; i < UNet.Extras.Count; i++)
            if (UNet.Extras[i].Kind == UNetExtraKind.TextEmbeds) return i;
        return -1;
    }
}

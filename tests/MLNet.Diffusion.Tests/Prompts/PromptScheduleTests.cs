using System.Text;
using System.Text.Json;
using MLNet.Diffusion.Tokenization;

namespace MLNet.Diffusion.Tests.PromptEditing;

/// <summary>
/// AUTOMATIC1111's prompt editing and alternation: the schedules of <c>get_learned_conditioning_prompt_schedules</c>'s
/// documented examples and its wiki's, every case of <c>Data/reference/prompt_schedules.json</c> (made by lark with A1111's
/// own grammar, <c>make_prompt_schedules.py</c>), hostile input, and random strings.
/// </summary>
public sealed class PromptScheduleTests
{
    private static (int, string)[] Schedule(string prompt, int steps) => [.. PromptSchedule.Parse(prompt, steps).Select(e => (e.EndStep, e.Text))];

    private static (int, string)[] Alternating(int steps, params string[] texts) => [.. Enumerable.Range(1, steps).Select(t => (t, texts[(t - 1) % texts.Length]))];

    // The doctests of prompt_parser.get_learned_conditioning_prompt_schedules (10 steps), as A1111 documents them.
    public static TheoryData<string, (int, string)[]> DocumentedExamples => new()
    {
        { "test", [(10, "test")] },
        { "a [b:3]", [(3, "a "), (10, "a b")] },
        { "a [b: 3]", [(3, "a "), (10, "a b")] },
        { "a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")] },
        { "[(a:2):3]", [(3, ""), (10, "(a:2)")] },
        { "a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")] },
        { "a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")] },
        { "a [unbalanced", [(10, "a [unbalanced")] },
        { "a [b:.5] c", [(5, "a  c"), (10, "a b c")] },
        { "((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")] },
        { "[a|(b:1.1)]", Alternating(10, "a", "(b:1.1)") },
        { "[fe|]male", Alternating(10, "female", "male") },
        { "[fe|||]male", Alternating(10, "female", "male", "male", "male") },
    };

    [Theory]
    [MemberData(nameof(DocumentedExamples))]
    public void DocumentedExamplesGiveA1111sSchedules(string prompt, (int, string)[] expected) =>
        Assert.Equal(expected, Schedule(prompt, 10));

    [Fact]
    public void TheWikisPromptEditingExamplesSwitchWhereItSays()
    {
        Assert.Equal([(16, "a fantasy landscape"), (20, "a cyberpunk landscape")], Schedule("a [fantasy:cyberpunk:16] landscape", 20));
        Assert.Equal([(16, "a fantasy landscape"), (30, "a cyberpunk landscape")], Schedule("a [fantasy:cyberpunk:16] landscape", 30));
        // prompt_parser.py's opening comment, 100 steps.
        Assert.Equal(
        [
            (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
            (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
            (60, "fantasy landscape with a lake and an oak in foreground in background masterful"),
            (75, "fantasy landscape with a lake and an oak in background masterful"),
            (100, "fantasy landscape with a lake and a christmas tree in background masterful"),
        ], Schedule("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]", 100));
        Assert.Equal([(5, "a mountain"), (20, "a lake")], Schedule("a [mountain:lake:0.25]", 20));
    }

    [Fact]
    public void TheWikisAlternationExampleCyclesEveryStep()
    {
        Assert.Equal(Alternating(20, "dog", "cat"), Schedule("[dog|cat]", 20));
        Assert.Equal(Alternating(6, "cow in a field", "horse in a field"), Schedule("[cow|horse] in a field", 6));
    }

    [Theory]
    [InlineData("a [b:c:1.0]", 10, "a b")]          // a decimal point makes a fraction: 1.0 × 10 = 10, never switches
    [InlineData("a [b:c:5.]", 10, "a b")]           // 5 × 10 capped at 10
    [InlineData("a [b:c:1e1]", 10, "a b")]          // no point: step 10
    [InlineData("a [b:c:99999999999]", 10, "a b")]  // huge: capped at the steps
    [InlineData("a [b:c:1e400]", 10, "a b")]        // beyond a double (A1111 raises OverflowError): capped too
    [InlineData("a [b:c:0]", 10, "a c")]            // below 1: from the start
    [InlineData("a [b:c:-3]", 10, "a c")]
    [InlineData("a [b:c:-1e400]", 10, "a c")]
    [InlineData("a [b:c:0.01]", 10, "a c")]         // int(0.1) = 0
    public void WhenIsAFractionWithAPointAndAStepWithoutOneCappedAtTheSteps(string prompt, int steps, string only) =>
        Assert.Equal([(steps, only)], Schedule(prompt, steps));

    [Theory]
    [InlineData("a [b:c:1]", new[] { 1, 10 })]
    [InlineData("a [b:c:+4]", new[] { 4, 10 })]
    [InlineData("a [b:c:2.5e-1]", new[] { 2, 10 })]
    [InlineData("a [b:c: 3 ]", new[] { 3, 10 })]
    public void EndStepsFollowA1111sRounding(string prompt, int[] ends) =>
        Assert.Equal(ends, PromptSchedule.Parse(prompt, 10).Select(e => e.EndStep));

    [Theory]
    [InlineData("a | b [c:d:2]")]      // '|' outside an alternation: lark rejects the prompt, so nothing is scheduled
    [InlineData("(a|b) [c:d:2]")]
    [InlineData("a [b|c] \\")]          // a backslash that escapes nothing
    [InlineData("a [b:c:2] \\\n")]      // nor does one before a line break (Python's '.')
    [InlineData("a \\[b:c:2\\] d")]    // escaped brackets are text
    [InlineData("[a:b:c:3]")]           // three colons are no edit: all text at the top level
    [InlineData("[a:b:3x]")]
    [InlineData("a [{b|d{:.5] c")]      // A1111's doctest expects an edit here, but its grammar has rejected '|' in text since 1.6
    [InlineData("a [unbalanced:3")]
    public void PromptsTheGrammarRejectsOrThatScheduleNothingAreKeptAsWritten(string prompt)
    {
        Assert.Equal([(10, prompt)], Schedule(prompt, 10));
        Assert.False(PromptSchedule.IsScheduled(prompt));
    }

    [Fact]
    public void EscapesStayInTheTextForTheWeightingSyntax()
    {
        Assert.Equal([(2, "a b\\:c"), (10, "a d")], Schedule("a [b\\:c:d:2]", 10));
        Assert.Equal(Alternating(4, "a b\\|c", "a d"), Schedule("a [b\\|c|d]", 4));
        Assert.Equal([(2, "(a:b)"), (10, "(a:c)")], Schedule("(a:[b:c:2])", 10));
    }

    [Fact]
    public void EmptyPartsAndNestingFollowTheGrammar()
    {
        Assert.Equal([(3, ""), (10, "")], Schedule("[::3]", 10));
        Assert.Equal([(3, "a"), (10, "")], Schedule("[a::3]", 10));
        Assert.Equal([(3, ""), (10, "a")], Schedule("[:a:3]", 10));
        Assert.Equal(Alternating(3, ""), Schedule("[|]", 3));
        Assert.Equal(Alternating(6, "a", "c"), Schedule("[a|[b|c]]", 6));
        Assert.Equal([(1, "a"), (2, "c"), (3, "b"), (4, "c")], Schedule("[[a:b:2]|c]", 4));
        // An edit nested in a branch that is never taken still adds its step (A1111's collect_steps visits every node).
        Assert.Equal([(2, "x"), (5, "x"), (10, "y")], Schedule("[x:y[q::2]:5]", 10));
    }

    [Fact]
    public void NestingBeyondTheLimitSchedulesNothingAndDoesNotOverflowTheStack()
    {
        string Nest(int depth) => new string('[', depth - 1) + "[a:b:2]" + new string(']', depth - 1);
        Assert.Equal(2, PromptSchedule.Parse(Nest(PromptSchedule.MaxDepth), 10).Count);
        string deep = Nest(PromptSchedule.MaxDepth + 1);
        Assert.Equal([(10, deep)], Schedule(deep, 10));
        string huge = new string('[', 200_000) + "a:b:2" + new string(']', 200_000);
        Assert.Single(PromptSchedule.Parse(huge, 10));
        Assert.Single(PromptSchedule.Parse(string.Concat(Enumerable.Repeat("(a [", 50_000)), 10));
    }

    [Fact]
    public void APromptWithoutEditingIsReturnedItselfNotACopy()
    {
        const string prompt = "a (castle:1.3) on [a] hill, \\(literal\\)";
        var schedule = PromptSchedule.Parse(prompt, 25);
        Assert.Single(schedule);
        Assert.Same(prompt, schedule[0].Text);
        Assert.Equal(25, schedule[0].EndStep);
        Assert.False(PromptSchedule.IsScheduled(prompt));
        Assert.True(PromptSchedule.IsScheduled("a [b:c:2]"));
        Assert.True(PromptSchedule.IsScheduled("[a|b]"));
        Assert.True(PromptSchedule.IsScheduled("x [b:c:100]")); // scheduled syntax, even where the step count makes it constant
    }

    [Fact]
    public void StepsBelowOneAreRefused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => PromptSchedule.Parse("a", 0));

    /// <summary>
    /// Every reference case: where lark's reading is the same under every hash seed, exactly that schedule; where it is not
    /// (a run of brackets next to an edit: lark 1.1.5's choice between an edit and plain text follows Python's string
    /// hashing, so A1111's own result changes from process to process), one of the schedules lark gave. A prompt with several
    /// such places has a reading for each combination, more than 64 processes show: there (three readings or more) the
    /// end steps must be those of one reading.
    /// </summary>
    [Fact]
    public void EveryCaseOfTheLarkReferenceMatches()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Data", "reference", "prompt_schedules.json")));
        var cases = json.RootElement.GetProperty("cases");
        Assert.True(cases.GetArrayLength() > 1000);
        int scheduled = 0, unsettled = 0;
        var failures = new List<string>();
        foreach (var c in cases.EnumerateArray())
        {
            string prompt = c.GetProperty("prompt").GetString()!;
            int steps = c.GetProperty("steps").GetInt32();
            var candidates = c.TryGetProperty("schedule", out var one) ? [Read(one)] : c.GetProperty("schedules").EnumerateArray().Select(Read).ToArray();
            if (candidates.Length > 1) unsettled++;
            if (candidates[0].Length > 1) scheduled++;
            var actual = Schedule(prompt, steps);
            bool matches = candidates.Any(expected => expected.SequenceEqual(actual))
                || candidates.Length >= 3 && candidates.Any(expected => expected.Select(e => e.Item1).SequenceEqual(actual.Select(e => e.Item1)));
            if (!matches)
                failures.Add($"{JsonSerializer.Serialize(prompt)} ({steps} steps): expected {string.Join(" or ", candidates.Select(Show))}, got {Show(actual)}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {cases.GetArrayLength()} differ:\n{string.Join("\n", failures.Take(20))}");
        Assert.True(scheduled > 300 && unsettled < cases.GetArrayLength() / 5, $"{scheduled} reference cases schedule something, {unsettled} are unsettled.");

        static (int, string)[] Read(JsonElement schedule) => [.. schedule.EnumerateArray().Select(e => (e[0].GetInt32(), e[1].GetString()!))];
        static string Show((int, string)[] s) => string.Join(", ", s.Select(e => $"({e.Item1}, {JsonSerializer.Serialize(e.Item2)})"));
    }

    [Fact]
    public void RandomStringsNeverThrowAndGiveWellFormedSchedules()
    {
        var rng = new Random(16);
        const string alphabet = "[[[]]]((()):::||\\ ab.1234-e+\n\t\u00e9\u4e2d";
        var text = new StringBuilder();
        for (int n = 0; n < 20_000; n++)
        {
            text.Clear();
            int length = rng.Next(0, 40);
            for (int i = 0; i < length; i++)
                text.Append(rng.Next(20) == 0 ? (char)rng.Next(0, 0x10000) : alphabet[rng.Next(alphabet.Length)]); // lone surrogates too
            string prompt = text.ToString();
            int steps = rng.Next(1, 60);
            var schedule = PromptSchedule.Parse(prompt, steps);
            Assert.NotEmpty(schedule);
            Assert.Equal(steps, schedule[^1].EndStep);
            for (int i = 0; i < schedule.Count; i++)
            {
                Assert.InRange(schedule[i].EndStep, 1, steps);
                if (i > 0) Assert.True(schedule[i].EndStep > schedule[i - 1].EndStep, prompt);
                Assert.True(schedule[i].Text.Length <= prompt.Length, prompt);
            }
            // Scheduled syntax always changes the text (its brackets go), so "scheduled" and "not the prompt itself" agree.
            Assert.Equal(PromptSchedule.IsScheduled(prompt), schedule.Count > 1 || schedule[0].Text != prompt);
        }
    }
}

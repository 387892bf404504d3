using System.Globalization;
using System.Text;

namespace MLNet.Diffusion.Tokenization;

/// <summary>One entry of a prompt's schedule: the text that conditions the UNet up to and including call <see cref="EndStep"/>.</summary>
/// <param name="EndStep">The last step (0-based UNet call index, see <see cref="PromptSchedule"/>) this text conditions; the
/// last entry's is the step count.</param>
/// <param name="Text">The prompt text for those steps, with its weighting syntax left as it was written.</param>
internal readonly record struct ScheduledText(int EndStep, string Text);

/// <summary>
/// AUTOMATIC1111's prompt editing and alternation (stable-diffusion-webui's
/// <c>prompt_parser.get_learned_conditioning_prompt_schedules</c>, documented in its wiki under "Prompt editing" and
/// "Alternating words"): <c>[from:to:when]</c> conditions on <c>from</c> up to step <c>when</c> and on <c>to</c> after it,
/// <c>[to:when]</c> adds <c>to</c> after step <c>when</c>, <c>[from::when]</c> removes <c>from</c> after it, and
/// <c>[a|b|c]</c> takes a, b, c, a, … at steps 1, 2, 3, 4, …; they nest, and everything else (weighting syntax included)
/// is kept as written, for <see cref="PromptAttention"/> to read.
/// </summary>
/// <remarks>
/// <para>The result is A1111's list of (end step, text): the sorted, distinct steps at which some text may change (every
/// <c>when</c> in the prompt that is at least 1, the step count, and every step when the prompt alternates), each with the
/// text at that step. A <c>when</c> written with a decimal point is a fraction of the steps, <c>int(when × steps)</c>, and
/// one without is a step number (A1111 since 1.6; its older rule, "below 1 is a fraction", is its
/// <c>use_old_scheduling</c> option); either is capped at the step count, and one below 1 means "from the start".</para>
/// <para>A1111 reads the prompt with a lark grammar; this is a recursive-descent reader of the same language. Inside a
/// bracket the text must be well formed (brackets matched, <c>:</c> and <c>|</c> only where the grammar has them); at the
/// top level a bracket or colon that starts nothing well formed is plain text, and one that does start a construct opens it.
/// (Some prompts, with a run of brackets beside an edit such as <c>x[b:3][</c>, can be read either way; A1111's lark
/// parser then picks by the order of hashed sets, so its result changes with Python's hash seed from one process to the
/// next.) A prompt the grammar does not accept at all
/// (a <c>|</c> outside an alternation, a backslash at the end or before a line break) has no schedule: its one entry is the
/// prompt itself, as A1111 returns it. <c>\</c> escapes the next character (it stays in the text, where the weighting
/// syntax reads <c>\(</c>, <c>\)</c>, <c>\[</c>, <c>\]</c> and <c>\\</c>). Two deliberate differences: a prompt nested
/// deeper than <see cref="MaxDepth"/> brackets has no schedule (A1111 exceeds Python's recursion limit), and a
/// <c>when</c> too large for a double counts as the step count (A1111 raises an overflow error).</para>
/// <para>Which steps: A1111 counts calls of its denoiser (<c>CFGDenoiser.step</c>, from 0, one per model evaluation; its
/// second-order samplers count two per step) and gives call k the first entry whose end step is ≥ k
/// (<c>reconstruct_cond_batch</c>). So with 20 steps, <c>[fantasy:cyberpunk:16]</c> conditions calls 0–16 on fantasy and
/// 17–19 on cyberpunk, and <c>[dog|cat]</c> gives dog, dog, cat, dog, cat, …; the pipeline reproduces that with its own
/// UNet calls (see <c>ConditioningSchedule</c>).</para>
/// </remarks>
internal static class PromptSchedule
{
    /// <summary>The deepest bracket nesting read; a deeper prompt has no schedule.</summary>
    public const int MaxDepth = 64;

    /// <summary>
    /// The schedule of <paramref name="prompt"/> over <paramref name="steps"/> steps: entries with increasing
    /// <see cref="ScheduledText.EndStep"/>, the last one's equal to <paramref name="steps"/>. A prompt without prompt
    /// editing or alternation gives one entry, the prompt itself. Never throws for any string.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="steps"/> is below 1.</exception>
    public static IReadOnlyList<ScheduledText> Parse(string prompt, int steps)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        if (prompt.IndexOf('[') < 0 || Read(prompt) is not { } tree || !HasSchedule(tree)) return [new ScheduledText(steps, prompt)];

        var ends = new SortedSet<int> { steps };
        CollectSteps(tree, steps, ends);
        var result = new ScheduledText[ends.Count];
        var text = new StringBuilder(prompt.Length);
        int i = 0;
        foreach (int step in ends)
        {
            text.Clear();
            Render(tree, step, steps, text);
            result[i++] = new ScheduledText(step, text.ToString());
        }
        return result;
    }

    /// <summary>Whether <paramref name="prompt"/> uses prompt editing or alternation (at any step count).</summary>
    public static bool IsScheduled(string prompt) =>
        prompt is not null && prompt.IndexOf('[') >= 0 && Read(prompt) is { } tree && HasSchedule(tree);

    // ---- The tree -------------------------------------------------------------------------------------

    private abstract class Node;

    /// <summary>Text kept as written (plain text, escapes, and the brackets and colons of weighting syntax).</summary>
    private sealed class Literal(string text) : Node
    {
        public string Text { get; } = text;
    }

    private sealed class Sequence(List<Node> items) : Node
    {
        public List<Node> Items { get; } = items;
    }

    /// <summary><c>[before:after:when]</c>; <see cref="Before"/> is null for <c>[after:when]</c>.</summary>
    private sealed class Edit(Sequence? before, Sequence after, double when, bool fraction) : Node
    {
        public Sequence? Before { get; } = before;
        public Sequence After { get; } = after;

        /// <summary>The step up to which <see cref="Before"/> holds: A1111's <c>min(steps, int(v))</c>, v = when × steps
        /// for a number with a decimal point, else when; 0 for anything below 1 (no step is ≤ it).</summary>
        public int EndStep(int steps)
        {
            double v = fraction ? when * steps : when;
            return v >= steps ? steps : v < 1 ? 0 : (int)v;
        }
    }

    /// <summary><c>[a|b|…]</c>: option (step − 1) mod n at step n (steps from 1).</summary>
    private sealed class Alternation(List<Sequence> options) : Node
    {
        public List<Sequence> Options { get; } = options;
    }

    private static bool HasSchedule(Node node) => node switch
    {
        Edit or Alternation => true,
        Sequence s => s.Items.Exists(HasSchedule),
        _ => false,
    };

    /// <summary>A1111's <c>collect_steps</c>: every edit's end step that is at least 1 (in every branch, taken or not), and
    /// every step from 1 when anything alternates.</summary>
    private static void CollectSteps(Node node, int steps, SortedSet<int> ends)
    {
        switch (node)
        {
            case Sequence s:
                foreach (var item in s.Items) CollectSteps(item, steps, ends);
                break;
            case Edit e:
                int end = e.EndStep(steps);
                if (end >= 1) ends.Add(end);
                if (e.Before is not null) CollectSteps(e.Before, steps, ends);
                CollectSteps(e.After, steps, ends);
                break;
            case Alternation a:
                for (int step = 1; step <= steps; step++) ends.Add(step);
                foreach (var option in a.Options) CollectSteps(option, steps, ends);
                break;
        }
    }

    /// <summary>A1111's <c>at_step</c>: the text at <paramref name="step"/>.</summary>
    private static void Render(Node node, int step, int steps, StringBuilder text)
    {
        switch (node)
        {
            case Literal l:
                text.Append(l.Text);
                break;
            case Sequence s:
                foreach (var item in s.Items) Render(item, step, steps, text);
                break;
            case Edit e:
                var taken = step <= e.EndStep(steps) ? e.Before : e.After;
                if (taken is not null) Render(taken, step, steps, text);
                break;
            case Alternation a:
                Render(a.Options[(step - 1) % a.Options.Count], step, steps, text);
                break;
        }
    }

    // ---- The reader -----------------------------------------------------------------------------------

    /// <summary>The prompt's tree, or null when the grammar does not accept it (or it nests deeper than <see cref="MaxDepth"/>).</summary>
    private static Sequence? Read(string prompt)
    {
        var reader = new Reader(prompt);
        return reader.TopLevel();
    }

    /// <summary>
    /// A1111's grammar, read from the left:
    /// <code>
    /// start:      (prompt | /[][():]/+)*
    /// prompt:     (emphasized | scheduled | alternate | plain | WHITESPACE)*
    /// emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
    /// scheduled:  "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
    /// alternate:  "[" prompt ("|" [prompt])+ "]"
    /// plain:      /([^\\\[\]():|]|\\.)+/          NUMBER: lark's SIGNED_NUMBER
    /// </code>
    /// Inside a bracket the extent of each construct is fixed by its brackets, so reading greedily from the left finds a
    /// parse whenever one exists; at the top level a bracket that starts no construct is read as text, as the grammar's
    /// <c>start</c> rule allows.
    /// </summary>
    private sealed class Reader(string s)
    {
        private int _pos, _depth;
        private bool _tooDeep;

        public Sequence? TopLevel()
        {
            var items = new List<Node>();
            while (_pos < s.Length)
            {
                char c = s[_pos];
                switch (c)
                {
                    case '[' or '(':
                        int start = _pos;
                        if (Construct() is { } node)
                        {
                            items.Add(node);
                            break;
                        }
                        if (_tooDeep) return null;
                        _pos = start + 1;
                        items.Add(new Literal(c.ToString()));
                        break;
                    case ']' or ')' or ':':
                        _pos++;
                        items.Add(new Literal(c.ToString()));
                        break;
                    case '|':
                        return null;
                    default:
                        if (Plain() is not { } plain) return null;
                        items.Add(plain);
                        break;
                }
            }
            return new Sequence(items);
        }

        /// <summary>A <c>prompt</c> inside a bracket: up to the next <c>] ) : |</c> or the end; null when a bracket in it is not well formed.</summary>
        private Sequence? Inner()
        {
            var items = new List<Node>();
            while (_pos < s.Length)
            {
                char c = s[_pos];
                if (c is ']' or ')' or ':' or '|') break;
                Node? node = c is '[' or '(' ? Construct() : Plain();
                if (node is null) return null;
                items.Add(node);
            }
            return new Sequence(items);
        }

        /// <summary>A run of plain text and escapes (<c>\</c> and any character but a line break); null at a backslash that escapes nothing.</summary>
        private Literal? Plain()
        {
            int start = _pos;
            while (_pos < s.Length)
            {
                char c = s[_pos];
                if (c is '[' or ']' or '(' or ')' or ':' or '|') break;
                if (c == '\\')
                {
                    if (_pos + 1 >= s.Length || s[_pos + 1] == '\n') return null;
                    _pos += 2;
                }
                else
                {
                    _pos++;
                }
            }
            return new Literal(s[start.._pos]);
        }

        /// <summary>The construct opening at <c>_pos</c> (a <c>[</c> or <c>(</c>), or null (the position is then undefined).</summary>
        private Node? Construct()
        {
            if (++_depth > MaxDepth)
            {
                _tooDeep = true;
                _depth--;
                return null;
            }
            var node = s[_pos] == '(' ? Round() : Square();
            _depth--;
            return node;
        }

        /// <summary><c>"(" prompt ")"</c> or <c>"(" prompt ":" prompt ")"</c>, kept as written.</summary>
        private Node? Round()
        {
            _pos++;
            if (Inner() is not { } first) return null;
            var items = new List<Node> { new Literal("("), first };
            if (At(':'))
            {
                _pos++;
                if (Inner() is not { } second) return null;
                items.Add(new Literal(":"));
                items.Add(second);
            }
            if (!At(')')) return null;
            _pos++;
            items.Add(new Literal(")"));
            return new Sequence(items);
        }

        /// <summary><c>[a]</c> (kept as written), <c>[a|b|…]</c>, <c>[to:when]</c> or <c>[from:to:when]</c>.</summary>
        private Node? Square()
        {
            _pos++;
            if (Inner() is not { } first) return null;
            if (At(']'))
            {
                _pos++;
                return new Sequence([new Literal("["), first, new Literal("]")]);
            }
            if (At('|'))
            {
                var options = new List<Sequence> { first };
                while (At('|'))
                {
                    _pos++;
                    if (Inner() is not { } option) return null;
                    options.Add(option);
                }
                if (!At(']')) return null;
                _pos++;
                return new Alternation(options);
            }
            if (!At(':')) return null;
            _pos++;
            int afterColon = _pos;
            if (When() is { } onlyWhen) return new Edit(null, first, onlyWhen.Value, onlyWhen.Fraction);
            _pos = afterColon;
            if (Inner() is not { } second || !At(':')) return null;
            _pos++;
            return When() is { } when ? new Edit(first, second, when.Value, when.Fraction) : null;
        }

        /// <summary><c>[WHITESPACE] NUMBER [WHITESPACE] "]"</c>: the number, and whether it has a decimal point; null if the text is not that.</summary>
        private (double Value, bool Fraction)? When()
        {
            SkipWhiteSpace();
            int start = _pos;
            if (_pos < s.Length && s[_pos] is '+' or '-') _pos++;
            int integerDigits = Digits();
            bool point = At('.');
            int fractionDigits = 0;
            if (point)
            {
                _pos++;
                fractionDigits = Digits();
            }
            if (integerDigits == 0 && fractionDigits == 0) return null;
            // An exponent counts only with digits after it (lark's _EXP: ("e"|"E") SIGNED_INT).
            if (_pos < s.Length && s[_pos] is 'e' or 'E')
            {
                int mark = _pos++;
                if (_pos < s.Length && s[_pos] is '+' or '-') _pos++;
                if (Digits() == 0) _pos = mark;
            }
            int end = _pos;
            SkipWhiteSpace();
            if (!At(']')) return null;
            _pos++;
            double value = double.Parse(s.AsSpan(start, end - start), NumberStyles.Float, CultureInfo.InvariantCulture);
            return (value, point);
        }

        private int Digits()
        {
            int start = _pos;
            while (_pos < s.Length && char.IsAsciiDigit(s[_pos])) _pos++;
            return _pos - start;
        }

        private void SkipWhiteSpace()
        {
            while (_pos < s.Length && char.IsWhiteSpace(s[_pos])) _pos++;
        }

        private bool At(char c) => _pos < s.Length && s[_pos] == c;
    }
}

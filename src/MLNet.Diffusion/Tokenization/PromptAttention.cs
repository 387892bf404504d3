using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace MLNet.Diffusion.Tokenization;

/// <summary>One run of a prompt with one emphasis weight, or a <c>BREAK</c> (a chunk boundary).</summary>
/// <param name="Text">The run's text (empty for a break).</param>
/// <param name="Weight">Its weight: 1 is plain; A1111's <c>(text)</c> is 1.1, <c>[text]</c> 1/1.1, <c>(text:1.5)</c> 1.5.</param>
/// <param name="IsBreak">A <c>BREAK</c> keyword: the text after it starts a new chunk of tokens.</param>
internal readonly record struct PromptFragment(string Text, double Weight, bool IsBreak = false);

/// <summary>
/// AUTOMATIC1111's attention syntax (stable-diffusion-webui's <c>prompt_parser.parse_prompt_attention</c>, documented in
/// its wiki under "Attention/emphasis"): <c>(text)</c> multiplies the weight of text by 1.1, <c>[text]</c> divides it by
/// 1.1, <c>(text:w)</c> multiplies it by w, brackets nest by multiplying, <c>\(</c> <c>\)</c> <c>\[</c> <c>\]</c> and
/// <c>\\</c> are literal, an unclosed bracket applies to the rest of the prompt, a closing bracket without an opener is
/// kept as text, and the keyword <c>BREAK</c> (upper case, a word of its own) ends a chunk. Runs with equal weights are merged,
/// and an empty prompt gives one empty run of weight 1, as A1111 returns them. Two deliberate differences: a weight that is
/// not a number ("1.2.3") counts as 1 where A1111 fails, and weights are kept within ±<see cref="MaxWeight"/>.
/// </summary>
internal static partial class PromptAttention
{
    /// <summary>The multiplier of a round bracket; a square bracket divides by it.</summary>
    public const double RoundBracketMultiplier = 1.1;

    /// <summary>Weights are kept within ±this (A1111 has no bound; deep nesting or huge explicit weights would otherwise
    /// overflow to infinity and make the embeddings non-finite).</summary>
    public const double MaxWeight = 100;

    // The token pattern of parse_prompt_attention: an escaped bracket or backslash, a lone backslash, an opening bracket,
    // ":number)" (an explicit weight, closing a round bracket), a closing bracket, a run of plain text, or a lone colon.
    [GeneratedRegex(@"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")]
    private static partial Regex Token();

    [GeneratedRegex(@"\s*\bBREAK\b\s*")]
    private static partial Regex Break();

    /// <summary>Parses a prompt into weighted runs. Never throws for any string; every weight is finite.</summary>
    public static IReadOnlyList<PromptFragment> Parse(string prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var runs = new List<(StringBuilder Text, double Weight, bool IsBreak)>();
        var round = new Stack<int>();
        var square = new Stack<int>();

        void Multiply(int start, double multiplier)
        {
            for (int i = start; i < runs.Count; i++)
                if (!runs[i].IsBreak) runs[i] = (runs[i].Text, Math.Clamp(runs[i].Weight * multiplier, -MaxWeight, MaxWeight), false);
        }

        foreach (Match m in Token().Matches(prompt))
        {
            string text = m.Value;
            if (text.StartsWith('\\'))
                runs.Add((new StringBuilder(text[1..]), 1.0, false));
            else if (text == "(")
                round.Push(runs.Count);
            else if (text == "[")
                square.Push(runs.Count);
            else if (m.Groups[1].Success && round.Count > 0)
                Multiply(round.Pop(), ParseWeight(m.Groups[1].Value));
            else if (text == ")" && round.Count > 0)
                Multiply(round.Pop(), RoundBracketMultiplier);
            else if (text == "]" && square.Count > 0)
                Multiply(square.Pop(), 1 / RoundBracketMultiplier);
            else
            {
                var parts = Break().Split(text);
                for (int i = 0; i < parts.Length; i++)
                {
                    if (i > 0) runs.Add((new StringBuilder(), 1.0, true));
                    runs.Add((new StringBuilder(parts[i]), 1.0, false));
                }
            }
        }
        // Unclosed brackets apply to everything after them (A1111 multiplies from each opener, in stack order).
        foreach (int start in round.Reverse()) Multiply(start, RoundBracketMultiplier);
        foreach (int start in square.Reverse()) Multiply(start, 1 / RoundBracketMultiplier);

        if (runs.Count == 0) return [new PromptFragment("", 1.0)];
        // Merge neighbouring runs of equal weight (a break has weight −1 in A1111, so it never merges).
        var merged = new List<PromptFragment>(runs.Count);
        foreach (var (text, weight, isBreak) in runs)
        {
            if (!isBreak && merged.Count > 0 && !merged[^1].IsBreak && merged[^1].Weight == weight)
                merged[^1] = merged[^1] with { Text = merged[^1].Text + text };
            else
                merged.Add(new PromptFragment(isBreak ? "" : text.ToString(), isBreak ? 1.0 : weight, isBreak));
        }
        return merged;
    }

    /// <summary>Whether the prompt uses any of the syntax (a bracket, an escape or <c>BREAK</c>): a plain prompt is encoded as it is.</summary>
    public static bool IsPlain(string prompt) => prompt.AsSpan().IndexOfAny("()[]\\") < 0 && !prompt.Contains("BREAK", StringComparison.Ordinal);

    /// <summary>
    /// An explicit weight as Python's <c>float()</c> reads the matched text ("1.5", ".5", "+2", "1.2.3" is not a number);
    /// what is not a finite number counts as 1, so a weight can never make the embeddings non-finite.
    /// </summary>
    private static double ParseWeight(string text) =>
        double.TryParse(text, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double w) && double.IsFinite(w) ? w : 1.0;
}

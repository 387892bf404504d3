namespace MLNet.Diffusion.Tests.Docs;

/// <summary>
/// One fenced <c>```csharp</c> block of a Markdown file: its code (indentation of the fence removed) and the 1-based
/// line of the file where the code starts, so that a compiler error or a stack frame can name the file's own line.
/// </summary>
/// <param name="Index">The block's position among the file's C# blocks, from 0.</param>
/// <param name="FirstLine">The 1-based line of the file that holds the block's first line of code.</param>
/// <param name="Code">The code, one line per line of the file.</param>
internal sealed record ReadmeCodeBlock(int Index, int FirstLine, string Code)
{
    /// <summary>
    /// The first line of code that is not blank, a comment, a preprocessor directive or a <c>using</c> directive: what
    /// tells the blocks apart in a test's name.
    /// </summary>
    public string Opening => Code.Split('\n').Select(line => line.Trim()).FirstOrDefault(IsStatement) ?? "";

    /// <summary>The C# blocks of <paramref name="markdown"/>, in order (<c>```csharp</c>, <c>```cs</c> or <c>```c#</c> fences).</summary>
    /// <param name="markdown">The Markdown text.</param>
    /// <param name="fileName">The file's name, for the error about an unclosed block.</param>
    /// <exception cref="FormatException">A C# fence is never closed (the message names its line).</exception>
    public static IReadOnlyList<ReadmeCodeBlock> Parse(string markdown, string fileName)
    {
        var lines = markdown.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        var blocks = new List<ReadmeCodeBlock>();
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            string trimmed = line.TrimStart();
            if (!trimmed.StartsWith("```", StringComparison.Ordinal)) continue;
            int indent = line.Length - trimmed.Length;
            string fence = new('`', trimmed.Length - trimmed.TrimStart('`').Length);
            string info = trimmed[fence.Length..].Trim();
            int end = i + 1;
            while (end < lines.Length && !lines[end].TrimStart().StartsWith(fence, StringComparison.Ordinal)) end++;
            if (IsCSharp(info))
            {
                if (end == lines.Length)
                    throw new FormatException($"{fileName} line {i + 1}: the C# block opened here is never closed (add a line '{fence}').");
                var code = lines[(i + 1)..end].Select(l => l.Length >= indent && string.IsNullOrWhiteSpace(l[..indent]) ? l[indent..] : l.TrimStart());
                blocks.Add(new ReadmeCodeBlock(blocks.Count, i + 2, string.Join('\n', code)));
            }
            i = end;
        }
        return blocks;
    }

    private static bool IsStatement(string line) =>
        line.Length > 0 && !line.StartsWith("//", StringComparison.Ordinal) && !line.StartsWith('#')
        && (!line.StartsWith("using ", StringComparison.Ordinal) || line.StartsWith("using var ", StringComparison.Ordinal));

    private static bool IsCSharp(string info)
    {
        string language = info.Split(' ', 2)[0];
        return language is "csharp" or "cs" or "c#" or "C#";
    }
}

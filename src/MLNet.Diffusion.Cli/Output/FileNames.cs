using System.Buffers;
using System.Globalization;
using System.Text;

namespace MLNet.Diffusion.Cli.Output;

/// <summary>
/// File names made from prompts, and the one rule for the names of files the tool writes into, and reads back from, an
/// output folder. The rule keeps what any file system stores, in any script, and refuses only what is unsafe on one of
/// the systems a folder of images may be copied to (Windows' reserved characters and device names included).
/// </summary>
internal static class FileNames
{
    /// <summary>Characters Windows refuses in a file name; refused everywhere, since output folders travel between systems.</summary>
    private static readonly SearchValues<char> s_reserved = SearchValues.Create("<>:\"/\\|?*");

    /// <summary>
    /// A lower-case, dash-separated slug of a prompt, at most <paramref name="maxLength"/> UTF-16 characters; "image" when
    /// nothing is left. Letters and digits of every script are kept ("café", "日本の猫", "ελληνικά"), with the marks that
    /// follow them (a decomposed accent, Devanagari's vowel signs); the text is not normalized, since the tool runs in
    /// .NET's invariant globalization mode, where normalization does nothing, and a slug must not depend on it. Every run
    /// of anything else (spaces, punctuation, path separators, control characters, symbols, emoji) becomes one dash, and
    /// dashes at either end are dropped. The tool always adds a row number or a seed, so a slug is never a whole name;
    /// with either, every name it makes passes <see cref="IsPlain"/>.
    /// </summary>
    public static string Slug(string text, int maxLength = 40)
    {
        ArgumentNullException.ThrowIfNull(text);
        var s = new StringBuilder();
        Span<char> lower = stackalloc char[2];
        bool inWord = false; // the last rune kept was a letter, a digit or one of their marks
        foreach (var rune in text.EnumerateRunes()) // a lone surrogate comes as U+FFFD, a separator
        {
            bool mark = Rune.GetUnicodeCategory(rune) is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark;
            if (Rune.IsLetterOrDigit(rune) || (mark && inWord))
            {
                int length = Rune.ToLowerInvariant(rune).EncodeToUtf16(lower);
                if (s.Length + length > maxLength) break;
                s.Append(lower[..length]);
                inWord = true;
            }
            else if (!mark || !inWord)
            {
                if (s.Length >= maxLength) break;
                if (s.Length > 0 && s[^1] != '-') s.Append('-');
                inWord = false;
            }
        }
        var slug = s.ToString().Trim('-');
        return slug.Length == 0 ? "image" : slug;
    }

    /// <summary>
    /// The rule for the names of files the tool writes into, and reads back from, an output folder: <see cref="WhyNotPlain"/>
    /// finds nothing wrong. Every name <see cref="Slug"/> makes for an image passes.
    /// </summary>
    public static bool IsPlain(string fileName) => WhyNotPlain(fileName) is null;

    /// <summary>
    /// What makes <paramref name="fileName"/> unsafe as the name of a file in an output folder, or null when nothing does.
    /// Refused: an empty name; more than 255 UTF-8 bytes; a folder part, or any of &lt; &gt; : " / \ | ? *; a control
    /// character or a lone surrogate; a leading '.' (which rules out "." and "..", hidden files, and the temporary names of
    /// <see cref="AtomicImageFile"/> and the manifest, which a later batch deletes as strays); a trailing '.' or space
    /// (Windows drops them); and Windows' device names (CON, PRN, AUX, NUL, COM0–COM9, LPT0–LPT9 and their superscript
    /// forms), with or without an extension.
    /// </summary>
    public static string? WhyNotPlain(string fileName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        if (fileName.Length == 0) return "it is empty";
        if (fileName[0] == '.') return "it starts with '.'";
        if (fileName[^1] is '.' or ' ') return "it ends with '.' or a space";
        if (fileName.AsSpan().ContainsAny(s_reserved) || fileName != Path.GetFileName(fileName))
            return "it has a folder part or one of < > : \" / \\ | ? *";
        for (int i = 0; i < fileName.Length; i++)
        {
            char ch = fileName[i];
            if (char.IsControl(ch)) return "it has a control character";
            if (char.IsHighSurrogate(ch) && i + 1 < fileName.Length && char.IsLowSurrogate(fileName[i + 1])) i++;
            else if (char.IsSurrogate(ch)) return "it has a lone surrogate (not valid Unicode)";
        }
        if (Encoding.UTF8.GetByteCount(fileName) > 255) return "it is longer than 255 bytes";
        if (IsDeviceName(fileName)) return "it is a device name on Windows";
        return null;
    }

    /// <summary>Whether the part before the first '.' (trailing spaces ignored) is one of Windows' reserved device names.</summary>
    private static bool IsDeviceName(string fileName)
    {
        var stem = fileName.AsSpan();
        int dot = stem.IndexOf('.');
        if (dot >= 0) stem = stem[..dot];
        stem = stem.TrimEnd(' ');
        if (stem.Length == 3)
            return stem.Equals("CON", StringComparison.OrdinalIgnoreCase) || stem.Equals("PRN", StringComparison.OrdinalIgnoreCase)
                || stem.Equals("AUX", StringComparison.OrdinalIgnoreCase) || stem.Equals("NUL", StringComparison.OrdinalIgnoreCase);
        return stem.Length == 4
            && (stem[..3].Equals("COM", StringComparison.OrdinalIgnoreCase) || stem[..3].Equals("LPT", StringComparison.OrdinalIgnoreCase))
            && (char.IsAsciiDigit(stem[3]) || stem[3] is '¹' or '²' or '³');
    }

    /// <summary><paramref name="directory"/>/<paramref name="stem"/>.png, or stem-2.png, stem-3.png … when taken.</summary>
    public static string Unique(string directory, string stem)
    {
        var path = Path.Combine(directory, stem + ".png");
        for (int i = 2; File.Exists(path); i++) path = Path.Combine(directory, $"{stem}-{i}.png");
        return path;
    }
}

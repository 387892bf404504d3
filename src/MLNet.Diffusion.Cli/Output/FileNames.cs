using System.Text;

namespace MLNet.Diffusion.Cli.Output;

/// <summary>File names made from prompts.</summary>
internal static class FileNames
{
    /// <summary>A lower-case, dash-separated slug of a prompt (letters and digits only), at most <paramref name="maxLength"/> characters; "image" when nothing is left.</summary>
    public static string Slug(string text, int maxLength = 40)
    {
        var s = new StringBuilder();
        foreach (var ch in text.Normalize(NormalizationForm.FormKD))
        {
            if (s.Length >= maxLength) break;
            if (char.IsAsciiLetterOrDigit(ch)) s.Append(char.ToLowerInvariant(ch));
            else if (char.GetUnicodeCategory(ch) == System.Globalization.UnicodeCategory.NonSpacingMark) continue; // é → e
            else if (s.Length > 0 && s[^1] != '-') s.Append('-');
        }
        var slug = s.ToString().Trim('-');
        return slug.Length == 0 ? "image" : slug;
    }

    /// <summary>
    /// The rule for the names of files the tool writes into, and reads back from, an output folder: not empty, at most
    /// 255 UTF-8 bytes, no folder part, no control character or character the file system refuses, and not starting with
    /// '.' — which rules out "." and "..", hidden files, and the temporary names of <see cref="AtomicImageFile"/> and the
    /// manifest, which a later batch deletes as strays. Every name <see cref="Slug"/> makes for an image passes.
    /// </summary>
    public static bool IsPlain(string fileName) =>
        fileName.Length > 0
        && Encoding.UTF8.GetByteCount(fileName) <= 255
        && fileName[0] != '.'
        && fileName == Path.GetFileName(fileName)
        && fileName.IndexOfAny(Path.GetInvalidFileNameChars()) < 0
        && !fileName.Any(char.IsControl);

    /// <summary><paramref name="directory"/>/<paramref name="stem"/>.png, or stem-2.png, stem-3.png … when taken.</summary>
    public static string Unique(string directory, string stem)
    {
        var path = Path.Combine(directory, stem + ".png");
        for (int i = 2; File.Exists(path); i++) path = Path.Combine(directory, $"{stem}-{i}.png");
        return path;
    }
}

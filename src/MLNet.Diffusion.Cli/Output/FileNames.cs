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

    /// <summary><paramref name="directory"/>/<paramref name="stem"/>.png, or stem-2.png, stem-3.png … when taken.</summary>
    public static string Unique(string directory, string stem)
    {
        var path = Path.Combine(directory, stem + ".png");
        for (int i = 2; File.Exists(path); i++) path = Path.Combine(directory, $"{stem}-{i}.png");
        return path;
    }
}

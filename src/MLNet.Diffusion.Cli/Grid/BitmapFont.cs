namespace MLNet.Diffusion.Cli.Grid;

/// <summary>
/// A tiny built-in 5×7 pixel font (upper-case letters, digits and common punctuation; lower case is drawn upper case,
/// anything else as '?'), so contact sheets get labels without a font library.
/// </summary>
internal static class BitmapFont
{
    /// <summary>Glyph width in font pixels.</summary>
    public const int GlyphWidth = 5;

    /// <summary>Glyph height in font pixels.</summary>
    public const int GlyphHeight = 7;

    /// <summary>Advance from one character to the next, in font pixels (one blank column between glyphs).</summary>
    public const int Advance = GlyphWidth + 1;

    // Each glyph: 7 rows of 5 columns, '#' set, '.' clear.
    private static readonly Dictionary<char, string> Glyphs = new()
    {
        ['A'] = ".###. #...# #...# ##### #...# #...# #...#",
        ['B'] = "####. #...# #...# ####. #...# #...# ####.",
        ['C'] = ".###. #...# #.... #.... #.... #...# .###.",
        ['D'] = "###.. #..#. #...# #...# #...# #..#. ###..",
        ['E'] = "##### #.... #.... ####. #.... #.... #####",
        ['F'] = "##### #.... #.... ####. #.... #.... #....",
        ['G'] = ".###. #...# #.... #.### #...# #...# .####",
        ['H'] = "#...# #...# #...# ##### #...# #...# #...#",
        ['I'] = ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
        ['J'] = "..### ...#. ...#. ...#. ...#. #..#. .##..",
        ['K'] = "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
        ['L'] = "#.... #.... #.... #.... #.... #.... #####",
        ['M'] = "#...# ##.## #.#.# #.#.# #...# #...# #...#",
        ['N'] = "#...# #...# ##..# #.#.# #..## #...# #...#",
        ['O'] = ".###. #...# #...# #...# #...# #...# .###.",
        ['P'] = "####. #...# #...# ####. #.... #.... #....",
        ['Q'] = ".###. #...# #...# #...# #.#.# #..#. .##.#",
        ['R'] = "####. #...# #...# ####. #.#.. #..#. #...#",
        ['S'] = ".#### #.... #.... .###. ....# ....# ####.",
        ['T'] = "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
        ['U'] = "#...# #...# #...# #...# #...# #...# .###.",
        ['V'] = "#...# #...# #...# #...# #...# .#.#. ..#..",
        ['W'] = "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
        ['X'] = "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
        ['Y'] = "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
        ['Z'] = "##### ....# ...#. ..#.. .#... #.... #####",
        ['0'] = ".###. #...# #..## #.#.# ##..# #...# .###.",
        ['1'] = "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
        ['2'] = ".###. #...# ....# ...#. ..#.. .#... #####",
        ['3'] = "##### ...#. ..#.. ...#. ....# #...# .###.",
        ['4'] = "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
        ['5'] = "##### #.... ####. ....# ....# #...# .###.",
        ['6'] = "..##. .#... #.... ####. #...# #...# .###.",
        ['7'] = "##### ....# ...#. ..#.. .#... .#... .#...",
        ['8'] = ".###. #...# #...# .###. #...# #...# .###.",
        ['9'] = ".###. #...# #...# .#### ....# ...#. .##..",
        [' '] = "..... ..... ..... ..... ..... ..... .....",
        ['-'] = "..... ..... ..... ##### ..... ..... .....",
        ['.'] = "..... ..... ..... ..... ..... .##.. .##..",
        [','] = "..... ..... ..... ..... .##.. ..#.. .#...",
        [':'] = "..... .##.. .##.. ..... .##.. .##.. .....",
        [';'] = "..... .##.. .##.. ..... .##.. ..#.. .#...",
        ['\''] = "..#.. ..#.. .#... ..... ..... ..... .....",
        ['"'] = ".#.#. .#.#. .#.#. ..... ..... ..... .....",
        ['!'] = "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
        ['?'] = ".###. #...# ....# ...#. ..#.. ..... ..#..",
        ['('] = "...#. ..#.. .#... .#... .#... ..#.. ...#.",
        [')'] = ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
        ['/'] = "..... ....# ...#. ..#.. .#... #.... .....",
        ['+'] = "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
        ['='] = "..... ..... ##### ..... ##### ..... .....",
        ['#'] = ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
        ['_'] = "..... ..... ..... ..... ..... ..... #####",
        ['%'] = "##... ##..# ...#. ..#.. .#... #..## ...##",
        ['&'] = ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#",
        ['*'] = "..... ..#.. #.#.# .###. #.#.# ..#.. .....",
    };

    private static readonly Dictionary<char, bool[]> Bits = Glyphs.ToDictionary(g => g.Key, g => Parse(g.Value));

    /// <summary>The width in image pixels of <paramref name="text"/> drawn at <paramref name="scale"/>.</summary>
    public static int MeasureWidth(string text, int scale) => text.Length == 0 ? 0 : (text.Length * Advance - 1) * scale;

    /// <summary>The longest prefix of <paramref name="text"/> that fits <paramref name="maxWidth"/> pixels, ending in "..." when cut.</summary>
    public static string Fit(string text, int maxWidth, int scale)
    {
        if (MeasureWidth(text, scale) <= maxWidth) return text;
        int chars = (maxWidth / scale + 1) / Advance - 3;
        return chars <= 0 ? "" : text[..chars].TrimEnd() + "...";
    }

    /// <summary>Draws <paramref name="text"/> into an RGBA buffer with its top-left corner at (x, y), clipped to the buffer.</summary>
    public static void Draw(Span<byte> rgba, int width, int height, string text, int x, int y, int scale, (byte R, byte G, byte B) color)
    {
        foreach (var raw in text)
        {
            var ch = char.ToUpperInvariant(raw);
            if (!Bits.TryGetValue(ch, out var bits)) bits = Bits[char.IsWhiteSpace(ch) ? ' ' : '?'];
            for (int gy = 0; gy < GlyphHeight; gy++)
                for (int gx = 0; gx < GlyphWidth; gx++)
                {
                    if (!bits[gy * GlyphWidth + gx]) continue;
                    for (int sy = 0; sy < scale; sy++)
                        for (int sx = 0; sx < scale; sx++)
                        {
                            int px = x + gx * scale + sx, py = y + gy * scale + sy;
                            if (px < 0 || py < 0 || px >= width || py >= height) continue;
                            int i = 4 * (py * width + px);
                            rgba[i] = color.R;
                            rgba[i + 1] = color.G;
                            rgba[i + 2] = color.B;
                            rgba[i + 3] = 255;
                        }
                }
            x += Advance * scale;
        }
    }

    private static bool[] Parse(string glyph)
    {
        var rows = glyph.Split(' ');
        if (rows.Length != GlyphHeight || rows.Any(r => r.Length != GlyphWidth)) throw new InvalidOperationException($"Bad glyph '{glyph}'.");
        return rows.SelectMany(r => r.Select(c => c == '#')).ToArray();
    }
}

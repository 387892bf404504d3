using Microsoft.ML.Data;

namespace MLNet.Diffusion.Cli.Grid;

/// <summary>
/// The layout of a contact sheet: one row per prompt, one column per seed, cells of the images' size. Around and
/// between cells is a gap of <see cref="Gap"/> pixels; above the first row a band of <see cref="LabelHeight"/> holds
/// each column's seed, and above each row another such band holds its prompt's number and text:
/// width = Gap + columns·(cell width + Gap), height = LabelHeight + rows·(LabelHeight + cell height + Gap).
/// </summary>
internal sealed record ContactSheet(int Rows, int Columns, int CellWidth, int CellHeight)
{
    /// <summary>Font scale: 1 for cells up to 511 pixels wide, 2 from 512, 4 from 1024.</summary>
    public int Scale => Math.Max(1, CellWidth / 256);

    /// <summary>Pixels around and between cells.</summary>
    public int Gap => 4 * Scale;

    /// <summary>Height of a label band: the font's height and 3 pixels above and below (scaled).</summary>
    public int LabelHeight => (BitmapFont.GlyphHeight + 6) * Scale;

    /// <summary>Sheet width in pixels.</summary>
    public int Width => Gap + Columns * (CellWidth + Gap);

    /// <summary>Sheet height in pixels.</summary>
    public int Height => LabelHeight + Rows * (LabelHeight + CellHeight + Gap);

    /// <summary>Left edge of column <paramref name="column"/>'s cells.</summary>
    public int CellX(int column) => Gap + column * (CellWidth + Gap);

    /// <summary>Top edge of row <paramref name="row"/>'s cells.</summary>
    public int CellY(int row) => LabelHeight + row * (LabelHeight + CellHeight + Gap) + LabelHeight;

    private static readonly (byte R, byte G, byte B) Background = (32, 32, 32);
    private static readonly (byte R, byte G, byte B) Ink = (230, 230, 230);

    /// <summary>Composes the sheet: <paramref name="cell"/>(row, column) gives each image (RGBA or BGRA, of the cell size).</summary>
    public MLImage Compose(Func<int, int, MLImage> cell, IReadOnlyList<string> rowLabels, IReadOnlyList<string> columnLabels)
    {
        int w = Width, h = Height;
        var rgba = new byte[4 * w * h];
        for (int i = 0; i < rgba.Length; i += 4)
        {
            rgba[i] = Background.R;
            rgba[i + 1] = Background.G;
            rgba[i + 2] = Background.B;
            rgba[i + 3] = 255;
        }
        int textTop = 3 * Scale;
        for (int c = 0; c < Columns; c++)
        {
            var label = BitmapFont.Fit(columnLabels[c], CellWidth, Scale);
            int x = CellX(c) + (CellWidth - BitmapFont.MeasureWidth(label, Scale)) / 2;
            BitmapFont.Draw(rgba, w, h, label, x, textTop, Scale, Ink);
        }
        for (int r = 0; r < Rows; r++)
        {
            int bandTop = CellY(r) - LabelHeight;
            BitmapFont.Draw(rgba, w, h, BitmapFont.Fit(rowLabels[r], w - 2 * Gap, Scale), Gap, bandTop + textTop, Scale, Ink);
            for (int c = 0; c < Columns; c++)
            {
                var image = cell(r, c);
                if (image.Width != CellWidth || image.Height != CellHeight)
                    throw new InvalidOperationException($"Cell ({r}, {c}) is {image.Width}x{image.Height}, expected {CellWidth}x{CellHeight}.");
                Blit(image, rgba, w, CellX(c), CellY(r));
            }
        }
        return MLImage.CreateFromPixels(w, h, MLPixelFormat.Rgba32, rgba);
    }

    private static void Blit(MLImage image, byte[] target, int targetWidth, int x0, int y0)
    {
        var source = image.Pixels;
        bool bgra = image.PixelFormat == MLPixelFormat.Bgra32;
        for (int y = 0; y < image.Height; y++)
            for (int x = 0; x < image.Width; x++)
            {
                int s = 4 * (y * image.Width + x), t = 4 * ((y0 + y) * targetWidth + x0 + x);
                target[t] = source[s + (bgra ? 2 : 0)];
                target[t + 1] = source[s + 1];
                target[t + 2] = source[s + (bgra ? 0 : 2)];
                target[t + 3] = source[s + 3];
            }
    }
}

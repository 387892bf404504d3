using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The demo model's VAE: a fixed, hand-designed mapping between images and Stable Diffusion-shaped latents
/// (4 channels at 1/8 resolution), as a C# reference (<see cref="Encode"/>, <see cref="Decode"/>) and as the
/// ONNX graphs <c>vae_encoder/model.onnx</c> and <c>vae_decoder/model.onnx</c> that compute the same.
/// </summary>
/// <remarks>
/// <para>Latent channels, one value per 8×8 patch, taken at the patch centre (in scaled units, i.e. after
/// multiplying the encoder output by <see cref="ScalingFactor"/>):</para>
/// <list type="number">
/// <item>the signed distance d (pixels, positive inside, clamped to ±<see cref="MaxDistance"/>) from the patch centre
/// to the outline of the coloured (chromatic) region: d / <see cref="DistanceUnit"/> + <see cref="DistanceOffset"/>;</item>
/// <item>the background: <see cref="GreyGain"/> · (μ + κ·(−1)^(row + column)), a constant plus a checkerboard whose
/// levels (μ, κ) = <see cref="BackgroundCode"/>(g) of the image's grey level g put white (1, −1/√3), gray (0, 2/√3) and
/// black (−1, −1/√3) at the corners of an equilateral triangle centred on 0, so that no background lies between the
/// other two and all three have the same norm (with a single
/// level 2g − 1, gray would sit half-way between white and black, and classifier-free guidance, which extrapolates from
/// the unconditional toward the conditional prediction, overshoots from one of them across gray into the other);</item>
/// <item>and 4. the shape colour's opponent components (R − G, (R + G)/2 − B), times <see cref="ColourGain"/>.</item>
/// </list>
/// <para><b>Encoder.</b> Per pixel, the coverage m = chroma / <see cref="DemoDataset.ShapeChroma"/> (clamped to [0, 1]) gives a
/// local signed distance s = logit(m) / <see cref="DemoDataset.EdgeSharpness"/>, exact within ±<see cref="PixelBand"/> pixel
/// of the outline (where the dataset's edges are soft) and clamped outside it. The distance at a patch centre c is
/// found over a window of 5×5 patches (40×40 pixels, edge-replicated at the border): L = max_p (s_p − |p − c|) over
/// the pixels not deep outside, exact when c is outside; U = min_p (s_p + |p − c|) over the pixels not deep inside,
/// exact when c is inside (both follow from the distance being 1-Lipschitz; a window with no such pixel gives
/// the clamp). The sign comes from the mean s0 of the four pixels around c, which near the outline
/// (|s0| &lt; 0.2) is itself the answer, exact for straight edges. The colour is a normalised average over the same
/// window, colour = Σ opponent / Σ m; the background grey is one for the whole image,
/// g = Σ(min − 0.1·m)(1 − m) / Σ(1 − m)² over all pixels (exact for a grey behind a palette colour).
/// A sketch therefore encodes well when, like the dataset, it has coloured shapes on a white, grey or black ground
/// (hard edges are fine: they are read as ±1 pixel from the outline); black or grey strokes count as background.</para>
/// <para><b>Decoder.</b> Every channel is upsampled ×8 by cubic convolution (Catmull–Rom with half-pixel centres, what
/// ONNX Resize mode=cubic computes; the graph does it with two transposed convolutions, which run much faster).
/// Coverage α = sigmoid(<see cref="DemoDataset.EdgeSharpness"/> · d); the shape colour is a sharp soft nearest match of
/// the opponent components to the palette (a softmax); the background is the dataset grey whose code is nearest to the
/// background channel's mean μ̂ and mean absolute deviation κ̂ over the whole latent (likewise a softmax, so leftover
/// sampling noise does not mottle it); the pixel is α · colour + (1 − α) · background. Any latent decodes
/// to such a picture; blends of latents give blended outlines and colours snapped to the palette. The outline is as
/// fine as a distance field sampled every 8 pixels allows: straight edges and circles come back exactly, corners
/// sharper than ~3 pixels come back rounded (which is why the dataset rounds its corners,
/// <see cref="DemoDataset.CornerRadius"/>).</para>
/// </remarks>
public static class DemoVae
{
    /// <summary>The latent downsampling factor.</summary>
    public const int Factor = 8;

    /// <summary>Latent channels.</summary>
    public const int LatentChannels = 4;

    /// <summary>
    /// The <c>scaling_factor</c> written in the VAE configs. The engine multiplies encoder output by it (and divides by
    /// it before decoding); the scaled dataset latents have about unit standard deviation, like Stable Diffusion's
    /// latents times 0.18215.
    /// </summary>
    public const float ScalingFactor = 0.25f;

    /// <summary>The distance clamp, in pixels.</summary>
    public const float MaxDistance = 16f;

    /// <summary>Pixels per scaled latent unit of the distance channel.</summary>
    public const float DistanceUnit = 6f;

    /// <summary>Offset of the distance channel (scaled units), centring the dataset's values.</summary>
    public const float DistanceOffset = 2f;

    /// <summary>Scale of the background channel (scaled units per unit of the background code).</summary>
    public const float GreyGain = 1.2f;

    /// <summary>Scale of the colour channels (scaled units per unit of opponent component).</summary>
    public const float ColourGain = 2.6f;

    /// <summary>Half-width of the encoder's window, in patches (2: a 5×5-patch window of 40×40 pixels).</summary>
    public const int WindowRadiusPatches = 2;

    /// <summary>The band around the outline, in pixels, where the per-pixel distance is taken as exact.</summary>
    public const float PixelBand = 1f;

    /// <summary>Sharpness of the decoder's palette match (softmax of −Sharpness · squared distance).</summary>
    public const float PaletteSharpness = 40f;

    /// <summary>Sharpness of the decoder's background match (softmax of −Sharpness · squared distance between codes).</summary>
    public const float GreySharpness = 20f;

    /// <summary>The regulariser of the encoder's grey estimate, added to the mean weight Σ(1 − m)²/n (an image with no
    /// background pixels reads as gray).</summary>
    private const float GreyEpsilon = 1e-4f;

    /// <summary>The cubic convolution coefficient of the decoder's upsampling (−0.5: Catmull–Rom, exact for quadratics).</summary>
    public const float CubicCoefficient = -0.5f;

    private const float DeepMargin = 1e-3f;
    private const float Big = 1000f;
    private const float LogitEpsilon = 1e-6f;
    private const float NearLow = 0.2f, NearHigh = 0.4f;
    private const int Window = (2 * WindowRadiusPatches + 1) * Factor;
    private const int WindowHalf = WindowRadiusPatches * Factor + Factor / 2;

    /// <summary>The opponent components (R − G, (R + G)/2 − B) of a colour.</summary>
    public static (float A, float B) Opponent(float r, float g, float b) => (r - g, 0.5f * (r + g) - b);

    /// <summary>The opponent components of each shape colour, in palette order.</summary>
    public static (float A, float B)[] PaletteOpponents() =>
        DemoDataset.ShapeColours.Select(c => Opponent(c.R, c.G, c.B)).ToArray();

    /// <summary>
    /// Encodes planar RGB images ([N, 3, H, W] flattened, values in [−1, 1], H and W multiples of 8) to latents
    /// ([N, 4, H/8, W/8] flattened, unscaled: multiply by <see cref="ScalingFactor"/> for the diffusion space),
    /// as <c>vae_encoder/model.onnx</c> does.
    /// </summary>
    public static float[] Encode(ReadOnlySpan<float> images, int height, int width)
    {
        if (height <= 0 || width <= 0 || height % Factor != 0 || width % Factor != 0)
            throw new ArgumentException($"Image size {width}×{height} must be a positive multiple of {Factor}.");
        int plane = height * width, count = images.Length / (3 * plane);
        if (count * 3 * plane != images.Length) throw new ArgumentException("The image buffer is not a whole number of [3, H, W] images.", nameof(images));
        int hw = height / Factor * (width / Factor);
        var latents = new float[count * LatentChannels * hw];
        for (int n = 0; n < count; n++)
            EncodeOne(images.Slice(n * 3 * plane, 3 * plane), height, width, latents.AsSpan(n * LatentChannels * hw, LatentChannels * hw));
        return latents;
    }

    /// <summary>Encodes one planar RGB image ([3, H, W], values in [−1, 1]) into <paramref name="latent"/> ([4, H/8, W/8], unscaled).</summary>
    public static void EncodeOne(ReadOnlySpan<float> image, int height, int width, Span<float> latent)
    {
        int plane = height * width, h = height / Factor, w = width / Factor, hw = h * w;
        if (image.Length != 3 * plane || latent.Length != LatentChannels * hw) throw new ArgumentException("Buffer sizes do not match the image size.");
        // Per-pixel fields on the image padded by WindowHalf − Factor/2 pixels (edge-replicated), as the graph pads.
        int pad = WindowHalf - Factor / 2, pw = width + 2 * pad, ph = height + 2 * pad;
        var s = new float[plane];
        var lowerField = new float[ph * pw];
        var upperField = new float[ph * pw];
        var fields = new float[3][];
        for (int f = 0; f < 3; f++) fields[f] = new float[ph * pw];
        double sumU = 0, sumV = 0;
        for (int y = 0; y < ph; y++)
        {
            int sy = Math.Clamp(y - pad, 0, height - 1);
            for (int x = 0; x < pw; x++)
            {
                int i = sy * width + Math.Clamp(x - pad, 0, width - 1);
                float r = Math.Clamp(image[i] * 0.5f + 0.5f, 0, 1);
                float g = Math.Clamp(image[plane + i] * 0.5f + 0.5f, 0, 1);
                float b = Math.Clamp(image[2 * plane + i] * 0.5f + 0.5f, 0, 1);
                float max = MathF.Max(MathF.Max(r, g), b), min = MathF.Min(MathF.Min(r, g), b);
                float m = Math.Clamp((max - min) * (1f / DemoDataset.ShapeChroma), 0, 1);
                // logit(0.01)/4 < −1 and logit(0.99)/4 > 1: outside (0.01, 0.99) the clamp decides, no logarithm needed.
                float si = m <= 0.01f ? -PixelBand : m >= 0.99f ? PixelBand : Math.Clamp(
                    MathF.Log(m / (1 - m)) * (1f / DemoDataset.EdgeSharpness), -PixelBand, PixelBand);
                int o = y * pw + x;
                if (y >= pad && y < pad + height && x >= pad && x < pad + width)
                {
                    s[i] = si;
                    float notM = 1 - m;
                    sumU += (min - m * DemoDataset.ShapeColourMin) * notM;
                    sumV += notM * notM;
                }
                lowerField[o] = si - (si <= -PixelBand + DeepMargin ? 1f : 0f) * Big;
                upperField[o] = si + (si >= PixelBand - DeepMargin ? 1f : 0f) * Big;
                var (oa, ob) = Opponent(r, g, b);
                fields[0][o] = oa;
                fields[1][o] = ob;
                fields[2][o] = m;
            }
        }
        // Per-block sums of the colour fields (blocks of the padded image), then window sums over 5×5 blocks.
        int bh = h + 2 * WindowRadiusPatches, bw = w + 2 * WindowRadiusPatches;
        var blockSums = new double[3, bh, bw];
        for (int f = 0; f < 3; f++)
            for (int y = 0; y < ph; y++)
                for (int x = 0; x < pw; x++)
                    blockSums[f, y / Factor, x / Factor] += fields[f][y * pw + x];
        // Blocks holding a pixel that is not deep outside (the only ones that can raise L above the clamp) and blocks
        // holding one that is not deep inside (the only ones that can lower U below it); deep pixels carry ±Big.
        var lowerBlock = new bool[bh, bw];
        var upperBlock = new bool[bh, bw];
        for (int y = 0; y < ph; y++)
            for (int x = 0; x < pw; x++)
            {
                if (lowerField[y * pw + x] > -Big / 2) lowerBlock[y / Factor, x / Factor] = true;
                if (upperField[y * pw + x] < Big / 2) upperBlock[y / Factor, x / Factor] = true;
            }
        var offsets = WindowDistances();
        var sums = new double[3];
        float grey = (float)((sumU / plane + GreyEpsilon * 0.5) / (sumV / plane + GreyEpsilon));
        var (greyMean, greyChecker) = BackgroundCode(grey);
        int side = 2 * WindowRadiusPatches + 1;
        for (int py = 0; py < h; py++)
        {
            for (int px = 0; px < w; px++)
            {
                int cy = py * Factor + Factor / 2, cx = px * Factor + Factor / 2;
                float s0 = 0.25f * (s[(cy - 1) * width + cx - 1] + s[(cy - 1) * width + cx] + s[cy * width + cx - 1] + s[cy * width + cx]);
                // The window of patch (py, px) covers blocks py … py + 4 and px … px + 4 of the padded image, i.e. padded
                // pixels from (8py, 8px); its centre, the pixel corner (8px + 4, 8py + 4), is WindowHalf pixels in.
                // Only the bound on c's side of the outline is needed: U inside (s0 > 0), L outside.
                bool inside = s0 > 0;
                var field = inside ? upperField : lowerField;
                var blocks = inside ? upperBlock : lowerBlock;
                float bound = inside ? float.PositiveInfinity : float.NegativeInfinity;
                for (int i = 0; i < side; i++)
                    for (int j = 0; j < side; j++)
                    {
                        if (!blocks[py + i, px + j]) continue;
                        for (int by = 0; by < Factor; by++)
                        {
                            int dy = i * Factor + by;
                            var row = field.AsSpan((py * Factor + dy) * pw + (px + j) * Factor, Factor);
                            var dist = offsets.AsSpan(dy * Window + j * Factor, Factor);
                            if (inside)
                                for (int bx = 0; bx < Factor; bx++) bound = MathF.Min(bound, row[bx] + dist[bx]);
                            else
                                for (int bx = 0; bx < Factor; bx++) bound = MathF.Max(bound, row[bx] - dist[bx]);
                        }
                    }
                float lower = inside ? 0 : bound, upper = inside ? bound : 0;
                Array.Clear(sums);
                for (int f = 0; f < 3; f++)
                    for (int i = 0; i < side; i++)
                        for (int j = 0; j < side; j++)
                            sums[f] += blockSums[f, py + i, px + j];
                float distance = CombineDistance(s0, lower, upper);
                const float inv = 1f / (Window * Window);
                float meanA = (float)(sums[0] * inv), meanB = (float)(sums[1] * inv), meanM = (float)(sums[2] * inv);
                float codeA = meanA / (meanM + inv), codeB = meanB / (meanM + inv);
                int o = py * w + px;
                latent[o] = (distance * (1f / DistanceUnit) + DistanceOffset) / ScalingFactor;
                latent[hw + o] = GreyGain * (greyMean + Checker(py, px) * greyChecker) / ScalingFactor;
                latent[2 * hw + o] = ColourGain * codeA / ScalingFactor;
                latent[3 * hw + o] = ColourGain * codeB / ScalingFactor;
            }
        }
    }

    /// <summary>
    /// Decodes latents ([N, 4, h, w] flattened, unscaled: the diffusion latents divided by <see cref="ScalingFactor"/>)
    /// to planar RGB images ([N, 3, 8h, 8w], values in [−1, 1]), as <c>vae_decoder/model.onnx</c> does.
    /// </summary>
    public static float[] Decode(ReadOnlySpan<float> latents, int h, int w)
    {
        int hw = h * w, count = latents.Length / (LatentChannels * hw);
        if (count * LatentChannels * hw != latents.Length) throw new ArgumentException("The latent buffer is not a whole number of [4, h, w] latents.", nameof(latents));
        int height = h * Factor, width = w * Factor, plane = height * width;
        var images = new float[count * 3 * plane];
        var palette = PaletteOpponents();
        var up = new float[LatentChannels];
        var logits = new float[palette.Length];
        var yTaps = Enumerable.Range(0, height).Select(y => CubicTaps(y, h)).ToArray();
        var xTaps = Enumerable.Range(0, width).Select(x => CubicTaps(x, w)).ToArray();
        for (int n = 0; n < count; n++)
        {
            var z = latents.Slice(n * LatentChannels * hw, LatentChannels * hw);
            var img = images.AsSpan(n * 3 * plane, 3 * plane);
            float grey = DecodeBackground(z.Slice(hw, hw));
            for (int y = 0; y < height; y++)
            {
                var (yi, yw) = yTaps[y];
                for (int x = 0; x < width; x++)
                {
                    var (xi, xw) = xTaps[x];
                    for (int c = 0; c < LatentChannels; c++)
                    {
                        var zc = z.Slice(c * hw, hw);
                        float acc = 0;
                        for (int ty = 0; ty < 4; ty++)
                        {
                            float row = 0;
                            for (int tx = 0; tx < 4; tx++) row += xw[tx] * zc[yi[ty] * w + xi[tx]];
                            acc += yw[ty] * row;
                        }
                        up[c] = acc * ScalingFactor;
                    }
                    float alpha = DemoDataset.Sigmoid(DemoDataset.EdgeSharpness * DistanceUnit * (up[0] - DistanceOffset));
                    float ca = up[2] / ColourGain, cb = up[3] / ColourGain;
                    float maxLogit = float.NegativeInfinity;
                    for (int j = 0; j < palette.Length; j++)
                    {
                        var (pa, pb) = palette[j];
                        logits[j] = PaletteSharpness * (2 * (ca * pa + cb * pb) - (pa * pa + pb * pb));
                        maxLogit = MathF.Max(maxLogit, logits[j]);
                    }
                    float total = 0, r = 0, g = 0, b = 0;
                    for (int j = 0; j < palette.Length; j++)
                    {
                        float e = MathF.Exp(logits[j] - maxLogit);
                        total += e;
                        var col = DemoDataset.ShapeColours[j];
                        r += e * col.R;
                        g += e * col.G;
                        b += e * col.B;
                    }
                    int i = y * width + x;
                    img[i] = 2 * (grey + alpha * (r / total - grey)) - 1;
                    img[plane + i] = 2 * (grey + alpha * (g / total - grey)) - 1;
                    img[2 * plane + i] = 2 * (grey + alpha * (b / total - grey)) - 1;
                }
            }
        }
        return images;
    }

    /// <summary>Builds <c>vae_encoder/model.onnx</c>: <c>sample</c> [B, 3, H, W] in [−1, 1] → <c>latent_sample</c> [B, 4, H/8, W/8].</summary>
    public static OnnxGraphBuilder BuildEncoderGraph() => BuildEncoderGraph("demo_vae_encoder", LatentChannels, null);

    /// <summary>
    /// Builds the encoder with its 4-channel latent passed through <paramref name="widen"/> (which adds the nodes that map
    /// it to <paramref name="channels"/> channels and returns their output), or unchanged when that is null.
    /// </summary>
    internal static OnnxGraphBuilder BuildEncoderGraph(string graphName, int channels, Func<OnnxGraphBuilder, string, string>? widen)
    {
        var g = new OnnxGraphBuilder(graphName);
        var x = g.Input("sample", OnnxElementType.Float, "batch", 3, "height", "width");
        var rgb = g.Clip(g.Affine(x, 0.5f, 0.5f), 0, 1);
        var max = g.ReduceMax(rgb, [1]);
        var min = g.ReduceMin(rgb, [1]);
        var m = g.Clip(g.Mul(g.Sub(max, min), g.Scalar(1f / DemoDataset.ShapeChroma)), 0, 1);
        var mc = g.Clip(m, LogitEpsilon, 1 - LogitEpsilon);
        var one = g.Scalar(1f);
        var s = g.Clip(g.Mul(g.Log(g.Div(mc, g.Sub(one, mc))), g.Scalar(1f / DemoDataset.EdgeSharpness)), -PixelBand, PixelBand);
        var deepOut = g.Cast(g.Node("LessOrEqual", [s, g.Scalar(-PixelBand + DeepMargin)]), OnnxElementType.Float);
        var deepIn = g.Cast(g.Node("GreaterOrEqual", [s, g.Scalar(PixelBand - DeepMargin)]), OnnxElementType.Float);
        var big = g.Scalar(Big);
        var lowerField = g.Sub(s, g.Mul(deepOut, big));
        var upperField = g.Add(s, g.Mul(deepIn, big));

        long pad = WindowHalf - Factor / 2;
        var pads = g.Longs(0, 0, pad, pad, 0, 0, pad, pad);
        string Padded(string v) => g.Node("Pad", [v, pads], ("mode", "edge"));

        // Windows: the padded field as 8×8 blocks ([B, 64, h + 4, w + 4], channel = 8·row + column in the block),
        // then the 5×5 neighbouring blocks of each patch side by side ([B, 25·64, h, w]).
        int span = 2 * WindowRadiusPatches;
        string Windows(string field)
        {
            var blocks = g.Node("SpaceToDepth", [Padded(field)], ("blocksize", (long)Factor));
            var parts = new List<string>();
            for (int i = 0; i <= span; i++)
                for (int j = 0; j <= span; j++)
                    parts.Add(g.Slice(blocks, [i, j], [i == span ? long.MaxValue : i - span, j == span ? long.MaxValue : j - span], [2, 3]));
            return g.Concat(1, [.. parts]);
        }
        var distances = g.Initializer("window_distances", BlockOrderDistances(), 1, Window * Window, 1, 1);
        var lower = g.Clip(g.ReduceMax(g.Sub(Windows(lowerField), distances), [1]), -MaxDistance, MaxDistance);
        var upper = g.Clip(g.ReduceMin(g.Add(Windows(upperField), distances), [1]), -MaxDistance, MaxDistance);
        var centreKernel = new float[Factor * Factor];
        foreach (var (ky, kx) in new[] { (3, 3), (3, 4), (4, 3), (4, 4) }) centreKernel[ky * Factor + kx] = 0.25f;
        var s0 = g.Conv(s, g.Initializer("centre_mean", centreKernel, 1, 1, Factor, Factor), strides: [Factor, Factor]);
        var far = g.Where(g.Greater(s0, g.Scalar(0f)), upper, lower);
        var near = g.Clip(g.Mul(g.Sub(g.Scalar(NearHigh), g.Abs(s0)), g.Scalar(1f / (NearHigh - NearLow))), 0, 1);
        var distance = g.Add(far, g.Mul(near, g.Sub(s0, far)));

        // Colour fields, averaged over the same windows.
        var opponent = g.Conv(rgb, g.Initializer("opponent", new float[] { 1, -1, 0, 0.5f, 0.5f, -1 }, 2, 3, 1, 1));
        var pooled = g.Node("AveragePool", [Padded(g.Concat(1, opponent, m))],
            ("kernel_shape", new long[] { Window, Window }), ("strides", new long[] { Factor, Factor }));
        const float inv = 1f / (Window * Window);
        var weight = g.Add(g.Slice(pooled, [2], [3], [1]), g.Scalar(inv));
        var code = g.Div(g.Slice(pooled, [0], [2], [1]), weight);

        // Background: one grey for the image (means over all pixels), coded as μ + κ·(−1)^(row + column).
        var notM = g.Sub(one, m);
        var u = g.ReduceMean(g.Mul(g.Sub(min, g.Mul(m, g.Scalar(DemoDataset.ShapeColourMin))), notM), [2, 3]);
        var v = g.ReduceMean(g.Mul(notM, notM), [2, 3]);
        var grey = g.Div(g.Add(u, g.Scalar(GreyEpsilon * 0.5f)), g.Add(v, g.Scalar(GreyEpsilon)));     // [B, 1, 1, 1]
        var mean = g.Affine(grey, 2f, -1f);
        var checkerLevel = g.Affine(g.Sub(one, g.Mul(mean, mean)), CheckerSlope, -CheckerSlope / 2);
        // (−1)^(row + column) from running counts of ones: row + 1 plus column + 1 has the parity of row + column.
        var ones = g.Add(g.Mul(s0, g.Scalar(0f)), one);
        var rowColumn = g.Add(g.Node("CumSum", [ones, g.Initializer(g.Fresh("row_axis"), [2L])]), g.Node("CumSum", [ones, g.Initializer(g.Fresh("column_axis"), [3L])]));
        var checker = g.Sub(one, g.Mul(g.Node("Mod", [rowColumn, g.Scalar(2f)], ("fmod", 1L)), g.Scalar(2f)));
        var background = g.Add(mean, g.Mul(checkerLevel, checker));

        var raw = g.Concat(1, distance, background, code);
        float k = 1f / ScalingFactor;
        var affine = g.Initializer("latent_scale", new float[]
        {
            k / DistanceUnit, 0, 0, 0,
            0, GreyGain * k, 0, 0,
            0, 0, ColourGain * k, 0,
            0, 0, 0, ColourGain * k,
        }, 4, 4, 1, 1);
        var bias = g.Initializer("latent_shift", new float[] { DistanceOffset * k, 0, 0, 0 }, 4);
        if (widen is null) g.NodeNamed("Conv", [raw, affine, bias], "latent_sample");
        else g.Identity(widen(g, g.Conv(raw, affine, bias)), "latent_sample");
        g.Output("latent_sample", OnnxElementType.Float, "batch", channels, "latent_height", "latent_width");
        return g;
    }

    /// <summary>Builds <c>vae_decoder/model.onnx</c>: <c>latent_sample</c> [B, 4, h, w] → <c>sample</c> [B, 3, 8h, 8w] in [−1, 1].</summary>
    public static OnnxGraphBuilder BuildDecoderGraph() => BuildDecoderGraph("demo_vae_decoder", LatentChannels, null);

    /// <summary>
    /// Builds the decoder for a <paramref name="channels"/>-channel latent that <paramref name="narrow"/> maps to the demo's 4
    /// channels first (adding its nodes and returning their output); with null the input is the 4-channel latent itself.
    /// </summary>
    internal static OnnxGraphBuilder BuildDecoderGraph(string graphName, int channels, Func<OnnxGraphBuilder, string, string>? narrow)
    {
        var g = new OnnxGraphBuilder(graphName);
        var z = g.Input("latent_sample", OnnxElementType.Float, "batch", channels, "latent_height", "latent_width");
        if (narrow is not null) z = narrow(g, z);
        // Cubic ×8 upsampling (what Resize mode=cubic, half_pixel, cubic_coeff_a=−0.5 computes, done as transposed
        // convolutions because ONNX Runtime's cubic Resize is an order of magnitude slower): edge-pad by 2, then per axis a
        // ConvTranspose with stride 8 and the 32-tap kernel K[q] = W((q − 15.5)/8), cropping 28 pixels at each end.
        var padded = g.Node("Pad", [z, g.Longs(0, 0, 2, 2, 0, 0, 2, 2)], ("mode", "edge"));
        var kernel1d = new float[4 * Factor];
        for (int q = 0; q < kernel1d.Length; q++) kernel1d[q] = Keys((q - 15.5f) / Factor);
        var kernel = new float[LatentChannels * kernel1d.Length];
        for (int c = 0; c < LatentChannels; c++) kernel1d.CopyTo(kernel, c * kernel1d.Length);
        long crop = 2 * Factor + 3 * Factor / 2;
        var rows = g.Node("ConvTranspose", [padded, g.Initializer("cubic_upsample_rows", kernel, LatentChannels, 1, kernel1d.Length, 1)],
            ("strides", new long[] { Factor, 1 }), ("group", (long)LatentChannels));
        rows = g.Slice(rows, [crop], [-crop], [2]);
        var cols = g.Node("ConvTranspose", [rows, g.Initializer("cubic_upsample_columns", kernel, LatentChannels, 1, 1, kernel1d.Length)],
            ("strides", new long[] { 1, Factor }), ("group", (long)LatentChannels));
        var up = g.Slice(cols, [crop], [-crop], [3]);
        float k = ScalingFactor;
        float edge = DemoDataset.EdgeSharpness * DistanceUnit * k;
        var alpha = g.Sigmoid(g.Conv(up,
            g.Initializer("alpha_weight", new float[] { edge, 0, 0, 0 }, 1, 4, 1, 1),
            g.Initializer("alpha_bias", new float[] { -DemoDataset.EdgeSharpness * DistanceUnit * DistanceOffset }, 1)));
        // Background: one dataset grey for the image, the one whose code (μ_j, |κ_j|) is nearest to the background
        // channel's mean μ̂ and mean absolute deviation κ̂ (a sharp softmax over the levels), so that leftover noise
        // in a generated latent does not mottle flat backgrounds.
        var backgroundChannel = g.Mul(g.Slice(z, [1], [2], [1]), g.Scalar(k / GreyGain));
        var mean = g.ReduceMean(backgroundChannel, [2, 3]);                                       // [B, 1, 1, 1]
        var deviation = g.ReduceMean(g.Abs(g.Sub(backgroundChannel, mean)), [2, 3]);
        var levels = GreyLevels();
        var greyLogits = new string[levels.Length];
        for (int j = 0; j < levels.Length; j++)
        {
            var (cm, signedCk) = BackgroundCode(levels[j]);
            float ck = MathF.Abs(signedCk);
            var dm = g.Sub(mean, g.Scalar(cm));
            var dk = g.Sub(deviation, g.Scalar(ck));
            greyLogits[j] = g.Mul(g.Add(g.Mul(dm, dm), g.Mul(dk, dk)), g.Scalar(-GreySharpness));
        }
        var greyLogit = g.Concat(1, greyLogits);                                                   // [B, 3, 1, 1]
        var greyWeights = g.Exp(g.Sub(greyLogit, g.ReduceMax(greyLogit, [1])));
        var grey = g.Div(g.Conv(greyWeights, g.Initializer("grey_levels", levels, 1, levels.Length, 1, 1)), g.ReduceSum(greyWeights, [1]));
        var palette = PaletteOpponents();
        var logitWeight = new float[palette.Length * 4];
        var logitBias = new float[palette.Length];
        var rgb = new float[3 * palette.Length];
        for (int j = 0; j < palette.Length; j++)
        {
            var (pa, pb) = palette[j];
            logitWeight[j * 4 + 2] = PaletteSharpness * 2 * pa / ColourGain * k;
            logitWeight[j * 4 + 3] = PaletteSharpness * 2 * pb / ColourGain * k;
            logitBias[j] = -PaletteSharpness * (pa * pa + pb * pb);
            var c = DemoDataset.ShapeColours[j];
            rgb[j] = c.R;
            rgb[palette.Length + j] = c.G;
            rgb[2 * palette.Length + j] = c.B;
        }
        // Softmax over the palette (channel axis), written out: ONNX Runtime's Softmax on a non-last axis transposes.
        var logits = g.Conv(up,
            g.Initializer("palette_logit_weight", logitWeight, palette.Length, 4, 1, 1),
            g.Initializer("palette_logit_bias", logitBias, palette.Length));
        var weights = g.Exp(g.Sub(logits, g.ReduceMax(logits, [1])));
        var colour = g.Div(g.Conv(weights, g.Initializer("palette_rgb", rgb, 3, palette.Length, 1, 1)), g.ReduceSum(weights, [1]));
        var picture = g.Add(grey, g.Mul(alpha, g.Sub(colour, grey)));
        g.NodeNamed("Add", [g.Mul(picture, g.Scalar(2f)), g.Scalar(-1f)], "sample");
        g.Output("sample", OnnxElementType.Float, "batch", 3, "height", "width");
        return g;
    }

    private static float CombineDistance(float s0, float lower, float upper)
    {
        lower = Math.Clamp(lower, -MaxDistance, MaxDistance);
        upper = Math.Clamp(upper, -MaxDistance, MaxDistance);
        float far = s0 > 0 ? upper : lower;
        float near = Math.Clamp((NearHigh - MathF.Abs(s0)) * (1f / (NearHigh - NearLow)), 0, 1);
        return far + near * (s0 - far);
    }

    /// <summary>|p − c| for each window pixel, row-major over the 40×40 window.</summary>
    private static float[] WindowDistances()
    {
        var d = new float[Window * Window];
        for (int dy = 0; dy < Window; dy++)
            for (int dx = 0; dx < Window; dx++)
                d[dy * Window + dx] = PixelOffsetDistance(dy, dx);
        return d;
    }

    /// <summary>|p − c| in the graph's channel order: neighbour block (i, j) major, then the pixel's place in the block.</summary>
    private static float[] BlockOrderDistances()
    {
        int side = 2 * WindowRadiusPatches + 1;
        var d = new float[Window * Window];
        for (int i = 0; i < side; i++)
            for (int j = 0; j < side; j++)
                for (int by = 0; by < Factor; by++)
                    for (int bx = 0; bx < Factor; bx++)
                        d[(i * side + j) * Factor * Factor + by * Factor + bx] = PixelOffsetDistance(i * Factor + by, j * Factor + bx);
        return d;
    }

    private static float PixelOffsetDistance(int dy, int dx)
    {
        float oy = dy - WindowHalf + 0.5f, ox = dx - WindowHalf + 0.5f;
        return MathF.Sqrt(oy * oy + ox * ox);
    }

    /// <summary>The background grey levels the decoder snaps to (those of <see cref="DemoDataset.BackgroundColours"/>).</summary>
    public static float[] GreyLevels() => DemoDataset.BackgroundColours.Select(c => c.R).ToArray();

    /// <summary>
    /// The background code (μ, κ) of a grey level <paramref name="g"/> in [0, 1]: μ = 2g − 1, κ = (2/√3)·(1 − μ²) − 1/√3.
    /// White (1, −1/√3), gray (0, 2/√3) and black (−1, −1/√3) are the corners of an equilateral triangle of side 2
    /// centred on the origin (equal norms: no background is favoured by the samplers' start from pure noise); other
    /// greys lie on the parabola through them. The background channel is <see cref="GreyGain"/> · (μ + κ·(−1)^(row + column)).
    /// </summary>
    public static (float Mean, float Checker) BackgroundCode(float g)
    {
        float mean = 2 * g - 1;
        return (mean, CheckerSlope * (1 - mean * mean) - CheckerSlope / 2);
    }

    /// <summary>2/√3: the checker level of gray above the line through white and black, in units where they are 2 apart.</summary>
    private static readonly float CheckerSlope = 2 / MathF.Sqrt(3);

    /// <summary>(−1)^(row + column): the checkerboard of the background channel at latent cell (row, column).</summary>
    public static float Checker(int row, int column) => ((row + column) & 1) == 0 ? 1f : -1f;

    /// <summary>
    /// The decoder's background for one latent's background channel (unscaled, [h·w]): with μ̂ the channel's mean and κ̂
    /// its mean absolute deviation from μ̂ (both in units of the code, i.e. × <see cref="ScalingFactor"/> / <see cref="GreyGain"/>),
    /// the dataset greys weighted by a softmax of −<see cref="GreySharpness"/> · ‖(μ̂, κ̂) − (μ_j, |κ_j|)‖².
    /// </summary>
    public static float DecodeBackground(ReadOnlySpan<float> channel)
    {
        float unit = ScalingFactor / GreyGain, mean = 0, deviation = 0;
        for (int i = 0; i < channel.Length; i++) mean += channel[i] * unit;
        mean /= channel.Length;
        for (int i = 0; i < channel.Length; i++) deviation += MathF.Abs(channel[i] * unit - mean);
        deviation /= channel.Length;
        var levels = GreyLevels();
        var logits = new float[levels.Length];
        float max = float.NegativeInfinity;
        for (int j = 0; j < levels.Length; j++)
        {
            var (cm, signedCk) = BackgroundCode(levels[j]);
            float ck = MathF.Abs(signedCk);
            logits[j] = -GreySharpness * ((mean - cm) * (mean - cm) + (deviation - ck) * (deviation - ck));
            max = MathF.Max(max, logits[j]);
        }
        float total = 0, sum = 0;
        for (int j = 0; j < levels.Length; j++)
        {
            float e = MathF.Exp(logits[j] - max);
            total += e;
            sum += e * levels[j];
        }
        return sum / total;
    }

    /// <summary>Keys' cubic convolution kernel with a = <see cref="CubicCoefficient"/>.</summary>
    private static float Keys(float x)
    {
        const float a = CubicCoefficient;
        float d = MathF.Abs(x);
        return d <= 1 ? ((a + 2) * d - (a + 3)) * d * d + 1 : d < 2 ? ((a * d - 5 * a) * d + 8 * a) * d - 4 * a : 0;
    }

    // ONNX Resize, mode cubic, half_pixel, exclude_outside 0: source coordinate (x + 0.5)/8 − 0.5, four taps
    // around it with Keys' kernel, indices clamped to the input.
    private static (int[] Index, float[] Weight) CubicTaps(int outIndex, int inSize)
    {
        float src = (outIndex + 0.5f) / Factor - 0.5f;
        int i0 = (int)MathF.Floor(src);
        float t = src - i0;
        var index = new int[4];
        var weight = new float[4];
        for (int k = 0; k < 4; k++)
        {
            index[k] = Math.Clamp(i0 - 1 + k, 0, inSize - 1);
            weight[k] = Keys(t - (k - 1));
        }
        return (index, weight);
    }
}

using MLNet.Diffusion.ModelBuilder.Onnx;

namespace MLNet.Diffusion.ModelBuilder.Demo;

/// <summary>
/// The demo's outline ControlNet and the ControlNet-ready demo UNet, with the real contract (OnnxStack's names; residual i
/// at 1/2^⌊i/3⌋ of the latent size). Like the demo UNet they are computed, not trained: the control image's bright lines
/// raise the prior of the dataset images whose outline they trace, so an outline sketch (or the Canny edges of a drawn
/// shape) picks the shape, size and position, while the prompt still picks colours and background.
/// </summary>
/// <remarks>
/// <para>The ControlNet reads <c>controlnet_cond</c> [B, 3, 256, 256] as brightness m (the channels' mean) averaged over
/// each 4×4 patch, and scores each of the 40 dataset geometries g (shape × size × position) by the correlation of m with
/// g's outline map E_g (a Gaussian of the signed distance to the outline, 3 px wide, averaged over each patch):
/// s_g = <see cref="Sharpness"/> · (m − m̄)·Ê_g / ‖m − m̄‖, Ê_g being E_g centred and of unit length. Lines off the
/// outline lower the score as much as lines on it raise it, and a black image scores 0. The scores travel in the mid-block residual and the last down residual ([B, 40, 4, 4], the same score over
/// the 4×4 positions); the other eleven down residuals are zeros of one channel.</para>
/// <para>The ControlNet-ready UNet is the demo UNet with the 13 residual inputs, whose log prior gains the mid residual's
/// score of each image's geometry (its mean over positions). Zero residuals give the plain demo UNet's answer, and since
/// the engine scales residuals linearly, the conditioning scale scales the bonus.</para>
/// </remarks>
public static class DemoControlNet
{
    /// <summary>Log-prior per unit of correlation between the control image and an outline (−1 to 1).</summary>
    public const float Sharpness = 24f;

    /// <summary>The width (standard deviation, pixels) of an outline in the outline maps.</summary>
    public const double OutlineWidth = 3;

    /// <summary>The number of down-block residuals (SD 1.x pattern).</summary>
    public const int DownCount = 12;

    /// <summary>The side of the patches the control image is averaged over (4 pixels: fine enough to tell a circle from a square).</summary>
    public const int Patch = 4;

    private const int Cells = DemoDataset.ImageSize / Patch, Latent = DemoUnet.LatentSize;

    /// <summary>The outline maps Ê ([64·64, 40]): column g is geometry g's outline averaged over each 4×4 patch, centred and
    /// scaled to unit length, so that a product with a centred image is a correlation.</summary>
    public static float[] OutlineMaps()
    {
        int count = DemoLatentTable.GeometryCount;
        var maps = new double[Cells * Cells, count];
        foreach (var item in DemoDataset.Items.GroupBy(DemoLatentTable.GeometryIndex).Select(g => g.First()))
        {
            int g = DemoLatentTable.GeometryIndex(item);
            var (cx, cy) = DemoDataset.Centre(item.Position);
            double radius = DemoDataset.Radius(item.Size);
            for (int y = 0; y < DemoDataset.ImageSize; y++)
                for (int x = 0; x < DemoDataset.ImageSize; x++)
                {
                    double d = DemoDataset.SignedDistance(item.Shape, cx, cy, radius, x + 0.5, y + 0.5);
                    maps[(y / Patch) * Cells + x / Patch, g] += Math.Exp(-d * d / (2 * OutlineWidth * OutlineWidth));
                }
        }
        var result = new float[Cells * Cells * count];
        for (int g = 0; g < count; g++)
        {
            double mean = 0, norm = 0;
            for (int c = 0; c < Cells * Cells; c++) mean += maps[c, g] / (Cells * Cells);
            for (int c = 0; c < Cells * Cells; c++) norm += (maps[c, g] - mean) * (maps[c, g] - mean);
            for (int c = 0; c < Cells * Cells; c++) result[c * count + g] = (float)((maps[c, g] - mean) / Math.Sqrt(norm));
        }
        return result;
    }

    /// <summary>The side of down residual <paramref name="index"/> (and of the mid residual for index <see cref="DownCount"/>).</summary>
    public static int ResidualSide(int index) => Latent >> (Math.Min(index, DownCount - 1) / 3);

    /// <summary>The channels of down residual <paramref name="index"/> (the mid residual for index <see cref="DownCount"/>).</summary>
    public static int ResidualChannels(int index) => index >= DownCount - 1 ? DemoLatentTable.GeometryCount : 1;

    /// <summary>The residual's name in OnnxStack's contract.</summary>
    public static string ResidualName(int index) => index == DownCount ? "mid_block_additional_residual" : $"down_block_{index}_additional_residual";

    /// <summary>
    /// The reference computation of the ControlNet-ready UNet in double precision: <see cref="DemoUnet.Predict"/> with each
    /// image's log prior raised by <paramref name="geometryBonus"/> ([B, 40]: the mid residual's mean per channel) for its geometry.
    /// </summary>
    public static float[] Predict(ReadOnlySpan<float> sample, ReadOnlySpan<float> timesteps, ReadOnlySpan<float> hiddenStates,
        ReadOnlySpan<float> geometryBonus, ReadOnlySpan<float> datasetLatents, ReadOnlySpan<float> captionEmbeddings)
    {
        int batch = sample.Length / DemoUnet.LatentLength, count = DemoLatentTable.GeometryCount;
        var logPriors = DemoUnet.TextLogPriors(hiddenStates, batch, captionEmbeddings);
        for (int b = 0; b < batch; b++)
            for (int k = 0; k < logPriors[b].Length; k++)
                logPriors[b][k] += geometryBonus[b * count + DemoLatentTable.GeometryIndex(DemoDataset.Items[k])];
        return DemoUnet.PosteriorMeanEpsilon(sample, timesteps, logPriors, datasetLatents);
    }

    /// <summary>Builds the ControlNet (<c>model.onnx</c> of a ControlNet folder).</summary>
    public static OnnxGraphBuilder BuildControlNet()
    {
        int d = DemoVocabulary.Dimension, count = DemoLatentTable.GeometryCount, size = DemoDataset.ImageSize;
        var g = new OnnxGraphBuilder("demo_controlnet");
        g.Input("sample", OnnxElementType.Float, "batch", DemoVae.LatentChannels, Latent, Latent);
        g.Input("timestep", OnnxElementType.Float, "batch");
        g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "sequence", d);
        var cond = g.Input("controlnet_cond", OnnxElementType.Float, "batch", 3, size, size);

        var brightness = g.Node("AveragePool", [g.ReduceMean(cond, [1])], ("kernel_shape", new long[] { Patch, Patch }), ("strides", new long[] { Patch, Patch }));
        var m = g.Reshape(brightness, 0, Cells * Cells);                                  // [B, 4096]
        var centred = g.Sub(m, g.ReduceMean(m, [1]));
        var length = g.Sqrt(g.Add(g.ReduceSum(g.Mul(centred, centred), [1]), g.Scalar(1e-6f)));   // [B, 1]
        var correlation = g.Div(g.MatMul(centred, g.Initializer("outline_maps", OutlineMaps(), Cells * Cells, count)), length); // [B, 40]
        var score = g.Mul(correlation, g.Scalar(Sharpness));
        var mean = g.ReduceMean(m, [1]);                                                  // [B, 1], for the zero residuals
        var perGeometry = g.Reshape(score, 0, count, 1, 1);
        int side = ResidualSide(DownCount);
        var spread = g.Mul(perGeometry, g.Initializer("ones_mid", Enumerable.Repeat(1f, count * side * side).ToArray(), 1, count, side, side));
        var zeroPerRow = g.Mul(g.Reshape(mean, 0, 1, 1, 1), g.Scalar(0f));                // [B, 1, 1, 1] of zeros
        for (int i = 0; i <= DownCount; i++)
        {
            int s = ResidualSide(i), channels = ResidualChannels(i);
            var value = channels == count ? spread : g.Mul(zeroPerRow, g.Initializer($"zeros_{i}", new float[s * s], 1, 1, s, s));
            g.Identity(value, ResidualName(i));
            g.Output(ResidualName(i), OnnxElementType.Float, "batch", channels, s, s);
        }
        return g;
    }

    /// <summary>Builds the ControlNet-ready demo UNet (<c>controlnet/model.onnx</c> beside <c>unet/</c>, OnnxStack's layout).</summary>
    public static OnnxGraphBuilder BuildReadyUNet(DemoLatentTable table, float[] captionEmbeddings)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(captionEmbeddings);
        int d = DemoVocabulary.Dimension, items = DemoDataset.Items.Count;
        var g = new OnnxGraphBuilder("demo_controlnet_unet");
        var sample = g.Input("sample", OnnxElementType.Float, "batch", DemoVae.LatentChannels, Latent, Latent);
        var timestep = g.Input("timestep", OnnxElementType.Float, "batch");
        var hidden = g.Input("encoder_hidden_states", OnnxElementType.Float, "batch", "sequence", d);
        string mid = "";
        for (int i = 0; i <= DownCount; i++)
        {
            int s = ResidualSide(i);
            var input = g.Input(ResidualName(i), OnnxElementType.Float, "batch", ResidualChannels(i), s, s);
            if (i == DownCount) mid = input;
        }
        DemoUnet.BuildPosteriorMean(g, sample, timestep, table, () =>
        {
            var prior = DemoUnet.CaptionPrior(g, hidden, captionEmbeddings);                                   // [B, K]
            var geometry = g.Initializer("item_geometry_control", DemoDataset.Items.Select(i => (long)DemoLatentTable.GeometryIndex(i)).ToArray(), items);
            var bonus = g.Gather(g.ReduceMean(mid, [2, 3], keepDims: false), geometry, axis: 1);                // [B, K]
            return g.Add(prior, bonus);
        });
        return g;
    }
}
